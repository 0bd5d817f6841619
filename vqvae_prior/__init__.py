"""vqvae_prior: a VQ-VAE, a gated PixelCNN prior over its code maps, and the pipeline that samples from both.

    from vqvae_prior import VQPriorPipeline

    pipe = VQPriorPipeline.from_checkpoints("runs/mnist/vqvae.pt", "runs/mnist-prior/prior.pt")
    out = pipe(8, labels=[3] * 8)            # out.images (8, 1, 28, 28) in [0, 1], out.codes (8, 7, 7)

Models shipped in the package are listed by ``pretrained.available()`` and loaded, verified against their
manifest, by ``VQPriorPipeline.from_pretrained(NAME)`` (:mod:`vqvae_prior.pretrained`).

The models (:class:`VQVAE`, the two-level :class:`VQVAE2`, :class:`GatedPixelCNN`, the plain masked
:class:`PlainPixelCNN` to compare it with, and the :class:`HierarchicalPrior` over a two-level VQ-VAE's codes: a gated
PixelCNN over the top maps and one over the bottom maps given them) are built from frozen dataclass configs, which checkpoints hold
(:func:`load_vqvae`, :func:`load_prior`, :func:`save_checkpoint`). VQ-VAE and prior architectures and quantizers are
looked up by name in :data:`AUTOENCODERS`, :data:`PRIORS` and :data:`QUANTIZERS` (``vqvae_prior.registry``).
Data sets are not part of the library: ``from data import load_dataset``; the fits and command-line entry points are in ``pipelines``.
"""

from vqvae_prior import pretrained
from vqvae_prior.checkpoint import CheckpointError, load_checkpoint, load_prior, load_vqvae, save_checkpoint
from vqvae_prior.hierarchy import HierarchicalPrior, HierarchicalPriorConfig
from vqvae_prior.pipeline import CompletionOutput, PipelineOutput, VQPriorPipeline
from vqvae_prior.plain_prior import PlainPixelCNN, PlainPriorConfig
from vqvae_prior.prior import AutoregressivePrior, GatedPixelCNN, PriorConfig
from vqvae_prior.quantizer import CodeUsage, QuantizerOutput, VectorQuantizer
from vqvae_prior.registry import AUTOENCODERS, PRIORS, QUANTIZERS, AutoencoderArchitecture, PriorArchitecture
from vqvae_prior.vqvae import VQVAE, VQVAEConfig, VQVAEOutput
from vqvae_prior.vqvae2 import VQVAE2, VQVAE2Config

__all__ = [
    "AUTOENCODERS", "PRIORS", "QUANTIZERS", "VQVAE", "VQVAE2", "AutoencoderArchitecture", "AutoregressivePrior",
    "CheckpointError", "CodeUsage", "CompletionOutput", "GatedPixelCNN", "HierarchicalPrior",
    "HierarchicalPriorConfig", "PipelineOutput", "PlainPixelCNN",
    "PlainPriorConfig", "PriorArchitecture", "PriorConfig", "QuantizerOutput", "VQPriorPipeline", "VQVAE2Config",
    "VQVAEConfig", "VQVAEOutput", "VectorQuantizer", "load_checkpoint", "load_prior", "load_vqvae", "pretrained",
    "save_checkpoint",
]
