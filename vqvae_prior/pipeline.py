"""The generation pipeline: a VQ-VAE and a prior over its codes, loaded and checked once, then called.

    pipe = VQPriorPipeline.from_checkpoints("runs/mnist/vqvae.pt", "runs/mnist-prior/prior.pt")
    pipe = VQPriorPipeline.from_pretrained("NAME")             # a model shipped in the package (vqvae_prior.pretrained)
    out = pipe(16, labels=[7] * 16, generator=torch.Generator(pipe.device).manual_seed(0))
    done = pipe.complete(x, keep=3, labels=y, completions=4)   # x: real images (or audio clips)

As in diffusers' pipelines: a thin object composing the models, built once (:meth:`VQPriorPipeline.from_checkpoints`
checks that the prior models the VQ-VAE's K codes and was fitted on exactly these VQ-VAE weights), whose
``__call__`` samples code maps from the prior and decodes them, returning a small dataclass. It is inference only:
the fits live in ``pipelines/``.

- ``pipe(n, labels, temperature, generator)``: new samples (:class:`PipelineOutput`).
- ``pipe.complete(x, keep, labels, completions)``: completion. Real inputs are encoded; the top ``keep`` rows of
  each code map (for audio, whose spectrograms run time down the rows: the first frames) are kept and the rest is
  sampled from the prior, conditioned on them and on the label (:class:`CompletionOutput`).

A two-level VQ-VAE (``vqvae_prior.vqvae2``) goes with a two-level prior (``vqvae_prior.hierarchy``): the pipeline
samples the top code maps, then the bottom ones given them, and decodes both; completion keeps the kept rows' codes
of both levels.

The VQ-VAE's data spec gives the pipeline its modality (:mod:`vqvae_prior.modality`): for recordings, the decoded
spectrograms are also inverted to waveforms by Griffin-Lim, and ``complete`` also takes waveforms.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from einops import rearrange, repeat
from torch import Tensor, nn

from vqvae_prior import pretrained
from vqvae_prior.checkpoint import CheckpointError, load_prior, load_vqvae, require, weights_digest
from vqvae_prior.checks import SEEDS, finite_number, whole_number
from vqvae_prior.errors import UsageError
from vqvae_prior.hierarchy import as_levels
from vqvae_prior.modality import Modality, for_levels
from vqvae_prior.pixels import PixelCodec, PixelConfig
from vqvae_prior.registry import modality_of_spec
from vqvae_prior.vqvae import VQVAE

__all__ = ["MAX_SAMPLES", "CompletionOutput", "PipelineOutput", "VQPriorPipeline", "check_samples", "guided", "seeded"]

# the most code maps one call samples at once (n, or inputs x completions; twice as many under classifier-free
# guidance, which samples each map given its label and the null label); generate of 2048 maps of MNIST-size models
# (12 gated layers of 64 channels, 7 x 7 codes) peaks at 1.4 GB (docs/reliability.md); more is refused before any work
MAX_SAMPLES = 2048
DECODE_BATCH = 256  # code maps decoded at once: the decoder's activations are the largest tensors
SAMPLE_BATCH = 256  # code maps sampled at once: the sampler's state (every layer's, each level's) grows with it


@dataclass
class PipelineOutput:
    """What :class:`VQPriorPipeline` returns when called.

    Attributes:
        images: (N, C, H, W) in [0, 1]: the decoded images, or the decoded spectrograms of an audio model,
            (N, 1, n_frames, F) with time down the rows (``vqvae_prior.audio.picture`` draws them the usual way).
        codes: (N, h, w) the sampled code maps (of a two-level model, the bottom level's).
        labels: (N,) the class labels sampled with, or None.
        label_names: the data set's class names.
        waveforms: (N, T) float32 waveforms of an audio model (Griffin-Lim), else None.
        sample_rate: their sample rate, else None.
        top_codes: (N, h', w') the top level's code maps of a two-level model, else None.
    """

    images: Tensor
    codes: Tensor
    labels: Tensor | None
    label_names: list[str]
    waveforms: Tensor | None = None
    sample_rate: int | None = None
    top_codes: Tensor | None = None


@dataclass
class CompletionOutput:
    """What :meth:`VQPriorPipeline.complete` returns; N inputs, S completions of each, all on the CPU.

    Attributes:
        inputs: (N, C, H, W) the inputs in [0, 1] (spectrograms for audio).
        kept: (N, C, H, W) the inputs with every row below the kept code rows blanked (zero): what the completions
            keep, for drawing beside them.
        images: (N, S, C, H, W) in [0, 1], the decoded completions.
        codes: (N, S, h, w) their code maps: rows < keep are the inputs' own codes, the rest sampled (of a
            two-level model, the bottom level's).
        keep: the number of code rows kept (of a two-level model, of the bottom level: the top level keeps its rows
            that lie wholly within them, ``keep // 2``).
        labels: (N,) the class labels completed with, or None.
        label_names: the data set's class names.
        waveforms: (N, S, T) float32 waveforms of the completions of an audio model (Griffin-Lim), else None.
        sample_rate: their sample rate, else None.
        top_codes: (N, S, h', w') the top level's code maps of the completions of a two-level model, else None.
    """

    inputs: Tensor
    kept: Tensor
    images: Tensor
    codes: Tensor
    keep: int
    labels: Tensor | None
    label_names: list[str]
    waveforms: Tensor | None = None
    sample_rate: int | None = None
    top_codes: Tensor | None = None


def seeded(seed: int | None, device: str | torch.device) -> torch.Generator | None:
    """A ``torch.Generator`` on ``device`` seeded by ``seed`` (a whole number in 0 .. 2**64 - 1), for reproducible
    samples; None (torch's global generator) when seed is None."""
    if seed is None:
        return None
    return torch.Generator(device).manual_seed(whole_number(seed, "seed", *SEEDS))


def check_samples(count: int, what: str, guidance: float = 0.0) -> int:
    """``count`` (a whole number >= 1) when one call may sample that many code maps (:data:`MAX_SAMPLES`, half as
    many under ``guidance`` > 0, a checked number); else a :class:`UsageError` naming ``what`` asked for them,
    before any work."""
    under = " under guidance" if guided(guidance) else ""
    most = MAX_SAMPLES // 2 if under else MAX_SAMPLES
    if count > most:
        raise UsageError(f"{what} asks for {count} samples; one call makes at most {most}{under} (their sampler state "
                         "and images are held in memory at once): make several calls of fewer")
    return count


def guided(guidance: float | Sequence[float]) -> bool:
    """Whether a guidance weight, one number or one per level, asks for guidance at any level."""
    return any(w > 0 for w in (guidance if isinstance(guidance, (tuple, list)) else [guidance]))


def _guided(guidance: float) -> dict[str, float]:
    """The ``guidance`` keyword for a prior's ``sample``, only when it is used: a prior architecture without
    classifier-free guidance need not take the argument."""
    return {"guidance": guidance} if guidance != 0 else {}


class VQPriorPipeline:
    """A VQ-VAE and a prior over its code maps: sample, decode, and complete.

    Args:
        vqvae: the VQ-VAE (put in eval mode), or a :class:`vqvae_prior.pixels.PixelCodec` for a prior over pixels.
        prior: a prior over its codes, e.g. :class:`vqvae_prior.prior.GatedPixelCNN` (put in eval mode); it must
            model the VQ-VAE's K codes. Both on one device.
        code_shape: (h, w) of the code maps the prior was fitted on.
        label_names: the class names of a class-conditional prior's labels.
        data_spec: the spec of the VQ-VAE's data set (``checkpoint["data"]``), which gives the pipeline its
            :attr:`modality` (waveforms of recordings beside their spectrograms, ...). None: images.
    """

    def __init__(
        self,
        vqvae: VQVAE | PixelCodec,
        prior: nn.Module,
        code_shape: tuple[int, int],
        label_names: list[str] | tuple[str, ...] = (),
        data_spec: dict[str, Any] | None = None,
    ) -> None:
        self.check_codebook(vqvae, prior)
        self.vqvae, self.prior = vqvae.eval(), prior.eval()
        self.code_shape = (int(code_shape[0]), int(code_shape[1]))
        self.label_names = list(label_names)
        self.data_spec = dict(data_spec) if data_spec is not None else {}
        self.modality: Modality = modality_of_spec(self.data_spec)
        self.sample_shape = vqvae.decoded_shape(self.code_shape)  # (C, H, W)

    @classmethod
    def from_checkpoints(
        cls, vqvae_path: str | Path | None, prior_path: str | Path, device: str | torch.device | None = None
    ) -> VQPriorPipeline:
        """Load both checkpoints onto ``device`` (None: CUDA when available, else the CPU) and check, once, that
        the prior models the VQ-VAE's K codes and was fitted on exactly these VQ-VAE weights. A prior over pixels
        (``fit_prior --pixels``) takes no VQ-VAE: ``vqvae_path`` None."""
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        prior, prior_ckpt = load_prior(prior_path, device)
        if "pixels" in prior_ckpt:
            if vqvae_path is not None:
                raise UsageError(f"{prior_path} models the pixels of images, not the codes of a VQ-VAE: pass no "
                                 f"VQ-VAE (got {vqvae_path})")
            require(prior_ckpt, prior_path, "code_shape", "label_names", "data")
            codec = PixelCodec(PixelConfig(prior_ckpt["pixels"]["levels"], prior_ckpt["pixels"]["in_channels"]))
            return cls(codec, prior, tuple(prior_ckpt["code_shape"]), prior_ckpt["label_names"], prior_ckpt["data"])
        if vqvae_path is None:
            raise UsageError(f"{prior_path} models the codes of the VQ-VAE {prior_ckpt.get('vqvae')}: pass it")
        vqvae, vq_ckpt = load_vqvae(vqvae_path, device)
        require(vq_ckpt, vqvae_path, "data")
        require(prior_ckpt, prior_path, "code_shape", "label_names", "vqvae", "vqvae_digest")
        cls.check_codebook(vqvae, prior, str(prior_path), str(vqvae_path))
        if prior_ckpt["vqvae_digest"] != weights_digest(vqvae.state_dict()):
            raise CheckpointError(
                f"{prior_path} was fitted on the codes of other VQ-VAE weights than those in {vqvae_path} "
                f"(it names {prior_ckpt['vqvae']}); its samples would decode to noise"
            )
        fitted = vq_ckpt.get("sample_shape")  # (C, H, W) of the VQ-VAE's data; absent from early checkpoints
        if fitted is not None and tuple(vqvae.code_shape(fitted)) != tuple(prior_ckpt["code_shape"]):
            raise CheckpointError(
                f"{prior_path} models code maps {tuple(prior_ckpt['code_shape'])}, but {vqvae_path} makes "
                f"{tuple(vqvae.code_shape(fitted))} of the items {tuple(fitted)} it was fitted on: the prior was "
                "fitted on other data (fit_prior --data-root of items of another size?)"
            )
        return cls(vqvae, prior, tuple(prior_ckpt["code_shape"]), prior_ckpt["label_names"], vq_ckpt["data"])

    @classmethod
    def from_pretrained(
        cls, name: str, device: str | torch.device | None = None, root: str | Path | None = None
    ) -> VQPriorPipeline:
        """The pretrained model ``name`` (:func:`vqvae_prior.pretrained.available` lists them): both checkpoints
        verified against the manifest, then loaded as :meth:`from_checkpoints` loads them. ``root``: another folder
        of pretrained models (else ``$VQVAE_PRIOR_PRETRAINED``, else the package's)."""
        found = pretrained.paths(name, root)
        return cls.from_checkpoints(found.vqvae, found.prior, device)

    @staticmethod
    def check_codebook(vqvae: VQVAE | PixelCodec, prior: nn.Module, prior_name: str = "the prior",
                       vqvae_name: str = "the VQ-VAE") -> None:
        """Refuse a prior whose K differs from the VQ-VAE's codebook size, or that models other levels of codes."""
        levels, prior_levels = getattr(vqvae, "levels", 1), getattr(prior, "levels", 1)
        if levels != prior_levels:
            raise CheckpointError(f"{prior_name} models {prior_levels} level(s) of codes but {vqvae_name} makes "
                                  f"{levels}: fit the prior on this VQ-VAE's codes (pipelines.fit_prior)")
        if prior.config.codebook_size != vqvae.config.codebook_size:
            raise CheckpointError(
                f"{prior_name} models K={prior.config.codebook_size} codes but {vqvae_name} has a codebook "
                f"of K={vqvae.config.codebook_size}: fit the prior on this VQ-VAE's codes (pipelines.fit_prior)"
            )

    @property
    def device(self) -> torch.device:
        return self.prior.device

    def to(self, device: str | torch.device) -> VQPriorPipeline:
        """Move both models to ``device``; returns the pipeline."""
        self.vqvae.to(device)
        self.prior.to(device)
        return self

    @torch.no_grad()
    def __call__(
        self,
        n: int,
        labels: list[int] | list[str] | Tensor | None = None,
        temperature: float | Sequence[float] | None = None,
        generator: torch.Generator | None = None,
        method: str = "auto",
        guidance: float | Sequence[float] = 0.0,
    ) -> PipelineOutput:
        """Sample ``n`` code maps from the prior and decode them.

        Args:
            n: number of samples, a whole number in 1 .. :data:`MAX_SAMPLES`.
            labels: (n,) class labels, whole class indices or class names (:attr:`label_names`), required by a
                class-conditional prior and refused by an unconditional one; float labels are refused, not rounded.
            temperature: softmax temperature of the prior (> 0): one number, or one per level of a two-level
                prior (top, bottom); None: :attr:`default_temperature`.
            generator: a ``torch.Generator`` on :attr:`device`, for reproducible samples; None draws from torch's
                global generator.
            method: "auto" (default: on CUDA the fused sampler, else the cached sampler, where the prior has
                one), "fused", "cached" or "reference" (one full forward pass per position).
            guidance: classifier-free guidance weight (>= 0; > 0 needs a prior fitted with label dropout): one
                number, or one per level, as ``temperature``.

        Returns:
            a :class:`PipelineOutput`; ``.images`` is (n, C, H, W) in [0, 1].
        """
        n = check_samples(whole_number(n, "n", 1), f"n={n}", finite_number(guidance, "guidance", zero=True))
        label_tensor, temperature, guidance = self.check_request(labels, n, temperature, guidance)
        codes = self.sample_codes(n, label_tensor, temperature, generator, None, method, guidance)  # (n, h, w) each
        images = self.decode(codes)  # (n, C, H, W)
        labels_out = None if label_tensor is None else label_tensor.cpu()
        return PipelineOutput(images, codes[-1].cpu(), labels_out, self.label_names, *self.modality.outputs(images),
                              top_codes=codes[0].cpu() if len(codes) > 1 else None)

    def sample_codes(
        self, n: int, labels: Tensor | None, temperature: float, generator: torch.Generator | None,
        given: tuple[Tensor, ...] | None, method: str, guidance: float,
    ) -> tuple[Tensor, ...]:
        """The prior's ``n`` code maps of each level (n, h', w'), top first, sampled :data:`SAMPLE_BATCH` at a time
        (so that memory does not grow with n); ``given``: each level's codes to keep (-1: sample), as
        ``prior.sample`` takes them. Up to SAMPLE_BATCH maps this is one ``prior.sample`` call."""
        parts = []
        for start in range(0, n, SAMPLE_BATCH):
            batch = slice(start, min(start + SAMPLE_BATCH, n))
            kept = None
            if given is not None:
                kept = tuple(level[batch] for level in given)
                kept = kept[0] if len(kept) == 1 else kept  # a one-level prior takes its codes as one tensor
            parts.append(as_levels(self.prior.sample(
                batch.stop - start, self.code_shape, None if labels is None else labels[batch], temperature,
                generator, kept, method, **_guided(guidance),
            )))
        return tuple(torch.cat(level) for level in zip(*parts))

    @torch.no_grad()
    def complete(
        self,
        x: Tensor | np.ndarray,
        keep: int,
        labels: list[int] | list[str] | Tensor | None = None,
        completions: int = 1,
        temperature: float | Sequence[float] | None = None,
        generator: torch.Generator | None = None,
        method: str = "auto",
        guidance: float | Sequence[float] = 0.0,
    ) -> CompletionOutput:
        """Keep the top ``keep`` rows of the inputs' code maps and sample the rest from the prior.

        Args:
            x: (N, C, H, W) inputs in [0, 1] of the VQ-VAE's size (images, or spectrograms of an audio model), N
                >= 1, finite; float64 (NumPy's default) is converted to float32; an audio pipeline also takes
                waveforms (N, T) at its sample rate (padded or trimmed as in its data).
            keep: code rows kept, a whole number in 0 .. h (for audio, rows are time: the first ``keep *
                downsample`` frames).
            labels: (N,) class labels of the inputs (indices or names, as in ``__call__``), required by a
                class-conditional prior.
            completions: S, completions of each input (N * S at most :data:`MAX_SAMPLES`).
            temperature, generator, method, guidance: as in ``__call__``.

        Returns:
            a :class:`CompletionOutput`; ``.images`` is (N, S, C, H, W).
        """
        x = self.inputs(x)  # (N, C, H, W) on the device
        h = self.code_shape[0]
        keep = whole_number(keep, "keep (code rows)", 0, h)  # of h
        S = whole_number(completions, "completions", 1)
        check_samples(len(x) * S, f"{len(x)} inputs x completions={S}", finite_number(guidance, "guidance", zero=True))
        label_tensor, temperature, guidance = self.check_request(labels, len(x), temperature, guidance)
        given = []
        for codes in self.vqvae.encode_levels(x):  # (N, h', w') of each level, top first
            level_given = repeat(codes, "n h w -> (n s) h w", s=S).clone()
            level_given[:, keep * codes.shape[1] // h :] = -1  # sampled: the rows not wholly within the kept ones
            given.append(level_given)
        labels_s = None if label_tensor is None else label_tensor.repeat_interleave(S)  # (N*S,)
        sampled = self.sample_codes(len(given[0]), labels_s, temperature, generator, tuple(given), method,
                                    guidance)  # (N*S, h', w') of each level
        images = self.decode(sampled)  # (N*S, C, H, W)
        kept = x.clone()
        kept[:, :, keep * self.vqvae.config.downsample :] = 0  # (N, C, H, W)
        waveforms, sample_rate = self.modality.outputs(images)
        return CompletionOutput(
            inputs=x.cpu(),
            kept=kept.cpu(),
            images=rearrange(images, "(n s) c h w -> n s c h w", s=S),
            codes=rearrange(sampled[-1].cpu(), "(n s) h w -> n s h w", s=S),
            keep=keep,
            labels=None if label_tensor is None else label_tensor.cpu(),
            label_names=self.label_names,
            waveforms=None if waveforms is None else rearrange(waveforms, "(n s) t -> n s t", s=S),
            sample_rate=sample_rate,
            top_codes=rearrange(sampled[0].cpu(), "(n s) h w -> n s h w", s=S) if len(sampled) > 1 else None,
        )

    @property
    def default_temperature(self) -> float | tuple[float, ...]:
        """The temperature samples are drawn at when none is given: the modality's for the prior's levels
        (:attr:`vqvae_prior.modality.Modality.sampling_defaults`; two-level audio priors (0.6, 0.6), else 1)."""
        return for_levels(self.modality.sampling_defaults["temperature"], getattr(self.prior, "levels", 1))

    def temperature_or_default(self, value: float | Sequence[float] | None, name: str = "temperature") -> Any:
        """A temperature as the prior takes it (:meth:`per_level`), :attr:`default_temperature` for None; refuses,
        naming ``name``, one that is not a finite number > 0 or one per level."""
        value = self.default_temperature if value is None else value
        return self.per_level(finite_number(value, name), name)

    def check_request(self, labels: Any, n: int, temperature: Any, guidance: Any) -> tuple[Tensor | None, Any, Any]:
        """The labels (n,) on the device, from class indices or class names (:attr:`label_names`), and the
        temperature (None: :attr:`default_temperature`) and guidance as the prior takes them (:meth:`per_level`);
        refuses, naming the argument, labels that are not one whole class index or name per sample and a
        temperature or guidance that is not a finite number (> 0, >= 0) or one per level."""
        temperature = self.temperature_or_default(temperature)
        guidance = self.per_level(finite_number(guidance, "guidance", zero=True), "guidance")
        if isinstance(labels, (list, tuple)) and any(isinstance(y, str) for y in labels):
            unknown = [y for y in labels if y not in self.label_names]
            if unknown:
                raise UsageError(f"labels: {unknown[:3]} are not class names of this prior ({self.label_names})")
            labels = [self.label_names.index(y) for y in labels]
        return self.prior.check_labels(labels, n), temperature, guidance

    def per_level(self, value: float | Sequence[float], name: str) -> float | tuple[float, ...]:
        """A sampling setting as the prior takes it: one number for every level, or one per level of the prior
        (top first; one number stays one); a sequence of another length is refused, naming ``name``."""
        if not isinstance(value, (tuple, list)):
            return value
        levels = getattr(self.prior, "levels", 1)
        if len(value) != levels:
            raise UsageError(f"{name}: {len(value)} values {list(value)} for a prior of {levels} "
                             f"level{'s' if levels > 1 else ''}; give one number, or one per level (top first)")
        return value[0] if levels == 1 else tuple(value)

    def inputs(self, x: Tensor | np.ndarray) -> Tensor:
        """Checked model inputs (N, C, H, W) on the device, from what the modality takes (images, spectrograms, or
        waveforms (N, T) of recordings)."""
        return self.modality.inputs(x, self.sample_shape).to(self.device)

    @torch.no_grad()
    def decode(self, codes: Tensor | tuple[Tensor, ...]) -> Tensor:
        """Images (or spectrograms) (N, C, H, W) in [0, 1], on the CPU, of code maps (N, h, w), or of code maps of
        each level (a tuple, top first); decoded :data:`DECODE_BATCH` at a time."""
        levels = as_levels(codes)
        parts = zip(*(level.split(DECODE_BATCH) for level in levels))  # each level's maps of one batch, top first
        return torch.cat([self.vqvae.decode_levels(part).clamp(0, 1).cpu() for part in parts])  # (N, C, H, W)
