"""generate() per call against a pipeline loaded once: 64 MNIST-shaped samples.

    git worktree add /tmp/vqvae-1811e11 1811e11     # the code before VQPriorPipeline, as the baseline
    python -m benchmarks.pipeline --threads 2 --baseline /tmp/vqvae-1811e11

Times, each the median of ``--runs`` calls after a warm-up, all on the same two checkpoints. The three are timed in
turn, one call of each per round (the two ``generate`` ones each in a process of its own that waits for the next
round): the machine's background noise, which comes and goes over seconds, then falls on each alike.

- ``baseline`` (with ``--baseline DIR``): ``pipelines.generate.generate(vqvae, prior, n, labels, seed)`` of the code
  checked out in DIR, run in a fresh process with DIR first on the path. Each call loads both checkpoints, checks
  them, samples and decodes: what a script calling generate() repeatedly paid before the pipeline existed.
- ``generate``: the same calls with this code (generate() is now a pipeline loaded for one call).
- ``pipeline``: ``pipe(n, labels, generator)`` on a ``VQPriorPipeline`` already loaded: sample and decode only.

It also checks that the pipeline's codes and images are bit-identical to the baseline's for the same seed.

The checkpoints: ``--vqvae`` and ``--prior`` (e.g. the MNIST fits of the README), or, by default, the default
configs (``VQVAEConfig()``: 28x28 images -> 7x7 codes, K=256; ``PriorConfig(256, 10 classes)``: 12 layers),
seeded, randomly initialized (sampling costs the same whatever the weights) and saved with an Adam state beside the
weights, as a fit saves them. They are written by the baseline's code when there is one (so that it can read them;
this code reads checkpoints of every earlier version), else by this code.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import jsonable, machine, markdown_table, median, sync, write_json
from vqvae_prior.training.steps import pick_device
from vqvae_prior import VQPriorPipeline

ROOT = Path(__file__).resolve().parents[1]

# Runs in a fresh process against the code on its path (this tree, or the baseline's): only API that every version
# since 1811e11 has. Argument: a JSON dict. Prints "ready" after its warm-up call, then the seconds of one timed call
# for each line "time" it reads; "save" writes its last outputs and ends it.
GENERATE_SCRIPT = r'''
import json, sys, time
import torch
from pipelines.generate import generate
from vqvae_prior.checkpoint import save_checkpoint, weights_digest
from vqvae_prior.prior import GatedPixelCNN, PriorConfig
from vqvae_prior.vqvae import VQVAE, VQVAEConfig

a = json.loads(sys.argv[1])
if a["threads"]:
    torch.set_num_threads(a["threads"])


def fit_state(model):
    """An Adam state as a fit leaves it (zero gradients: the weights do not move)."""
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.grad = torch.zeros_like(p)
    optimizer = torch.optim.Adam(params, lr=1e-3)
    optimizer.step()
    return {"optimizer": optimizer.state_dict(), "epoch": 1}


if a["write"]:
    torch.manual_seed(a["seed"])
    vqvae = VQVAE(VQVAEConfig())
    prior = GatedPixelCNN(PriorConfig(codebook_size=256, num_classes=10))
    data = {"name": "mnist", "root": None}
    save_checkpoint(a["vqvae"], "vqvae", vqvae, data=data, label_names=list("0123456789"),
                    sample_shape=[1, 28, 28], **fit_state(vqvae))
    save_checkpoint(a["prior"], "prior", prior, codebook_size=256, label_names=list("0123456789"), code_shape=[7, 7],
                    vqvae=a["vqvae"], vqvae_digest=weights_digest(vqvae.state_dict()), **fit_state(prior))
device = torch.device(a["device"])


def call():
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    out = generate(a["vqvae"], a["prior"], a["n"], a["labels"], seed=a["seed"], device=device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0, out


call()  # warm-up
print("ready", flush=True)
for line in sys.stdin:  # "time": one timed call; "save": the last outputs to a["outputs"], and exit
    if line.strip() == "save":
        break
    seconds, out = call()
    print(json.dumps(seconds), flush=True)
torch.save({"codes": out.codes, "images": out.images}, a["outputs"])
'''


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", help="a checkout of an earlier revision (e.g. 1811e11) to time generate() of")
    parser.add_argument("--vqvae", help="VQ-VAE checkpoint (default: the default config, written for the run)")
    parser.add_argument("--prior", help="prior checkpoint fitted on that VQ-VAE's codes (with --vqvae)")
    parser.add_argument("--n", type=int, default=64, help="samples per call")
    parser.add_argument("--runs", type=int, default=5, help="timed calls of each")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--out", default="benchmarks/results/pipeline.json", help="JSON results")
    return parser


class GenerateProcess:
    """``generate()`` of the code at ``root`` in a process of its own, timed one call at a time (:meth:`call`);
    :meth:`close` has it write its last outputs to ``outputs``."""

    def __init__(self, root: Path, vqvae: str, prior: str, write: bool, outputs: Path, args: argparse.Namespace,
                 labels: list[int] | None) -> None:
        payload = {"vqvae": vqvae, "prior": prior, "write": write, "n": args.n, "labels": labels, "seed": args.seed,
                   "device": str(args.device), "threads": args.threads, "outputs": str(outputs)}
        env = {**os.environ, "PYTHONPATH": str(root)}
        self.root = root
        self.process = subprocess.Popen([sys.executable, "-c", GENERATE_SCRIPT, json.dumps(payload)], cwd=root,
                                        env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True)
        self._read()  # "ready": checkpoints written, warm-up call done

    def _read(self) -> str:
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"generate() of {self.root} failed:\n{self.process.stderr.read()[-3000:]}")
        return line

    def call(self) -> float:
        self.process.stdin.write("time\n")
        self.process.stdin.flush()
        return float(self._read())

    def close(self) -> None:
        self.process.stdin.write("save\n")
        self.process.stdin.flush()
        if self.process.wait():
            raise RuntimeError(f"generate() of {self.root} failed:\n{self.process.stderr.read()[-3000:]}")


def pipeline_call(pipe: VQPriorPipeline, labels: list[int] | None, args: argparse.Namespace) -> tuple[float, object]:
    """Seconds of one call of a loaded pipeline, and its output."""
    sync(pipe.device)
    t0 = time.perf_counter()
    out = pipe(args.n, labels, generator=torch.Generator(pipe.device).manual_seed(args.seed))
    sync(pipe.device)
    return time.perf_counter() - t0, out


def main(args: argparse.Namespace) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    if (args.vqvae is None) != (args.prior is None):
        raise ValueError("pass both --vqvae and --prior, or neither (the default configs)")
    if args.baseline is not None and not (Path(args.baseline) / "pipelines" / "generate.py").is_file():
        raise ValueError(f"--baseline {args.baseline}: expected a checkout of vqvae_prior (pipelines/generate.py)")
    device = pick_device(args.device)
    args.device = device
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write = args.vqvae is None
        vqvae, prior = (str(tmp / "vqvae.pt"), str(tmp / "prior.pt")) if write else (args.vqvae, args.prior)
        result = {"machine": machine(device), "args": jsonable({**vars(args), "device": str(device)}),
                  "checkpoints": "default configs, written for the run" if write else [vqvae, prior]}
        # the first run writes the default checkpoints: the baseline's code when there is one
        first = Path(args.baseline) if args.baseline else ROOT
        classes = 10 if write else torch.load(prior, weights_only=True)["config"]["num_classes"]
        labels = [i % classes for i in range(args.n)] if classes else None
        processes = {}
        if args.baseline:
            processes["baseline"] = GenerateProcess(first, vqvae, prior, write, tmp / "baseline.pt", args, labels)
        processes["generate"] = GenerateProcess(ROOT, vqvae, prior, write and not args.baseline, tmp / "generate.pt",
                                                args, labels)
        pipe = VQPriorPipeline.from_checkpoints(vqvae, prior, device)
        pipeline_call(pipe, labels, args)  # warm-up
        timed = {name: [] for name in [*processes, "pipeline"]}
        for _ in range(args.runs):  # one call of each per round
            for name, process in processes.items():
                timed[name].append(process.call())
            seconds, out = pipeline_call(pipe, labels, args)
            timed["pipeline"].append(seconds)
        for process in processes.values():
            process.close()
        reference = torch.load(tmp / ("baseline.pt" if args.baseline else "generate.pt"), weights_only=True)
        result["bit_identical"] = {
            "to": "baseline" if args.baseline else "generate",
            "codes": torch.equal(out.codes, reference["codes"]),
            "images": torch.equal(out.images, reference["images"]),
        }
    for name, runs in timed.items():
        result[name] = {"median_seconds": median(runs), "runs": runs}
    rows = [[name, f"{result[name]['median_seconds']:.3f}",
             f"{result[name]['median_seconds'] / result['pipeline']['median_seconds']:.2f}x"] for name in timed]
    result["table"] = markdown_table(["what", "seconds, median", "time / pipeline's"], rows)
    result["load_average"] = os.getloadavg()[0]  # > threads: other processes competed for the cores
    print(result["machine"])
    print(result["table"])
    print(f"pipeline output bit-identical to {result['bit_identical']['to']}'s: codes "
          f"{result['bit_identical']['codes']}, images {result['bit_identical']['images']}")
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main(get_args_parser().parse_args())
