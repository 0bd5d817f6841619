"""The Python blocks of README.md and of every page in docs/ run as written (as vector-quantize-pytorch tests its
README): each file's blocks in order, in one namespace, in a temporary folder holding tiny checkpoints at the paths
they name (fitted on nothing: the blocks' shapes and calls are what is checked, not the pictures). The shipped
pretrained models are the real ones."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import data  # noqa: F401  imported before the test changes folder
import pipelines.generate  # noqa: F401
from vqvae_prior import VQVAE, GatedPixelCNN, PriorConfig, VQVAEConfig, save_checkpoint
from vqvae_prior.checkpoint import weights_digest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


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


def check_samples_and_completions(ns: dict, kept_codes: torch.Tensor) -> None:
    """16 samples in ``out``; in ``done``, 5 completions of each of 4 images that keep their first 3 code rows."""
    assert ns["out"].images.shape == (16, 1, 28, 28) and ns["out"].codes.shape == (16, 7, 7)
    assert ns["done"].images.shape == (4, 5, 1, 28, 28)
    assert torch.equal(ns["done"].codes[:, :, :3], kept_codes[:, None, :3].expand(-1, 5, -1, -1))


def check_readme(ns: dict) -> None:
    kept = ns["pipe"].vqvae.encode(ns["out"].images[:4].to(ns["pipe"].device)).cpu()  # (4, 7, 7)
    check_samples_and_completions(ns, kept)


def check_library(ns: dict) -> None:
    check_samples_and_completions(ns, ns["codes"])
    assert ns["one_off"].images.shape == (3, 1, 28, 28)


def check_fitting(ns: dict) -> None:
    assert sorted(p.parent.name for p in Path("digits").rglob("*.png")) == [str(d) for d in range(10)]
    assert {"mnist", "fsdd"} <= set(ns["pretrained"].available())


def check_audio(ns: dict) -> None:
    assert ns["spec"].shape == (80, 64) and ns["back"].shape == (ns["cfg"].num_samples,)


def check_datasets(ns: dict) -> None:
    assert (len(ns["splits"].train), len(ns["splits"].test)) == (4500, 500)


# what each page's blocks must leave behind; a page with Python blocks and no entry here fails the test below
CHECKS: dict[str, Callable[[dict], None]] = {
    "README.md": check_readme, "library.md": check_library, "fitting.md": check_fitting, "audio.md": check_audio,
    "datasets.md": check_datasets,
}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_python_blocks_run_as_written(page, tmp_path, monkeypatch):
    blocks = python_blocks(page.read_text())
    if not blocks:
        assert page.name not in CHECKS, f"{page.name} lost its Python blocks"
        return
    assert page.name in CHECKS, f"{page.name} has Python blocks: say in CHECKS what they must leave behind"
    monkeypatch.chdir(tmp_path)
    write_tiny_mnist_checkpoints()
    namespace: dict = {}
    for i, block in enumerate(blocks):
        exec(compile(block, f"{page.name}, Python block {i + 1}", "exec"), namespace)
    CHECKS[page.name](namespace)


def test_readme_links_resolve():
    """Every relative link of README.md, BENCHMARKS.md and docs/ names a file that exists."""
    for page in [*PAGES, ROOT / "BENCHMARKS.md"]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" not in target:
                assert (page.parent / target).exists(), f"{page.name} links to {target}, which does not exist"
