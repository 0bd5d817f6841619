"""Data-parallel fits started by ``torchrun``: one process per CPU share or GPU, DistributedDataParallel.

    torchrun --nproc_per_node=2 -m pipelines.fit_vqvae --dataset mnist --data-root ../shared/data/mnist --out runs/m
    torchrun --nnodes=2 --node_rank=0 --nproc_per_node=8 --rdzv-backend=c10d --rdzv-endpoint=HOST:29400 \
        -m pipelines.fit_prior --vqvae runs/m/vqvae.pt --out runs/m-prior     # and --node_rank=1 on the other node

Without torchrun (no ``WORLD_SIZE`` in the environment) a fit is one process, as it always was. Under torchrun:

* the process group is gloo on the CPU and NCCL on CUDA, one GPU per process (``cuda:LOCAL_RANK``);
* ``--batch-size`` is the global batch: every epoch's shuffled order is drawn from the same seed as a single
  process's, each global batch is cut into ``world_size`` equal, contiguous shards and process ``r`` trains on the
  ``r``-th. DDP averages the gradients of the shards' mean losses, which is the global batch's mean loss: the fit
  computes what one process with the same seed and ``--batch-size`` computes, up to the order of float sums. So
  ``--batch-size`` must be a multiple of the number of processes, and an epoch's last batch is cut to a multiple of
  it (the at most ``world_size - 1`` items left over are not trained on in that epoch);
* the quantizer sums its EMA statistics over the processes and draws its initial and restarted codes from the
  vectors of the whole global batch (``vqvae_prior/quantizer.py``), so its state is the same in every process;
  after every epoch the fit checks that the whole model (weights, codebook, statistics) is bit-identical in every
  process, and stops with an error if it is not;
* held-out metrics are sums over shards of the held-out split, added over the processes: a single process's figure;
* the process of rank 0 alone owns the output folder (lock, checkpoints, metrics, PNGs, the code cache, the
  progress bar and the log lines); every process reads the checkpoint that ``--resume`` continues.
"""

from __future__ import annotations

import contextlib
import datetime
import gc
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from vqvae_prior.errors import UsageError
from vqvae_prior.training.options import FitOptions
from vqvae_prior.training.run_folder import RunFolder
from vqvae_prior.training.steps import pick_device, retain_freed_memory

__all__ = ["Distributed", "fit_folder"]



class _Method(nn.Module):
    """``forward`` = ``model.<method>``: DDP synchronizes the gradients of what its wrapper's forward computed, and
    a prior's training forward is its ``nll``."""

    def __init__(self, model: nn.Module, method: str) -> None:
        super().__init__()
        self.model, self.method = model, method

    def forward(self, *args: Any) -> Any:
        return getattr(self.model, self.method)(*args)


@dataclass(frozen=True)
class Distributed:
    """This process's place among the processes of a fit: ``rank`` of ``world_size`` (1: no torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def start(cls, device_name: str | None) -> tuple[Distributed, torch.device]:
        """The process group from torchrun's environment, and the device of this process (``--device``, with CUDA
        at ``cuda:LOCAL_RANK``); a single process without torchrun's environment."""
        device = pick_device(device_name)
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size == 1:
            return cls(), device
        rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        if device.type == "cuda":
            if local_rank >= torch.cuda.device_count():
                raise UsageError(f"torchrun started {local_rank + 1}+ processes on a node with "
                                 f"{torch.cuda.device_count()} GPUs: pass --nproc_per_node at most that")
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                    timeout=datetime.timedelta(minutes=60))
        return cls(rank, world_size, local_rank), device

    def close(self) -> None:
        """End the process group, after freeing what still holds it: a DistributedDataParallel wrapper caught in a
        reference cycle (its own, or a frame's) outlives the group until a collection, with its reducer and the
        gloo or NCCL backend that holds; freed at interpreter exit instead, a gloo backend's teardown can abort the
        process (SIGABRT, "terminate called without an active exception") after a fit has written everything."""
        if self.world_size > 1 and dist.is_initialized():
            gc.collect()  # the fit's DDP wrappers, unreachable by now
            dist.destroy_process_group()

    @property
    def is_main(self) -> bool:
        """Whether this process writes the fit's files and its log (rank 0)."""
        return self.rank == 0

    def check_batch_size(self, batch_size: int) -> None:
        """Refuse, before any work, a global batch that does not split into equal shards."""
        if batch_size % self.world_size:
            raise UsageError(f"--batch-size {batch_size} is the global batch of {self.world_size} processes: pass a "
                             f"multiple of {self.world_size}")

    def shard(self, batch: Tensor) -> Tensor:
        """This process's contiguous shard of the indices (B,) of a global batch; B is cut to a multiple of
        ``world_size`` (empty when B < world_size)."""
        usable = len(batch) - len(batch) % self.world_size
        per = usable // self.world_size
        return batch[self.rank * per: (self.rank + 1) * per]

    def split(self, n: int) -> slice:
        """This process's part of ``n`` held-out items (the parts of all processes cover them once)."""
        bounds = torch.linspace(0, n, self.world_size + 1).round().long().tolist()
        return slice(bounds[self.rank], bounds[self.rank + 1])

    def log(self, *args: Any) -> None:
        """``print`` in the process of rank 0; nothing in the others."""
        if self.is_main:
            print(*args)

    def wrap(self, model: nn.Module, method: str = "forward") -> Callable[..., Any]:
        """What a training step calls: ``model.<method>``, through DDP when there are several processes. The
        model's buffers are not broadcast: its quantizer keeps them equal itself."""
        if self.world_size == 1:
            return getattr(model, method)
        device = next(model.parameters()).device
        device_ids = [device.index] if device.type == "cuda" else None
        # torch 2.14 calls broadcast_buffers deprecated; its replacement, forward_sync_buffers=False, would still
        # sync the buffers once, at construction, so the flag stays and its warning is not shown
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "`broadcast_buffers` is deprecated", FutureWarning)
            return DistributedDataParallel(_Method(model, method), device_ids=device_ids, broadcast_buffers=False)

    def sum(self, *values: float | Tensor) -> list[float]:
        """The sums over the processes of ``values`` (one collective; the values themselves where one process)."""
        if self.world_size == 1:
            return [float(v) for v in values]
        device = "cuda" if dist.get_backend() == "nccl" else "cpu"
        t = torch.stack([torch.as_tensor(v, dtype=torch.float64).to(device) for v in values])  # (V,)
        dist.all_reduce(t)
        return t.tolist()

    def sum_(self, t: Tensor) -> Tensor:
        """``t`` summed in place over the processes."""
        if self.world_size > 1:
            dist.all_reduce(t)
        return t

    def check_same(self, tensors: dict[str, Tensor]) -> None:
        """Raise unless each of ``tensors`` (a state dict) holds the same values in every process: DDP keeps the
        weights equal, the quantizer its own codebook and statistics; checked after every epoch, one broadcast per
        tensor and one reduction of the results."""
        if self.world_size == 1:
            return
        differs = []
        for t in tensors.values():
            first = t.detach().clone()
            dist.broadcast(first, src=0)
            differs.append(float(not torch.equal(first, t)))
        device = "cuda" if dist.get_backend() == "nccl" else "cpu"
        flags = self.sum_(torch.tensor(differs, device=device))  # (T,) processes in which each tensor differs
        names = [name for name, flag in zip(tensors, flags.tolist()) if flag]
        if names:
            raise RuntimeError(f"{', '.join(names[:3])} differs between the processes of this fit (rank "
                               f"{self.rank}): the data-parallel fit no longer computes one model")

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()


@contextlib.contextmanager
def fit_folder(
    options: FitOptions, kind: str, metric: str
) -> Iterator[tuple[RunFolder, Distributed, torch.device]]:
    """The output folder of a fit (``RunFolder(options.out, kind, metric)``, written by rank 0 alone), this
    process's place among the fit's processes and its device; the process group ends with the block."""
    dist, device = Distributed.start(options.device)
    if device.type == "cpu":  # from the data's loading and encoding on: each step then reuses the last one's pages
        retain_freed_memory()  # instead of faulting them in anew, and full MNIST's code maps encode in 0.9 GB, not 3.4
    try:
        dist.check_batch_size(options.batch_size)
        with RunFolder(options.out, kind, metric=metric, writer=dist.is_main) as run:
            yield run, dist, device
        dist.barrier()  # no process tears its connections down while rank 0 still writes the last checkpoint
    finally:
        dist.close()
