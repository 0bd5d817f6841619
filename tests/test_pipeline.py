"""The library's front door: the public API, the load-once pipeline (bit-identical to the sampler it replaced),
completion of images and sounds, and the registries of prior architectures and quantizers."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from pipelines import generate
from vqvae_prior import (
    PRIORS, QUANTIZERS, VQVAE, CheckpointError, GatedPixelCNN, PriorArchitecture, PriorConfig, VectorQuantizer,
    VQPriorPipeline, VQVAEConfig, load_checkpoint, load_prior, load_vqvae, save_checkpoint,
)
from vqvae_prior import sampling
from vqvae_prior.sampling.cached import STEP_FORMS
from vqvae_prior.audio import SpectrogramConfig
from vqvae_prior.checkpoint import weights_digest

K = 16


def tiny_pair(num_classes: int = 3, in_channels: int = 1, height: int = 28, width: int = 28) -> tuple[VQVAE, nn.Module]:
    """A tiny VQ-VAE (downsample 4, K=16) whose codebook is initialized from data, and a tiny prior over its codes."""
    vqvae = VQVAE(VQVAEConfig(in_channels=in_channels, channels=8, residual_channels=4, code_dim=4, codebook_size=K))
    vqvae(torch.rand(8, in_channels, height, width))  # a training step: the codebook from encoder outputs
    prior = GatedPixelCNN(PriorConfig(K, num_classes, channels=8, num_layers=3, head_channels=16))
    return vqvae.eval(), prior.eval()


def save_pair(tmp_path, vqvae: VQVAE, prior: nn.Module, code_shape=(7, 7), data=None):
    """Checkpoints as the fits write them (the keys generate() reads)."""
    data = data or {"name": "mnist-sample", "root": None, "modality": "image"}
    save_checkpoint(tmp_path / "vqvae.pt", "vqvae", vqvae, data=data, label_names=["a", "b", "c"])
    save_checkpoint(tmp_path / "prior.pt", "prior", prior, codebook_size=K, label_names=["a", "b", "c"],
                    code_shape=list(code_shape), vqvae=str(tmp_path / "vqvae.pt"),
                    vqvae_digest=weights_digest(vqvae.state_dict()))
    return tmp_path / "vqvae.pt", tmp_path / "prior.pt"


@pytest.fixture
def checkpoints(tmp_path):
    return save_pair(tmp_path, *tiny_pair())


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_public_api():
    import vqvae_prior

    for name in ("VQPriorPipeline", "VQVAE", "GatedPixelCNN", "load_vqvae", "load_prior"):
        assert name in vqvae_prior.__all__ and hasattr(vqvae_prior, name)


def test_pipeline_checks_once_and_equals_sample_then_decode(checkpoints, monkeypatch):
    """The checks and the loading happen in from_checkpoints; a call is prior.sample -> decode, and generate() is
    the same call on a freshly loaded pipeline."""
    import vqvae_prior.pipeline

    digests = []
    monkeypatch.setattr(vqvae_prior.pipeline, "weights_digest", lambda sd: digests.append(1) or weights_digest(sd))
    pipe = VQPriorPipeline.from_checkpoints(*checkpoints, device="cpu")
    labels = [0, 1, 2, 2, 1]
    first = pipe(5, labels=labels, generator=seeded(3))
    for path in checkpoints:
        path.unlink()  # the pipeline holds its models: the files are not read again
    again = pipe(5, labels=labels, generator=seeded(3))
    assert len(digests) == 1 and torch.equal(first.codes, again.codes) and torch.equal(first.images, again.images)

    vqvae, prior = pipe.vqvae, pipe.prior
    codes = prior.sample(5, (7, 7), torch.tensor(labels), generator=seeded(3))
    assert torch.equal(first.codes, codes)
    assert torch.equal(first.images, vqvae.decode_indices(codes).clamp(0, 1))
    assert first.images.shape == (5, 1, 28, 28) and first.labels.tolist() == labels and first.waveforms is None
    assert first.label_names == ["a", "b", "c"] and pipe.modality.name == "image"


def test_generate_is_the_pipeline(checkpoints):
    pipe = VQPriorPipeline.from_checkpoints(*checkpoints, device="cpu")
    out = generate.generate(*checkpoints, 4, labels=[2, 0, 1, 1], seed=7, device="cpu")
    expected = pipe(4, labels=[2, 0, 1, 1], generator=seeded(7))
    assert torch.equal(out.codes, expected.codes) and torch.equal(out.images, expected.images)


def check_completion(pipe: VQPriorPipeline, x: Tensor, keep: int, labels: list[int]) -> None:
    """Kept rows are the inputs' own codes; the rest is what the prior samples given them (with the same
    generator); completions of one input differ; the kept picture is the input above the kept rows, blank below."""
    S = 4
    done = pipe.complete(x, keep=keep, labels=labels, completions=S, generator=seeded(1))
    N = len(labels)
    codes = pipe.vqvae.encode(pipe.inputs(x))  # (N, h, w)
    assert done.codes.shape == (N, S, *pipe.code_shape) and done.images.shape == (N, S, *pipe.sample_shape)
    assert torch.equal(done.codes[:, :, :keep], codes[:, None, :keep].expand(-1, S, -1, -1))
    given = codes.repeat_interleave(S, dim=0)
    given[:, keep:] = -1
    expected = pipe.prior.sample(N * S, pipe.code_shape, torch.tensor(labels).repeat_interleave(S), 1.0, seeded(1),
                                 given)
    assert torch.equal(rearrange(done.codes, "n s h w -> (n s) h w"), expected)
    for completions in done.codes:
        assert len({tuple(c[keep:].flatten().tolist()) for c in completions}) > 1  # sampled, not copied
    assert not torch.equal(done.codes[:, :, keep:], codes[:, None, keep:].expand(-1, S, -1, -1))
    rows = keep * pipe.vqvae.config.downsample
    assert torch.equal(done.kept[:, :, :rows], done.inputs[:, :, :rows]) and (done.kept[:, :, rows:] == 0).all()
    assert done.keep == keep and done.labels.tolist() == labels and 0 <= done.images.min() <= done.images.max() <= 1


def test_complete_images_keeps_the_top_code_rows_and_samples_the_rest():
    """MNIST's shape: 28 x 28 images, 7 x 7 codes, the top 3 rows kept."""
    pipe = VQPriorPipeline(*tiny_pair(), (7, 7), ["a", "b", "c"])
    x = torch.rand(3, 1, 28, 28)
    check_completion(pipe, x, keep=3, labels=[0, 2, 1])
    assert pipe.complete(x, keep=3, labels=[0, 2, 1]).waveforms is None


def test_complete_audio_keeps_the_first_frames_and_returns_waveforms():
    """FSDD's code shape: 10 x 8 codes (here of 40 x 32 stft spectrograms), the first 3 rows (12 frames) kept; the
    inputs are waveforms."""
    cfg = SpectrogramConfig(representation="stft", n_fft=62, hop_length=16, n_frames=40, griffin_lim_iters=4)
    spec = {"name": "audio-folder", "modality": "audio", "spectrogram": dataclasses.asdict(cfg)}
    pipe = VQPriorPipeline(*tiny_pair(height=40, width=32), (10, 8), ["a", "b", "c"], spec)
    t = np.arange(cfg.num_samples) / cfg.sample_rate
    waves = np.stack([0.4 * np.sin(2 * np.pi * f * t) for f in (400.0, 900.0)]).astype(np.float32)  # (2, T)
    check_completion(pipe, waves, keep=3, labels=[1, 2])
    done = pipe.complete(waves, keep=3, labels=[1, 2], completions=2)
    assert done.inputs.shape == (2, 1, 40, 32) and done.waveforms.shape == (2, 2, cfg.num_samples)
    assert done.sample_rate == cfg.sample_rate and torch.isfinite(done.waveforms).all()


def test_complete_refuses_bad_requests():
    pipe = VQPriorPipeline(*tiny_pair(), (7, 7), ["a", "b", "c"])
    x = torch.rand(2, 1, 28, 28)
    with pytest.raises(ValueError, match=r"keep \(code rows\) must be in 0 \.\. 7, got 8"):
        pipe.complete(x, keep=8, labels=[0, 1])
    with pytest.raises(ValueError, match=r"expected float inputs \(N, 1, 28, 28\), got torch.float32 \(2, 1, 32, 32\)"):
        pipe.complete(torch.rand(2, 1, 32, 32), keep=3, labels=[0, 1])
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        pipe.complete(x * 255, keep=3, labels=[0, 1])
    with pytest.raises(ValueError, match="class-conditional"):
        pipe.complete(x, keep=3)
    with pytest.raises(ValueError, match="completions must be >= 1"):
        pipe.complete(x, keep=3, labels=[0, 1], completions=0)


def test_pipeline_refuses_a_prior_of_another_codebook():
    vqvae, _ = tiny_pair()
    with pytest.raises(CheckpointError, match="K=32 codes but the VQ-VAE has a codebook of K=16"):
        VQPriorPipeline(vqvae, GatedPixelCNN(PriorConfig(32)), (7, 7))


# ---------------------------------------------------------------------------------------------- registries


@dataclasses.dataclass(frozen=True)
class LeftNeighbourConfig:
    codebook_size: int
    num_classes: int = 0


class LeftNeighbourPrior(nn.Module):
    """A toy prior architecture: each code depends only on the code to its left (none at a row's start). What a new
    architecture needs: forward, check_labels, device and sample; then one registry entry (and one more for its
    step-by-step form, for the cached sampler)."""

    def __init__(self, config: LeftNeighbourConfig) -> None:
        super().__init__()
        self.config = config
        self.table = nn.Embedding(config.codebook_size + 1, config.codebook_size)  # row K: no left neighbour

    @property
    def device(self) -> torch.device:
        return self.table.weight.device

    def check_labels(self, labels, batch_size):
        if labels is not None:
            raise ValueError("this prior is unconditional: pass labels=None")
        return None

    def forward(self, indices: Tensor, labels: Tensor | None = None) -> Tensor:
        left = F.pad(indices, (1, 0), value=self.config.codebook_size)[:, :, :-1]  # (B, h, w)
        return rearrange(self.table(left), "b h w k -> b k h w")

    @torch.no_grad()
    def sample(self, n, shape, labels=None, temperature=1.0, generator=None, given=None, method="cached"):
        return sampling.sample(self, n, shape, labels, temperature, generator, given, method)


class LeftNeighbourState:
    def __init__(self, model: LeftNeighbourPrior, n: int, shape: tuple[int, int], labels: None) -> None:
        self.model, self.n = model, n

    def start_row(self, above):
        self.left = torch.full((self.n,), self.model.config.codebook_size, dtype=torch.long)

    def logits(self, c):
        return self.model.table(self.left)  # (n, K)

    def put(self, c, codes):
        self.left = codes


def test_a_registered_prior_architecture_is_saved_loaded_sampled_and_piped(tmp_path, monkeypatch):
    monkeypatch.setitem(PRIORS, "left_neighbour", PriorArchitecture(LeftNeighbourPrior, LeftNeighbourConfig))
    monkeypatch.setitem(STEP_FORMS, LeftNeighbourPrior, LeftNeighbourState)
    vqvae, _ = tiny_pair()
    prior = LeftNeighbourPrior(LeftNeighbourConfig(K))
    nn.init.normal_(prior.table.weight, std=3.0)
    paths = save_pair(tmp_path, vqvae, prior)
    loaded, payload = load_prior(paths[1])
    assert payload["arch"] == "left_neighbour" and isinstance(loaded, LeftNeighbourPrior)
    assert load_checkpoint(paths[0])["kind"] == "vqvae" and load_checkpoint(paths[0])["arch"] == "vqvae"
    reference = loaded.sample(5, (4, 6), generator=seeded(2), method="reference")
    assert torch.equal(reference, loaded.sample(5, (4, 6), generator=seeded(2)))  # the generic cached sampler
    out = VQPriorPipeline.from_checkpoints(*paths, device="cpu")(5, generator=seeded(2))
    assert out.codes.shape == (5, 7, 7) and out.images.shape == (5, 1, 28, 28)

    monkeypatch.delitem(PRIORS, "left_neighbour")
    with pytest.raises(CheckpointError, match=r"prior\.pt: unknown prior architecture 'left_neighbour'.*registry"):
        load_prior(paths[1])
    with pytest.raises(ValueError, match="LeftNeighbourPrior is not a registered prior architecture"):
        save_checkpoint(tmp_path / "x.pt", "prior", prior)


class NoisyVectorQuantizer(VectorQuantizer):
    """A stand-in for a new quantizer: another class under another name."""


def test_a_registered_quantizer_is_built_saved_and_loaded(tmp_path, monkeypatch):
    monkeypatch.setitem(QUANTIZERS, "noisy", NoisyVectorQuantizer)
    config = VQVAEConfig(channels=8, residual_channels=4, code_dim=4, codebook_size=K, quantizer="noisy")
    model = VQVAE(config)
    assert type(model.quantizer) is NoisyVectorQuantizer
    save_checkpoint(tmp_path / "vq.pt", "vqvae", model)
    loaded, payload = load_vqvae(tmp_path / "vq.pt")
    assert type(loaded.quantizer) is NoisyVectorQuantizer and payload["config"]["quantizer"] == "noisy"
    assert type(VQVAE(dataclasses.replace(config, quantizer="vq")).quantizer) is VectorQuantizer
    monkeypatch.delitem(QUANTIZERS, "noisy")
    with pytest.raises(ValueError, match="unknown quantizer 'noisy'"):
        VQVAE(config)
    with pytest.raises(CheckpointError, match="unknown quantizer 'noisy'"):
        load_vqvae(tmp_path / "vq.pt")


# ---------------------------------------------------------------------------------------------- old checkpoints


def test_checkpoints_written_before_architecture_names_still_load(tmp_path):
    """Version 1: no "arch", a VQ-VAE config without "quantizer", a data spec without "modality"."""
    vqvae, prior = tiny_pair()
    config = dataclasses.asdict(vqvae.config)
    del config["quantizer"]
    torch.save({"format": "vqvae_prior", "version": 1, "kind": "vqvae", "config": config,
                "model": vqvae.state_dict(), "data": {"name": "mnist-sample", "root": None}}, tmp_path / "vqvae.pt")
    torch.save({"format": "vqvae_prior", "version": 1, "kind": "prior", "config": dataclasses.asdict(prior.config),
                "model": prior.state_dict(), "codebook_size": K, "label_names": ["a", "b", "c"], "code_shape": [7, 7],
                "vqvae": "vqvae.pt", "vqvae_digest": weights_digest(vqvae.state_dict())}, tmp_path / "prior.pt")
    loaded_vqvae, vq_ckpt = load_vqvae(tmp_path / "vqvae.pt")
    loaded_prior, prior_ckpt = load_prior(tmp_path / "prior.pt")
    assert vq_ckpt["data"]["modality"] == "image" and vq_ckpt["config"] == dataclasses.asdict(vqvae.config)
    assert prior_ckpt["arch"] == "gated_pixelcnn" and isinstance(loaded_prior, GatedPixelCNN)
    x = torch.rand(2, 1, 28, 28)
    assert torch.equal(loaded_vqvae.encode(x), vqvae.encode(x))
    out = VQPriorPipeline.from_checkpoints(tmp_path / "vqvae.pt", tmp_path / "prior.pt", device="cpu")
    assert torch.equal(out(3, [0, 1, 2], generator=seeded(0)).codes, prior.sample(3, (7, 7), [0, 1, 2],
                                                                                  generator=seeded(0)))


def test_checkpoints_of_a_newer_version_are_refused(tmp_path):
    vqvae, _ = tiny_pair()
    save_checkpoint(tmp_path / "vq.pt", "vqvae", vqvae)
    payload = torch.load(tmp_path / "vq.pt", weights_only=True)
    torch.save({**payload, "version": 99}, tmp_path / "vq.pt")
    with pytest.raises(CheckpointError, match="newer vqvae_prior .*update vqvae_prior"):
        load_vqvae(tmp_path / "vq.pt")
