"""The VQ-VAEs' quantizers by name: ``VQVAEConfig.quantizer`` names one of :data:`QUANTIZERS`, and the VQ-VAE builds
it with ``cls.from_config(config)`` (a two-level VQ-VAE one per level).

``vqvae_prior.registry`` lists this table with the others; it lives here, apart, because the VQ-VAEs look their
quantizers up in it and the registry lists the VQ-VAEs. A new quantizer is one module plus one entry here (what it
needs: ``vqvae_prior.registry``); code outside the package may add entries before loading its checkpoints.
"""

from __future__ import annotations

from torch import nn

from vqvae_prior.quantizer import VectorQuantizer

__all__ = ["QUANTIZERS", "quantizer_class"]

QUANTIZERS: dict[str, type[nn.Module]] = {
    "vq": VectorQuantizer,
}


def quantizer_class(name: str) -> type[nn.Module]:
    """The registered quantizer ``name``; a clear error naming the known ones otherwise."""
    if name not in QUANTIZERS:
        raise ValueError(f"unknown quantizer {name!r}; registered: {', '.join(sorted(QUANTIZERS))} "
                         "(add one to vqvae_prior.registry.QUANTIZERS)")
    return QUANTIZERS[name]
