"""Data-parallel fits under torchrun (gloo, 2 processes on the CPU) compute what one process computes.

Each fit is launched the way users launch it (``python -m torch.distributed.run --nproc_per_node=2 -m
pipelines.fit_...``) on the 60-digit folder; a launch costs a few seconds of process start-up. The weights of a
2-process fit are compared with one process's at the same seed and global batch: they differ only by the order of float sums
(the all-reduced gradients, the quantizer's summed statistics), well within ``ATOL``, except where Adam magnifies it
(see ``assert_same_weights``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from fits import PRIOR_2_LAYERS, VQVAE_16_CODES, logged
from pipelines import fit_prior, fit_vqvae
from vqvae_prior.training.distributed import Distributed
from vqvae_prior.checkpoint import load_prior, load_vqvae
from vqvae_prior.errors import UsageError
from vqvae_prior.quantizer import VectorQuantizer

ROOT = Path(__file__).resolve().parents[1]
ATOL = 1e-4  # on weights of size ~0.1 to 1 after 8 to 12 Adam steps: float-sum order alone moves them ~1e-6
ROUNDING_GRADIENT = 1e-7  # a gradient whose running RMS is below this is at the level of its sums' rounding (~1e-9)
TINY_VQVAE = [*VQVAE_16_CODES, "--batch-size", "16", "--lr-schedule", "constant", "--no-progress", "--device", "cpu"]
TINY_PRIOR = [*PRIOR_2_LAYERS, "--batch-size", "16", "--lr-schedule", "constant", "--label-dropout", "0",
              "--no-progress", "--device", "cpu"]


def torchrun(module: str, *args: str, processes: int = 2) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               "-m", module, *args]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    noise = ("Warning", "warn(", "return DistributedDataParallel")  # DDP's deprecation notes, once per process
    errors = "\n".join(line for line in done.stderr.splitlines() if not any(n in line for n in noise))
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout[-2000:]}\n{errors[-8000:]}"
    return done


def assert_same_weights(a: Path, b: Path, kind: str) -> None:
    """The weights of fits ``a`` (one process) and ``b`` agree within ``ATOL``, but for Adam's magnified entries.

    Adam divides each step by the root of the gradient's running square, so where a weight's gradient is at the
    level of float rounding (~1e-9 behind a unit that is almost never active), the order of the sums alone changes
    the step by a fraction of the learning rate: there the bound is what Adam can move a weight, lr a step. Which
    entries those are is read from the single process's optimizer state (in its ``-last.pt``).
    """
    load = load_vqvae if kind == "vqvae" else load_prior
    model, wb = load(a)[0], load(b)[1]["model"]
    last = torch.load(a.with_name(f"{a.stem}-last.pt"), map_location="cpu", weights_only=False)
    state, lr = last["optimizer"]["state"], last["optimizer"]["param_groups"][0]["lr"]
    tolerance = {}
    for i, (name, _) in enumerate(model.named_parameters()):  # Adam's state is indexed in parameter order
        if i not in state:  # the EMA codebook: a parameter that Adam never steps
            continue
        rounding = state[i]["exp_avg_sq"].sqrt() < ROUNDING_GRADIENT
        tolerance[name] = torch.where(rounding, lr * float(state[i]["step"]), ATOL)
    assert model.state_dict().keys() == wb.keys()
    for name, wa in model.state_dict().items():
        excess = (wa - wb[name]).abs() - tolerance.get(name, ATOL) if wa.is_floating_point() else wa != wb[name]
        assert not bool((excess > 0).any()), f"{name} differs: {int((excess > 0).sum())} entries beyond tolerance"


@pytest.mark.torchrun
def test_two_process_fits_equal_one_process_and_resume(tmp_path, digit_folder):
    data = ["--dataset", "image-folder", "--data-root", str(digit_folder)]
    one, two = tmp_path / "one", tmp_path / "two"
    fit_vqvae.main(fit_vqvae.get_args_parser().parse_args([*data, "--out", str(one), "--epochs", "2", *TINY_VQVAE]))
    # the 2-process fit is stopped after epoch 1 and resumed to epoch 2 (a constant schedule lets --epochs grow)
    first = torchrun("pipelines.fit_vqvae", *data, "--out", str(two), "--epochs", "1", *TINY_VQVAE)
    torchrun("pipelines.fit_vqvae", *data, "--out", str(two), "--epochs", "2", "--resume", *TINY_VQVAE)
    assert first.stdout.count("epoch=1 ") == 1  # one log line per epoch: rank 0's
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())
    assert [m["epoch"] for m in logged(two)] == [1, 2]
    assert_same_weights(one / "vqvae.pt", two / "vqvae.pt", "vqvae")
    for key in ("test_mse", "train_perplexity", "test_codes_used"):  # held-out metrics reduced over the processes
        assert logged(two)[-1][key] == pytest.approx(logged(one)[-1][key], rel=1e-3), key

    # the prior over the 1-process VQ-VAE's codes: the code cache is written once, by rank 0
    prior_one, prior_two = tmp_path / "prior-one", tmp_path / "prior-two"
    vq = ["--vqvae", str(one / "vqvae.pt"), "--epochs", "2", *TINY_PRIOR]
    fit_prior.main(fit_prior.get_args_parser().parse_args([*vq, "--out", str(prior_one)]))
    torchrun("pipelines.fit_prior", *vq, "--out", str(prior_two))
    assert len(list(prior_two.glob("codes-*.pt"))) == 1
    assert [m["epoch"] for m in logged(prior_two)] == [1, 2]
    assert_same_weights(prior_one / "prior.pt", prior_two / "prior.pt", "prior")
    for key in ("test_bits_per_code", "train_bits_per_code"):
        assert logged(prior_two)[-1][key] == pytest.approx(logged(prior_one)[-1][key], rel=1e-4), key


def _quantizer_worker(rank: int, world: int, port: int, z: torch.Tensor, out: Path) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)  # every rank's random state is the same, as under torchrun with one --seed
    quantizer = VectorQuantizer(32, 4).train()
    per = z.shape[1] // world  # z: (steps, B, D, h, w)
    for step in range(5):
        quantizer(z[step, rank * per: (rank + 1) * per])  # this rank's contiguous shard of the global batch
    torch.save(quantizer.state_dict(), out / f"rank{rank}.pt")
    processes = Distributed(rank, world)
    processes.check_same(quantizer.state_dict())  # what the fits check after every epoch: passes
    try:
        processes.check_same({"rank": torch.tensor([float(rank)])})
    except RuntimeError as e:
        (out / f"refused{rank}.txt").write_text(str(e))
    dist.destroy_process_group()


@pytest.mark.torchrun
def test_quantizer_state_is_the_same_on_every_rank_and_as_one_process(tmp_path):
    # 5 steps on global batches of 8 vectors maps 4 x 4 (128 vectors for 32 codes): initialization and restarts
    # draw from the whole global batch, and the statistics are summed over the ranks
    z = torch.randn(5, 8, 4, 4, 4)  # (steps, B, D, h, w)
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_quantizer_worker, args=(2, port, z, tmp_path), nprocs=2)
    torch.manual_seed(0)
    single = VectorQuantizer(32, 4).train()
    for step in range(5):
        single(z[step])
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    for name, value in single.state_dict().items():
        assert torch.equal(ranks[0][name], ranks[1][name]), f"{name} differs between the ranks"
        torch.testing.assert_close(ranks[0][name], value, atol=1e-5, rtol=0, msg=f"{name} differs from one process")
    for rank in range(2):  # a tensor that differs between the processes is refused by both
        assert "rank differs between the processes" in (tmp_path / f"refused{rank}.txt").read_text()


def test_no_ddp_wrapper_outlives_the_process_group(monkeypatch):
    """A fit's DDP wrapper left in a reference cycle is freed when the fit's processes close, before the group
    ends, not at interpreter exit (where a gloo backend's teardown can abort a process whose fit has finished)."""
    import gc
    import socket
    import weakref
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(port))
    dist.init_process_group("gloo", rank=0, world_size=1)
    processes = Distributed(0, 2)  # as a rank of two: wrap() builds DDP (over this one-process group)
    gc.disable()  # no collection but close()'s, as between a fit's collections
    try:
        forward = processes.wrap(torch.nn.Linear(4, 2))
        forward(torch.randn(3, 4)).sum().backward()
        wrapper = weakref.ref(forward)
        cycle = {"forward": forward}  # DDP's own cycles come and go with torch's versions: one made here
        cycle["self"] = cycle
        del forward, cycle
        assert wrapper() is not None  # unreachable, and alive until a collection
        processes.close()
    finally:
        gc.enable()
        if dist.is_initialized():
            dist.destroy_process_group()
    assert wrapper() is None and not dist.is_initialized()


def test_global_batch_is_cut_into_equal_contiguous_shards():
    batch = torch.arange(10)
    shards = [Distributed(rank, 3).shard(batch) for rank in range(3)]
    assert [s.tolist() for s in shards] == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]  # 10 -> 9: a multiple of 3
    parts = [Distributed(rank, 3).split(10) for rank in range(3)]
    assert sum((list(range(10))[p] for p in parts), []) == list(range(10))
    with pytest.raises(UsageError, match="--batch-size 9 is the global batch of 2 processes"):
        Distributed(0, 2).check_batch_size(9)
