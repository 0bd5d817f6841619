"""VQ-VAE shape contracts (non-square included) and checkpoint save -> load -> identical outputs (of the one- and
the two-level VQ-VAE)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from vqvae_prior import AUTOENCODERS
from vqvae_prior.checkpoint import (
    CheckpointError, load_checkpoint, load_prior, load_vqvae, save_checkpoint, weights_digest,
)
from vqvae_prior.errors import UsageError
from vqvae_prior.training.vqvae_fit import VQVAEFit
from vqvae_prior.vqvae import VQVAE, VQVAEConfig


def tiny_vqvae(**kw) -> VQVAE:
    return VQVAE(VQVAEConfig(channels=16, residual_channels=8, code_dim=4, codebook_size=16, **kw))


@pytest.mark.parametrize(
    "in_channels,shape,downsample,codes",
    [(1, (28, 28), 4, (7, 7)), (3, (32, 20), 4, (8, 5)), (1, (128, 80), 4, (32, 20)), (3, (16, 24), 8, (2, 3))],
)
def test_shapes(in_channels, shape, downsample, codes):
    model = tiny_vqvae(in_channels=in_channels, downsample=downsample)
    x = torch.rand(2, in_channels, *shape)
    out = model(x)
    assert out.reconstruction.shape == x.shape
    assert out.indices.shape == (2, *codes)
    model.eval()
    assert model.encode(x).shape == (2, *codes)
    assert model.decode_indices(model.encode(x)).shape == x.shape
    torch.testing.assert_close(model.decode_indices(model.encode(x)), model(x).reconstruction)


def test_bad_inputs_and_configs_are_refused():
    model = tiny_vqvae()
    with pytest.raises(ValueError, match="divisible by downsample=4"):
        model(torch.rand(1, 1, 30, 28))
    with pytest.raises(ValueError, match=r"expected input \(B, 1, H, W\)"):
        model(torch.rand(1, 3, 28, 28))
    with pytest.raises(ValueError, match="power of 2"):
        VQVAEConfig(downsample=6)


def test_training_reduces_the_reconstruction_error():
    model = tiny_vqvae()
    x = torch.rand(16, 1, 16, 16).round()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(60):
        out = model(x)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        first = first if first is not None else float(out.reconstruction_loss.detach())
    assert float(out.reconstruction_loss.detach()) < 0.5 * first


@pytest.mark.parametrize("arch", ["vqvae", "vqvae2"])
def test_vqvae_save_load_gives_identical_weights_and_outputs(tmp_path, arch):
    architecture = AUTOENCODERS[arch]
    model = architecture.model(architecture.config(channels=16, residual_channels=8, code_dim=4, codebook_size=16,
                                                   in_channels=3, downsample=2))
    model(torch.rand(4, 3, 12, 8))  # initializes the codebooks, moves the EMA statistics
    model.eval()
    save_checkpoint(tmp_path / "vq.pt", "vqvae", model, data={"name": "test", "modality": "image"})
    loaded, payload = load_vqvae(tmp_path / "vq.pt")
    assert type(loaded) is architecture.model and type(loaded.config) is architecture.config
    assert payload["arch"] == arch and loaded.config == model.config
    assert payload["data"] == {"name": "test", "modality": "image"}
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())
    x = torch.rand(2, 3, 12, 8)
    assert all(torch.equal(a, b) for a, b in zip(loaded.encode_levels(x), model.encode_levels(x), strict=True))
    assert torch.equal(loaded(x).reconstruction, model(x).reconstruction)


def test_prior_save_load_gives_identical_outputs_and_samples(tmp_path, tiny_prior):
    model = tiny_prior(num_classes=3)
    save_checkpoint(tmp_path / "prior.pt", "prior", model)
    loaded, _ = load_prior(tmp_path / "prior.pt")
    assert loaded.config == model.config
    indices, labels = torch.randint(0, 16, (2, 5, 4)), torch.tensor([0, 2])
    assert torch.equal(loaded(indices, labels), model(indices, labels))
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    assert torch.equal(loaded.sample(2, (5, 4), labels, generator=g1), model.sample(2, (5, 4), labels, generator=g2))


def test_checkpoint_write_is_atomic_and_errors_are_clear(tmp_path):
    model = tiny_vqvae()
    path = tmp_path / "vq.pt"
    save_checkpoint(path, "vqvae", model)
    assert [p.name for p in tmp_path.iterdir()] == ["vq.pt"]  # no temporary file left behind
    with pytest.raises(CheckpointError, match="holds a vqvae model, expected a prior"):
        load_prior(path)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt"):
        load_checkpoint(tmp_path / "junk.pt")
    payload = load_checkpoint(path)
    assert payload["config"] == dataclasses.asdict(model.config)


@pytest.mark.faults
def test_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model = tiny_vqvae()
    path = tmp_path / "vq.pt"
    save_checkpoint(path, "vqvae", model, epoch=1)

    def broken_save(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, "vqvae", model, epoch=2)
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["vq.pt"]


@pytest.mark.parametrize("arch", ["vqvae", "vqvae2"])
def test_kernels_are_channels_last_and_the_weights_digest_ignores_the_layout(arch):
    """The VQ-VAEs keep channels-last kernels (oneDNN's faster path); the digest that prior checkpoints record of
    their weights is that of the values, so the weights of a checkpoint written before read the same."""
    architecture = AUTOENCODERS[arch]
    model = architecture.model(architecture.config(channels=16, residual_channels=8, codebook_size=16, code_dim=8))
    kernels = [p for p in model.parameters() if p.ndim == 4]
    assert kernels and all(p.is_contiguous(memory_format=torch.channels_last) for p in kernels)
    state = model.state_dict()
    plain = {key: value.contiguous() for key, value in state.items()}
    assert weights_digest(state) == weights_digest(plain)
    changed = next(key for key, value in plain.items() if value.ndim == 4)
    assert weights_digest(state) != weights_digest({**plain, changed: plain[changed] + 1})


@pytest.mark.parametrize("levels", [1, 2])
def test_residual_blocks_reach_every_encoder_and_decoder(levels):
    """``--residual-blocks N`` builds every residual stack of the model with N blocks; below 0 it is refused."""
    options = VQVAEFit(dataset="mnist", levels=levels, residual_blocks=3).resolved()
    config = options.model_config(in_channels=1)
    assert config.num_residual_blocks == 3
    model = options.architecture().model(config)
    stacks = [m for m in model.modules() if type(m).__name__ == "ResidualStack"]
    assert len(stacks) == 2 * levels and all(len(s.blocks) == 3 for s in stacks)
    with pytest.raises(UsageError, match="--residual-blocks must be >= 0, got -1"):
        VQVAEFit(dataset="mnist", residual_blocks=-1).resolved()
