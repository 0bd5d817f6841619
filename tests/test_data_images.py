"""Tests of the image loaders in data/images.py: split sizes, shapes, spec round trips and error messages; the
channels every image data set takes, through fit_vqvae --channels-in and the prior fit that rebuilds its data."""

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torchvision.transforms import functional as TF

from data import DataError, load_dataset
from data.images import (
    IDX_FILES, ImageTensorDataset, load_cifar10, load_image_folder, load_mnist, load_mnist_sample, read_idx,
    with_channels,
)
from files import write_idx
from fits import VQVAE_16_CODES, run_prior, run_vqvae
from vqvae_prior.checkpoint import load_checkpoint
from vqvae_prior.errors import UsageError
from vqvae_prior.training import VQVAEFit
from vqvae_prior.training.batching import load_splits

# ---------------------------------------------------------------------------------------------- mnist-sample


@pytest.fixture(scope="module")
def mnist_sample():
    return load_mnist_sample()


def test_mnist_sample_split_is_stratified(mnist_sample):
    train, test = mnist_sample.train, mnist_sample.test
    assert (len(train), len(test)) == (4500, 500)
    assert torch.bincount(train.labels).tolist() == [450] * 10
    assert torch.bincount(test.labels).tolist() == [50] * 10
    assert mnist_sample.label_names == tuple("0123456789")


def test_mnist_sample_items(mnist_sample):
    assert mnist_sample.train.images.dtype == torch.uint8
    assert mnist_sample.train.images.shape == (4500, 1, 28, 28)
    x, label = mnist_sample.test[0]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32 and isinstance(label, int)
    assert 0 <= x.min() and x.max() <= 1 and x.max() > 0.9
    assert mnist_sample.sample_shape == (1, 28, 28)


def test_mnist_sample_spec_round_trip(mnist_sample):
    assert mnist_sample.spec == {"name": "mnist-sample", "root": None}
    again = load_dataset(**mnist_sample.spec)
    assert torch.equal(again.train.images, mnist_sample.train.images)
    assert torch.equal(again.test.labels, mnist_sample.test.labels)


def test_mnist_sample_missing_file(tmp_path):
    with pytest.raises(DataError, match="mnist_5k.csv.gz"):
        load_mnist_sample(root=tmp_path)


# ---------------------------------------------------------------------------------------------- IDX / MNIST


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx(tmp_path, suffix):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / f"images{suffix}", array)
    np.testing.assert_array_equal(read_idx(tmp_path / f"images{suffix}"), array)


def test_read_idx_corrupt_file_is_named(tmp_path):
    bad = tmp_path / "train-images-idx3-ubyte"
    bad.write_bytes(b"\x00\x00\x0d\x03garbage")
    with pytest.raises(DataError, match="train-images-idx3-ubyte.*magic"):
        read_idx(bad)
    truncated = tmp_path / "short"
    write_idx(truncated, np.zeros((2, 3), dtype=np.uint8))
    truncated.write_bytes(truncated.read_bytes()[:-1])
    with pytest.raises(DataError, match="short.*need 6 bytes, found 5"):
        read_idx(truncated)


def test_load_mnist_from_tiny_torchvision_layout(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    write_idx(raw / "train-images-idx3-ubyte.gz", np.full((5, 28, 28), 255))
    write_idx(raw / "train-labels-idx1-ubyte", np.arange(5))
    write_idx(raw / "t10k-images-idx3-ubyte", np.zeros((2, 28, 28)))
    write_idx(raw / "t10k-labels-idx1-ubyte.gz", np.arange(2))
    splits = load_dataset("mnist", root=tmp_path)
    assert (len(splits.train), len(splits.test)) == (5, 2)
    assert splits.train[0][0].shape == (1, 28, 28) and splits.train[0][0].min() == 1
    assert splits.spec == {"name": "mnist", "root": str(tmp_path), "modality": "image"}


def test_load_mnist_missing_files(tmp_path):
    with pytest.raises(DataError, match="four IDX files"):
        load_mnist(root=tmp_path)


@pytest.mark.realdata
def test_real_mnist(shared_data):
    root = shared_data("mnist")
    splits = load_mnist(root=root)
    assert (len(splits.train), len(splits.test)) == (60000, 10000)
    assert splits.train.images.shape[1:] == (1, 28, 28)
    assert splits.train.labels.unique().tolist() == list(range(10))


FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")  # where `apt-get install dataset-fashion-mnist` puts it


@pytest.mark.realdata
def test_real_fashion_mnist():
    if not (FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"Fashion-MNIST not found at {FASHION_MNIST} (apt-get install dataset-fashion-mnist)")
    splits = load_dataset("fashion-mnist", FASHION_MNIST)
    assert (len(splits.train), len(splits.test)) == (60000, 10000)
    assert splits.train.images.shape[1:] == (1, 28, 28)
    assert splits.label_names[0] == "T-shirt/top" and len(splits.label_names) == 10
    assert torch.bincount(splits.test.labels).tolist() == [1000] * 10  # the published split, balanced


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "cifar10"])
def test_offline_download_error(monkeypatch, name):
    def offline(*args, **kwargs):
        raise RuntimeError("network unreachable")

    for cls in ("MNIST", "FashionMNIST", "CIFAR10"):
        monkeypatch.setattr(torchvision.datasets, cls, offline)
    with pytest.raises(DataError, match=r"download .* failed .*network unreachable.*--data-root DIR"):
        load_dataset(name)


# ---------------------------------------------------------------------------------------------- CIFAR-10


def test_cifar10_npz_tiny(tmp_path):
    rng = np.random.default_rng(0)
    x_train = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    np.savez(tmp_path / "tiny.npz", x_train=x_train, y_train=np.arange(6), x_test=x_train[:2], y_test=[[1], [2]])
    splits = load_cifar10(root=tmp_path)  # a folder holding exactly one .npz
    assert splits.train.images.shape == (6, 3, 32, 32)
    assert torch.equal(splits.train.images[1, 2], torch.from_numpy(x_train[1, :, :, 2]))  # NHWC -> NCHW
    assert splits.test.labels.tolist() == [1, 2]
    assert splits.label_names[0] == "airplane" and len(splits.label_names) == 10


def test_cifar10_npz_missing_array(tmp_path):
    np.savez(tmp_path / "bad.npz", x_train=np.zeros((1, 32, 32, 3), np.uint8))
    with pytest.raises(DataError, match="bad.npz lacks arrays y_train, x_test, y_test"):
        load_cifar10(root=tmp_path / "bad.npz")


def test_cifar10_corrupt_batches_folder(tmp_path):
    (tmp_path / "cifar-10-batches-py").mkdir()
    (tmp_path / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"junk")
    with pytest.raises(DataError, match="cifar-10-batches-py"):
        load_cifar10(root=tmp_path)


@pytest.mark.realdata
def test_real_cifar10_subset(shared_data):
    path = shared_data("cifar10", "cifar10_subset.npz")
    splits = load_cifar10(root=path)
    assert (len(splits.train), len(splits.test)) == (4000, 1000)
    assert splits.sample_shape == (3, 32, 32)
    again = load_dataset(**splits.spec)
    assert torch.equal(again.test.images, splits.test.images)


# ---------------------------------------------------------------------------------------------- image folder


def _png(path: Path, mode: str, size: tuple[int, int] = (6, 4), value: int = 128) -> None:
    """Write a PNG of ``size`` = (W, H) in PIL ``mode``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value if mode == "L" else (value, 0, 255 - value)).save(path)


def test_image_folder_classes_and_split(tmp_path):
    for i in range(10):
        _png(tmp_path / "cats" / f"{i}.png", "RGB")
    for i in range(3):
        _png(tmp_path / "dogs" / "nested" / f"{i}.PNG", "RGB")
    (tmp_path / "dogs" / "notes.txt").write_text("not an image")
    splits = load_image_folder(tmp_path, test_fraction=0.2, seed=1)
    assert splits.label_names == ("cats", "dogs")
    assert splits.train.images.shape == (10, 3, 4, 6)
    assert torch.bincount(splits.test.labels).tolist() == [2, 1]
    assert torch.bincount(splits.train.labels).tolist() == [8, 2]
    again = load_dataset(**splits.spec)
    assert torch.equal(again.test.images, splits.test.images)
    assert torch.equal(again.train.labels, splits.train.labels)
    other_seed = load_image_folder(tmp_path, test_fraction=0.2, seed=2)
    assert torch.bincount(other_seed.test.labels).tolist() == [2, 1]


def test_image_folder_channels_and_resize(tmp_path):
    _png(tmp_path / "a.png", "L", value=255)
    _png(tmp_path / "b.png", "RGB")
    gray = load_image_folder(tmp_path)  # channels inferred from the first image (a.png, grayscale)
    assert gray.label_names == (tmp_path.name,)
    assert gray.spec["channels"] == 1 and gray.sample_shape == (1, 4, 6)
    rgb = load_image_folder(tmp_path, channels=3, image_size=8)
    assert rgb.sample_shape == (3, 8, 8)
    assert load_image_folder(tmp_path, image_size=(5, 7)).sample_shape == (1, 5, 7)
    x, _ = ImageTensorDataset(gray.train.images, gray.train.labels)[0]
    assert 0 <= x.min() and x.max() <= 1


def test_image_folder_size_mismatch_names_file(tmp_path):
    _png(tmp_path / "a.png", "RGB", size=(6, 4))
    _png(tmp_path / "b.jpg", "RGB", size=(5, 5))
    with pytest.raises(DataError, match=r"b\.jpg is 5x5 but .*a\.png is 4x6.*--image-size"):
        load_image_folder(tmp_path)


def test_image_folder_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_image_folder(tmp_path / "missing")
    with pytest.raises(DataError, match="image_size must be"):
        load_image_folder(tmp_path, image_size=(32, 0))
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(DataError, match="holds no images"):
        load_image_folder(tmp_path)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="cannot decode image .*broken.png"):
        load_image_folder(tmp_path)


# ---------------------------------------------------------------------------------------------- channels


def test_with_channels_takes_torchvision_luma_or_repeats_gray():
    rgb = torch.randint(0, 256, (4, 3, 5, 6), dtype=torch.uint8)
    assert torch.equal(with_channels(rgb, 1), TF.rgb_to_grayscale(rgb))
    expected = (0.2989 * rgb[:, 0].double() + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2]).floor()  # ITU-R 601-2
    assert (with_channels(rgb, 1)[:, 0].double() - expected).abs().max() <= 1
    gray = rgb[:, :1]
    assert torch.equal(with_channels(gray, 3), gray.expand(-1, 3, -1, -1))
    assert with_channels(rgb, None) is rgb and with_channels(rgb, 3) is rgb and with_channels(gray, 1) is gray
    with pytest.raises(DataError, match="channels must be 1, 3 or None"):
        with_channels(rgb, 2)


def _tiny_cifar10(root: Path) -> Path:
    """An .npz of 24 train / 8 held-out random 32 x 32 RGB images, as ../shared/data/cifar10 holds CIFAR-10's."""
    root.mkdir(parents=True, exist_ok=True)
    x = np.random.default_rng(0).integers(0, 256, (32, 32, 32, 3), dtype=np.uint8)
    np.savez(root / "tiny.npz", x_train=x[:24], y_train=np.arange(24) % 3, x_test=x[24:], y_test=np.arange(8) % 3)
    return root / "tiny.npz"


def _tiny_mnist(root: Path) -> Path:
    """A folder of the four IDX files of 24 train / 8 held-out digits of the MNIST sample."""
    root.mkdir(parents=True, exist_ok=True)
    digits = load_mnist_sample().train
    for (x_name, y_name), part in zip((IDX_FILES[:2], IDX_FILES[2:]), (slice(0, 24), slice(24, 32))):
        write_idx(root / x_name, digits.images[part, 0].numpy())
        write_idx(root / y_name, digits.labels[part].numpy())
    return root


def _rgb_folder(root: Path) -> Path:
    """A folder of two classes of four random 8 x 8 RGB PNGs each."""
    rng = np.random.default_rng(0)
    for i in range(8):
        (root / f"class{i % 2}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(root / f"class{i % 2}" / f"{i}.png")
    return root


def test_cifar10_and_mnist_take_channels_and_their_specs_record_them(tmp_path):
    npz = _tiny_cifar10(tmp_path)
    rgb, gray = load_cifar10(npz), load_cifar10(npz, channels=1)
    assert gray.sample_shape == (1, 32, 32) and torch.equal(gray.test.images, TF.rgb_to_grayscale(rgb.test.images))
    assert gray.spec["channels"] == 1 and "channels" not in rgb.spec  # specs of data as stored are unchanged
    assert torch.equal(load_dataset(**load_dataset("cifar10", npz, channels=1).spec).train.images, gray.train.images)
    assert torch.equal(load_cifar10(npz, channels=3).train.images, rgb.train.images)
    digits = load_dataset("mnist", _tiny_mnist(tmp_path / "mnist"), channels=3)
    assert digits.sample_shape == (3, 28, 28) and digits.spec["channels"] == 3
    assert torch.equal(digits.train.images, load_mnist(tmp_path / "mnist").train.images.expand(-1, 3, -1, -1))


def test_channels_in_applies_to_every_image_data_set_and_image_size_to_folders_only():
    def options(**given):
        return VQVAEFit.of(**given).resolved().dataset_options()

    for name in ("mnist-sample", "mnist", "fashion-mnist", "cifar10", "image-folder"):
        assert options(dataset=name, channels_in=1) == {"channels": 1}
    assert options(dataset="image-folder", image_size=(8,)) == {"image_size": 8}
    with pytest.raises(UsageError, match="^--image-size does not apply to --dataset cifar10$"):
        options(dataset="cifar10", image_size=(16,))
    with pytest.raises(UsageError, match="^--channels-in does not apply to --dataset audio-folder$"):
        options(dataset="audio-folder", channels_in=1)


@pytest.mark.parametrize("dataset,make,channels_in,expected", [
    ("cifar10", _tiny_cifar10, "1", lambda x: TF.rgb_to_grayscale(x)),  # RGB -> gray
    ("cifar10", _tiny_cifar10, "3", lambda x: x),  # as stored
    ("image-folder", _rgb_folder, "1", None),  # RGB PNGs -> gray (PIL's convert("L"))
    ("mnist", _tiny_mnist, "3", lambda x: x.expand(-1, 3, -1, -1)),  # gray -> RGB
])
def test_fit_vqvae_channels_in_and_the_prior_fit_rebuilds_the_same_data(tmp_path, dataset, make, channels_in,
                                                                         expected):
    root = make(tmp_path / "data")
    run_vqvae(tmp_path / "vq", "--dataset", dataset, "--data-root", str(root), "--channels-in", channels_in,
              "--batch-size", "8", *VQVAE_16_CODES)
    ckpt = load_checkpoint(tmp_path / "vq" / "vqvae.pt")
    assert ckpt["data"]["channels"] == int(channels_in) and ckpt["sample_shape"][0] == int(channels_in)
    rebuilt = load_splits(ckpt["data"])  # what the prior fit encodes
    assert rebuilt.sample_shape == tuple(ckpt["sample_shape"])
    if expected is not None:
        assert torch.equal(rebuilt.train.images, expected(load_dataset(dataset, root).train.images))
    metrics = run_prior(tmp_path / "vq" / "vqvae.pt", tmp_path / "prior", "--samples-per-class", "0")
    assert np.isfinite(metrics["test_bits_per_code"])


@pytest.mark.realdata
def test_real_cifar10_fit_vqvae_channels_in(shared_data, tmp_path):
    """python -m pipelines.fit_vqvae --dataset cifar10 --data-root ../shared/data/cifar10 --channels-in 1 (and 3)."""
    root = shared_data("cifar10")
    run_vqvae(tmp_path, "--dataset", "cifar10", "--data-root", str(root), "--channels-in", "1", "--batch-size", "128",
              *VQVAE_16_CODES)
    ckpt = load_checkpoint(tmp_path / "vqvae.pt")
    assert ckpt["sample_shape"] == [1, 32, 32] and ckpt["data"] == {"name": "cifar10", "root": str(root),
                                                                    "channels": 1, "modality": "image"}
    rgb = load_dataset("cifar10", root, channels=3)
    assert rgb.sample_shape == (3, 32, 32) and rgb.spec["channels"] == 3
    assert torch.equal(load_splits(ckpt["data"]).test.images, TF.rgb_to_grayscale(rgb.test.images))
