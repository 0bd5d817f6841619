"""Draw the receptive field of a prior at one position: which input positions change its logits there.

    python -m pipelines.receptive_field --arch plain --out runs/rf-plain.png
    python -m pipelines.receptive_field --arch gated --out runs/rf-gated.png
    python -m pipelines.receptive_field --prior runs/mnist-prior/prior.pt --position 6 3 --out runs/rf.png

The field is read from the gradient: the logits at the position, projected on random directions, are
differentiated with respect to the embedded input of every position, over a few random inputs; a position is in
the field where any of those gradients is not exactly zero. Without ``--prior`` the network is a freshly
initialized one of ``--arch`` with ``--layers`` layers (the field is a property of the architecture, not of the
weights). The picture: the position in red, the positions it sees in dark blue, the positions before it in raster
order that it does not see (the plain PixelCNN's blind spot) in orange, the positions after it in light gray.
"""

from __future__ import annotations

import argparse

import torch
from einops import rearrange, repeat
from torch import Tensor

from pipelines import cli
from vqvae_prior.checkpoint import load_prior
from vqvae_prior.errors import UsageError
from vqvae_prior.modality import save_grid
from vqvae_prior.prior import AutoregressivePrior
from vqvae_prior.registry import ARCHITECTURES, prior_architecture

__all__ = ["before", "receptive_field", "picture"]

COLOURS = {  # RGB in [0, 1]
    "position": (0.85, 0.10, 0.10),
    "seen": (0.10, 0.20, 0.55),
    "blind": (1.00, 0.60, 0.10),
    "after": (0.90, 0.90, 0.90),
}


def receptive_field(
    model: AutoregressivePrior, shape: tuple[int, int], position: tuple[int, int], tries: int = 4, seed: int = 0
) -> Tensor:
    """(h, w) bool: the input positions of a code map of ``shape`` whose embedding changes the logits at
    ``position``, read from the gradient at ``tries`` random embedded inputs (eval mode; the mode is restored).

    A prior of G > 1 image channels (RGB pixels) has code maps (h, w) = (rows, pixels * G), each pixel's channels
    side by side: the field is over those positions, so it shows which channels of which pixels are seen."""
    (h, w), (r, c) = shape, position
    G = model.image_channels
    if not (0 <= r < h and 0 <= c < w):
        raise UsageError(f"position {position} is outside the {h} x {w} code map")
    if w % G:
        raise UsageError(f"a prior of {G} image channels has code maps of a width divisible by {G}, got {w}")
    generator = torch.Generator(model.device).manual_seed(seed)
    x = torch.randn(tries, model.config.channels, h, w // G, generator=generator, device=model.device,
                    requires_grad=True)  # (tries, C, h, pixels)
    labels = model.check_labels([0] * tries, tries) if model.config.num_classes else None
    was_training = model.training
    model.eval()
    try:
        logits = model.code_map_logits(x, labels)[:, :, r, c]  # (tries, K)
        direction = torch.randn(logits.shape, generator=generator, device=model.device)  # no cancelling sum
        (grad,) = torch.autograd.grad((logits * direction).sum(), x)  # (tries, C, h, pixels)
    finally:
        model.train(was_training)
    grad = rearrange(grad, "t (g d) h w -> t d h (w g)", g=G)  # image channel g's features: group g
    return grad.ne(0).any(dim=1).any(dim=0).cpu()  # (h, w)


def before(shape: tuple[int, int], position: tuple[int, int]) -> Tensor:
    """(h, w) bool: the positions before ``position`` in raster order (what an autoregressive prior may see)."""
    h, w = shape
    order = torch.arange(h * w).reshape(h, w)
    return order < position[0] * w + position[1]


def picture(field: Tensor, position: tuple[int, int], cell: int = 16) -> Tensor:
    """An RGB image (3, h * cell, w * cell) of a receptive field (h, w): the colours of :data:`COLOURS`, one square
    of ``cell`` pixels per position with a one-pixel white border."""
    earlier = before(tuple(field.shape), position)
    kinds = torch.full(field.shape, 3)  # (h, w) index into the palette: after
    kinds[earlier & ~field] = 2  # blind
    kinds[field] = 1  # seen
    kinds[position] = 0
    palette = torch.tensor([COLOURS[k] for k in ("position", "seen", "blind", "after")])  # (4, 3)
    image = repeat(palette[kinds], "h w rgb -> rgb (h s) (w t)", s=cell, t=cell).clone()  # (3, h*cell, w*cell)
    image[:, ::cell], image[:, :, ::cell] = 1.0, 1.0  # cell borders
    return image


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=cli.HelpFormatter)
    parser.add_argument("--arch", choices=tuple(ARCHITECTURES), help="a freshly initialized prior of this kind")
    parser.add_argument("--prior", help="a prior checkpoint (fit_prior) instead of --arch")
    parser.add_argument("--layers", type=int, default=6, help="--arch: layers of the network")
    parser.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), help="code map size (default: the prior's "
                                                                              "code maps, or 16 x 16)")
    parser.add_argument("--position", type=int, nargs=2, metavar=("R", "C"),
                        help="row and column of the logits (default: the middle)")
    parser.add_argument("--out", default="receptive_field.png", help="the PNG picture")
    return parser


def main(args: argparse.Namespace) -> Tensor:
    """Write the picture; returns the field (h, w)."""
    if (args.arch is None) == (args.prior is None):
        raise UsageError("pass --arch (a freshly initialized prior) or --prior (a checkpoint), one of them")
    out = cli.check_image_path(args.out, "--out")
    cli.at_least(args, 1, "layers")
    if args.prior is not None:
        model, payload = load_prior(args.prior, "cpu")
        shape = tuple(args.size or payload.get("code_shape") or (16, 16))
    else:
        config = prior_architecture(ARCHITECTURES[args.arch]).config(codebook_size=16, num_layers=args.layers)
        model = prior_architecture(ARCHITECTURES[args.arch]).model(config)
        shape = tuple(args.size or (16, 16))
    if min(shape) < 1:
        raise UsageError(f"--size must be two numbers >= 1, got {' '.join(map(str, shape))}")
    position = tuple(args.position) if args.position else (shape[0] // 2, shape[1] // 2)
    field = receptive_field(model, shape, position)
    save_grid(picture(field, position)[None], out, nrow=1)
    blind = int((before(shape, position) & ~field).sum())
    print(f"wrote {out}: {int(field.sum())} positions seen, {blind} before {position} not seen (blind spot)")
    return field

console = cli.command(main, get_args_parser)  # the console command (pyproject.toml's [project.scripts])


if __name__ == "__main__":
    console()
