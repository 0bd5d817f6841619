"""Files in the formats that the code under test reads or writes: IDX arrays written for the loaders, PNG grids of
images read back from the entry points."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch
from einops import rearrange
from PIL import Image
from torch import Tensor


def write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file of unsigned bytes (MNIST's format), gzipped if ``path`` ends in .gz."""
    header = bytes([0, 0, 8, array.ndim]) + np.asarray(array.shape, dtype=">i4").tobytes()
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


def png_pixels(images: Tensor) -> Tensor:
    """Images (N, C, H, W) in [0, 1] as a PNG grid holds them: (N, 3, H, W) uint8, a gray image in all three."""
    pixels = images.detach().cpu().float().mul(255).add(0.5).clamp(0, 255).to(torch.uint8)
    return pixels.expand(-1, 3, -1, -1) if pixels.shape[1] == 1 else pixels


def grid_tiles(path: Path, n: int, nrow: int, tile: tuple[int, int], padding: int = 2) -> Tensor:
    """The ``n`` tiles (n, 3, H, W) uint8 of the PNG grid at ``path``, read where a grid of ``n`` images of ``tile``
    = (H, W) pixels, ``nrow`` to a row, ``padding`` pixels around each, puts them (one image alone: no padding);
    asserts that the PNG is exactly the size of that grid and that the rest of its last row is blank."""
    pixels = torch.from_numpy(np.array(Image.open(path).convert("RGB")))  # (height, width, 3)
    h, w = tile
    if n == 1:
        assert tuple(pixels.shape) == (h, w, 3), f"{path}: {tuple(pixels.shape[:2])} pixels, expected ({h}, {w})"
        return rearrange(pixels, "h w c -> 1 c h w")
    cols = min(nrow, n)
    rows = -(-n // cols)
    size = (rows * (h + padding) + padding, cols * (w + padding) + padding)
    assert tuple(pixels.shape) == (*size, 3), f"{path}: {tuple(pixels.shape[:2])} pixels, expected {size}"
    tiles = []
    for i in range(rows * cols):
        top, left = padding + (i // cols) * (h + padding), padding + (i % cols) * (w + padding)
        tiles.append(pixels[top : top + h, left : left + w])
    assert not any(t.any() for t in tiles[n:]), f"{path}: more than {n} images"
    return rearrange(torch.stack(tiles[:n]), "n h w c -> n c h w")
