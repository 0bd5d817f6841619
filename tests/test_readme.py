"""The README's Python blocks run as written (as vector-quantize-pytorch tests its README): in order, in one
namespace, in a temporary folder holding tiny checkpoints at the paths they name (fitted on nothing: the blocks'
shapes and calls are what is checked, not the pictures)."""

from __future__ import annotations

import re
from pathlib import Path

import torch

import data  # noqa: F401  imported before the test changes folder
import pipelines.generate  # noqa: F401
from vqvae_prior import VQVAE, GatedPixelCNN, PriorConfig, VQVAEConfig, save_checkpoint
from vqvae_prior.checkpoint import weights_digest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def write_tiny_mnist_checkpoints() -> None:
    """runs/mnist/vqvae.pt (28x28 -> 7x7 codes, K=16) and runs/mnist-prior/prior.pt (10 classes), as the fits write
    them; the VQ-VAE's data spec is the embedded MNIST sample, available offline."""
    vqvae = VQVAE(VQVAEConfig(channels=8, residual_channels=4, code_dim=4, codebook_size=16))
    vqvae(torch.rand(8, 1, 28, 28))  # the codebook from encoder outputs
    prior = GatedPixelCNN(PriorConfig(16, 10, channels=8, num_layers=2, head_channels=16))
    digits = [str(d) for d in range(10)]
    save_checkpoint("runs/mnist/vqvae.pt", "vqvae", vqvae, data={"name": "mnist-sample", "root": None,
                    "modality": "image"}, label_names=digits, sample_shape=[1, 28, 28])
    save_checkpoint("runs/mnist-prior/prior.pt", "prior", prior, codebook_size=16, label_names=digits,
                    code_shape=[7, 7], vqvae="runs/mnist/vqvae.pt", vqvae_digest=weights_digest(vqvae.state_dict()))


def test_readme_python_blocks_run_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_tiny_mnist_checkpoints()
    blocks = python_blocks(README.read_text())
    assert len(blocks) >= 3 and "VQPriorPipeline.from_checkpoints" in blocks[0]  # the library's first example
    namespace: dict = {}
    for i, block in enumerate(blocks):
        exec(compile(block, f"README.md, Python block {i + 1}", "exec"), namespace)
    assert namespace["out"].images.shape == (16, 1, 28, 28) and namespace["out"].codes.shape == (16, 7, 7)
    done = namespace["done"]
    assert done.images.shape == (4, 5, 1, 28, 28)
    assert torch.equal(done.codes[:, :, :3], namespace["codes"][:, None, :3].expand(-1, 5, -1, -1))
    assert sorted(p.parent.name for p in Path("digits").rglob("*.png")) == [str(d) for d in range(10)]
