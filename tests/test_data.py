"""Dataset loaders: tiny files in the real formats round-trip exactly; bad input fails clearly."""

from __future__ import annotations

import collections
import gzip
import hashlib
import inspect
import pickle
import re
from pathlib import Path

import hydra.utils
import numpy as np
import pytest
import torch
from hydra.errors import InstantiationException
from omegaconf import OmegaConf

from losslandscape.data import cifar as cifar_module
from losslandscape.data import (
    DataSplits,
    DatasetError,
    load_cifar,
    load_digits,
    load_mnist,
    make_gaussian_mixture,
    make_moons,
)
from losslandscape.data.splits import standardize_with_train_stats, subset_train

CONF_DIR = Path(__file__).resolve().parents[1] / "conf" / "dataset"
MNIST_NAMES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


# ---------------------------------------------------------------- helpers: files in the real formats


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    """An IDX file: big-endian magic (0x08 = uint8, then ndim), big-endian dims, raw uint8 data."""
    magic = 0x0800 | array.ndim if magic is None else magic
    header = magic.to_bytes(4, "big") + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_file(path: Path, content: bytes) -> None:
    path.write_bytes(gzip.compress(content) if path.suffix == ".gz" else content)


def raw_mnist(seed: int = 0, n_train: int = 5, n_test: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.array([7, 0, 9, 3, 3][:n_train], dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": np.array([1, 8, 5][:n_test], dtype=np.uint8),
    }
    arrays["train-images-idx3-ubyte"][2, 5, 7] = 200  # a known pixel to find again
    arrays["t10k-images-idx3-ubyte"][1, 27, 0] = 13
    return arrays


def write_mnist(folder: Path, gzipped: tuple[bool, bool, bool, bool] = (False,) * 4, seed: int = 0) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    arrays = raw_mnist(seed)
    for (name, array), use_gz in zip(arrays.items(), gzipped):
        write_file(folder / (name + (".gz" if use_gz else "")), idx_bytes(array))
    return arrays


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def write_pickle(path: Path, content: dict) -> None:
    with path.open("wb") as stream:
        pickle.dump(content, stream, protocol=2)  # the official files are protocol-2 pickles


def cifar_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 256, (n, 3072), dtype=np.uint8)


def write_cifar10(folder: Path, n_per_batch: int = 2, n_test: int = 3) -> tuple[dict, dict]:
    """``(md5 table, raw arrays)`` of a tiny CIFAR-10 in the official layout and keys."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(10)
    raw = {}
    for i in range(1, 6):
        data = cifar_rows(rng, n_per_batch)
        labels = [(2 * i + j) % 10 for j in range(n_per_batch)]
        raw[f"data_batch_{i}"] = (data, labels)
        write_pickle(
            folder / f"data_batch_{i}",
            {b"batch_label": b"training batch %d of 5" % i, b"labels": labels, b"data": data,
             b"filenames": [b"img_%d.png" % j for j in range(n_per_batch)]},
        )
    test_data, test_labels = cifar_rows(rng, n_test), [9, 0, 4][:n_test]
    raw["test_batch"] = (test_data, test_labels)
    write_pickle(folder / "test_batch", {b"batch_label": b"testing batch 1 of 1", b"labels": test_labels,
                                         b"data": test_data, b"filenames": [b"t.png"] * n_test})
    write_pickle(folder / "batches.meta", {b"label_names": [b"class%d" % k for k in range(10)],
                                           b"num_cases_per_batch": n_per_batch, b"num_vis": 3072})
    names = [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"]
    return {name: md5_of(folder / name) for name in names}, raw


def write_cifar100(folder: Path) -> tuple[dict, dict]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(100)
    train_data, test_data = cifar_rows(rng, 4), cifar_rows(rng, 2)
    fine_train, fine_test = [99, 0, 42, 17], [63, 5]
    write_pickle(folder / "train", {b"filenames": [b"a.png"] * 4, b"batch_label": b"training batch 1 of 1",
                                    b"fine_labels": fine_train, b"coarse_labels": [19, 0, 3, 2],
                                    b"data": train_data})
    write_pickle(folder / "test", {b"filenames": [b"b.png"] * 2, b"batch_label": b"testing batch 1 of 1",
                                   b"fine_labels": fine_test, b"coarse_labels": [1, 1], b"data": test_data})
    write_pickle(folder / "meta", {b"fine_label_names": [b"f%d" % k for k in range(100)],
                                   b"coarse_label_names": [b"c%d" % k for k in range(20)]})
    raw = {"train": (train_data, fine_train), "test": (test_data, fine_test)}
    return {name: md5_of(folder / name) for name in ("train", "test", "meta")}, raw


def unstandardize(x: torch.Tensor, raw_train: np.ndarray) -> torch.Tensor:
    """Undo the loader's standardization using the raw train split's per-channel (dim 1) stats."""
    raw = torch.from_numpy(raw_train.astype(np.float64))
    dims = [d for d in range(raw.dim()) if d != 1]
    std, mean = torch.std_mean(raw, dim=dims, keepdim=True, correction=0)
    return x.double() * std + mean


def assert_standardized(splits: DataSplits) -> None:
    dims = [d for d in range(splits.train_x.dim()) if d != 1]
    mean = splits.train_x.double().mean(dim=dims)
    std = splits.train_x.double().std(dim=dims, correction=0)
    assert torch.allclose(mean, torch.zeros_like(mean), atol=1e-5), mean
    assert torch.allclose(std, torch.ones_like(std), atol=1e-5), std


# ---------------------------------------------------------------- shared helpers (splits.py)


def test_standardize_uses_train_statistics_per_channel():
    train = torch.tensor([[[[1.0, 3.0]], [[10.0, 10.0]]], [[[5.0, 7.0]], [[10.0, 10.0]]]])  # (2, 2, 1, 2)
    test = torch.tensor([[[[4.0, 8.0]], [[12.0, 10.0]]]])
    train_std, test_std = standardize_with_train_stats(train, test)
    # channel 0: mean 4, std sqrt(5); channel 1 is constant: mean 10, std kept at 1 (no division by 0)
    assert torch.allclose(train_std[:, 0].flatten(), torch.tensor([-3.0, -1.0, 1.0, 3.0]) / 5**0.5)
    assert torch.equal(train_std[:, 1], torch.zeros(2, 1, 2))
    assert torch.allclose(test_std.flatten(), torch.tensor([0.0, 4 / 5**0.5, 2.0, 0.0]))


def test_subset_train_is_seeded_sorted_and_checked():
    x, y = torch.arange(10.0).unsqueeze(1), torch.arange(10)
    sub_x, sub_y = subset_train(x, y, 4, seed=3)
    assert sub_y.tolist() == sorted(sub_y.tolist()) and len(set(sub_y.tolist())) == 4
    assert torch.equal(sub_x.squeeze(1).long(), sub_y)
    assert torch.equal(subset_train(x, y, 4, seed=3)[1], sub_y)
    assert subset_train(x, y, None, seed=3)[1] is y
    with pytest.raises(DatasetError, match=r"train_size=11 is larger than the 10 training examples"):
        subset_train(x, y, 11, seed=0)
    with pytest.raises(DatasetError, match=r"train_size must be a positive integer or null, got 0"):
        subset_train(x, y, 0, seed=0)


# ---------------------------------------------------------------- digits


def test_digits_shapes_split_and_values_match_sklearn():
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    splits = load_digits(test_fraction=0.2, seed=0)
    assert splits.name == "digits" and splits.num_classes == 10
    assert splits.train_x.shape == (1437, 1, 8, 8) and splits.test_x.shape == (360, 1, 8, 8)
    assert splits.train_x.dtype == torch.float32 and splits.train_y.dtype == torch.int64
    assert splits.input_shape == (1, 8, 8)
    bunch = sk_digits()
    raw_train, raw_test, y_train, y_test = train_test_split(
        bunch.images[:, None], bunch.target, test_size=0.2, random_state=0, stratify=bunch.target)
    assert splits.train_y.tolist() == y_train.tolist() and splits.test_y.tolist() == y_test.tolist()
    assert torch.allclose(unstandardize(splits.train_x, raw_train), torch.from_numpy(raw_train), atol=1e-4)
    assert torch.allclose(unstandardize(splits.test_x, raw_train), torch.from_numpy(raw_test), atol=1e-4)
    # stratified: each class has 174..183 images, so 34..37 of them land in the test split
    assert all(34 <= count <= 37 for count in torch.bincount(splits.test_y, minlength=10).tolist())
    assert_standardized(splits)


def test_digits_seed_fixes_the_split():
    a, b, c = load_digits(seed=1), load_digits(seed=1), load_digits(seed=2)
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_y, b.test_y)
    assert not torch.equal(a.test_y, c.test_y)


def test_digits_train_size_keeps_test_whole():
    full, small = load_digits(seed=0), load_digits(seed=0, train_size=100)
    assert small.train_x.shape == (100, 1, 8, 8) and small.train_y.shape == (100,)
    assert torch.equal(small.test_y, full.test_y)
    assert_standardized(small)  # statistics of the subset that is returned
    with pytest.raises(DatasetError, match=r"train_size=5000 is larger than the 1437 training examples"):
        load_digits(train_size=5000)


def test_digits_rejects_bad_test_fraction():
    with pytest.raises(DatasetError, match=r"test_fraction must lie strictly between 0 and 1, got 1.5"):
        load_digits(test_fraction=1.5)


# ---------------------------------------------------------------- synthetic


def test_gaussian_mixture_shapes_and_standardization():
    splits = make_gaussian_mixture(n_samples=500, n_features=3, num_classes=4, cluster_std=0.5, seed=7)
    assert splits.name == "gaussian_mixture" and splits.num_classes == 4
    assert splits.train_x.shape == (400, 3) and splits.test_x.shape == (100, 3)
    assert splits.train_x.dtype == torch.float32 and splits.train_y.dtype == torch.int64
    assert torch.bincount(splits.test_y).tolist() == [25, 25, 25, 25]  # 125 per blob, stratified
    assert_standardized(splits)


@pytest.mark.parametrize("which", ["gaussian_mixture", "moons"])
def test_synthetic_points_are_sklearns_for_the_seed(which):
    from sklearn.datasets import make_blobs
    from sklearn.datasets import make_moons as sk_moons
    from sklearn.model_selection import train_test_split

    if which == "moons":
        splits = make_moons(n_samples=300, noise=0.2, seed=4)
        x, y = sk_moons(n_samples=300, noise=0.2, random_state=4)
    else:
        splits = make_gaussian_mixture(n_samples=300, n_features=5, num_classes=3, cluster_std=2.0, seed=4)
        x, y = make_blobs(n_samples=300, n_features=5, centers=3, cluster_std=2.0, random_state=4)
    x_train, x_test, y_train, y_test = train_test_split(
        x.astype(np.float32), y, test_size=0.2, random_state=4, stratify=y)
    assert splits.train_y.tolist() == y_train.tolist() and splits.test_y.tolist() == y_test.tolist()
    assert torch.allclose(unstandardize(splits.train_x, x_train), torch.from_numpy(x_train).double(), atol=1e-5)
    assert torch.allclose(unstandardize(splits.test_x, x_train), torch.from_numpy(x_test).double(), atol=1e-5)


def test_synthetic_seed_determinism():
    for make in (make_gaussian_mixture, make_moons):
        a, b, c = make(n_samples=200, seed=0), make(n_samples=200, seed=0), make(n_samples=200, seed=1)
        assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_y, b.test_y)
        assert not torch.allclose(a.train_x, c.train_x)


def test_moons_shapes_and_labels():
    splits = make_moons(n_samples=300, noise=0.1, seed=3, train_size=50)
    assert splits.name == "moons" and splits.num_classes == 2
    assert splits.train_x.shape == (50, 2) and splits.test_x.shape == (60, 2)
    assert sorted(set(splits.test_y.tolist())) == [0, 1]
    assert torch.bincount(splits.test_y).tolist() == [30, 30]  # stratified split of 150 + 150
    assert_standardized(splits)


def test_synthetic_rejects_bad_arguments():
    with pytest.raises(DatasetError, match=r"num_classes must be an integer >= 2, got 1"):
        make_gaussian_mixture(num_classes=1)
    with pytest.raises(DatasetError, match=r"noise must be >= 0, got -0.1"):
        make_moons(noise=-0.1)


# ---------------------------------------------------------------- MNIST (IDX)


@pytest.mark.parametrize(
    "gzipped", [(False,) * 4, (True,) * 4, (True, False, False, True)], ids=["plain", "gzip", "mixed"])
@pytest.mark.parametrize("variant", ["mnist", "fashion_mnist"])
def test_mnist_round_trip(tmp_path, gzipped, variant):
    raw = write_mnist(tmp_path, gzipped)
    splits = load_mnist(str(tmp_path), variant=variant)
    assert splits.name == variant and splits.num_classes == 10
    assert splits.train_x.shape == (5, 1, 28, 28) and splits.test_x.shape == (3, 1, 28, 28)
    assert splits.train_x.dtype == torch.float32 and splits.test_y.dtype == torch.int64
    assert splits.train_y.tolist() == [7, 0, 9, 3, 3] and splits.test_y.tolist() == [1, 8, 5]
    raw_train = raw["train-images-idx3-ubyte"][:, None]
    train_back = unstandardize(splits.train_x, raw_train)
    test_back = unstandardize(splits.test_x, raw_train)
    assert round(float(train_back[2, 0, 5, 7]), 3) == 200.0
    assert round(float(test_back[1, 0, 27, 0]), 3) == 13.0
    assert torch.allclose(train_back, torch.from_numpy(raw_train).double(), atol=1e-3)
    assert torch.allclose(test_back, torch.from_numpy(raw["t10k-images-idx3-ubyte"][:, None]).double(), atol=1e-3)
    assert_standardized(splits)


def test_mnist_prefers_plain_file_over_gzip(tmp_path):
    write_mnist(tmp_path)
    other_labels = np.array([1, 1, 1, 1, 1], dtype=np.uint8)
    write_file(tmp_path / "train-labels-idx1-ubyte.gz", idx_bytes(other_labels))
    assert load_mnist(str(tmp_path)).train_y.tolist() == [7, 0, 9, 3, 3]
    (tmp_path / "train-labels-idx1-ubyte").unlink()
    assert load_mnist(str(tmp_path)).train_y.tolist() == [1, 1, 1, 1, 1]


def test_mnist_train_size_subset(tmp_path):
    write_mnist(tmp_path)
    a, b = load_mnist(str(tmp_path), train_size=3, seed=5), load_mnist(str(tmp_path), train_size=3, seed=5)
    assert a.train_x.shape == (3, 1, 28, 28) and a.test_x.shape == (3, 1, 28, 28)
    assert torch.equal(a.train_x, b.train_x)
    kept = torch.randperm(5, generator=torch.Generator().manual_seed(5))[:3].sort().values
    assert a.train_y.tolist() == [[7, 0, 9, 3, 3][i] for i in kept.tolist()]
    with pytest.raises(DatasetError, match=r"train_size=6 is larger than the 5 training examples"):
        load_mnist(str(tmp_path), train_size=6)


def test_mnist_missing_file_names_path_and_expected_files(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DatasetError) as error:
        load_mnist(str(tmp_path), variant="fashion_mnist")
    message = str(error.value)
    assert message.startswith(f"Fashion-MNIST file not found: {tmp_path / 't10k-labels-idx1-ubyte'}(.gz).")
    assert f"Expected in {tmp_path}: " + ", ".join(MNIST_NAMES) + " (plain or .gz)" in message
    assert "Set dataset.root" in message


def test_mnist_empty_folder_lists_every_missing_file(tmp_path):
    with pytest.raises(DatasetError) as error:
        load_mnist(str(tmp_path / "nowhere"))
    assert all(f"{tmp_path / 'nowhere' / name}(.gz)" in str(error.value) for name in MNIST_NAMES)


def test_mnist_bad_magic(tmp_path):
    raw = write_mnist(tmp_path)
    write_file(tmp_path / "train-images-idx3-ubyte", idx_bytes(raw["train-images-idx3-ubyte"], magic=0x0801))
    with pytest.raises(DatasetError, match=r"magic number 0x00000801, expected 0x00000803"):
        load_mnist(str(tmp_path))


def test_mnist_labels_file_in_images_place(tmp_path):
    raw = write_mnist(tmp_path)
    write_file(tmp_path / "t10k-labels-idx1-ubyte", idx_bytes(raw["t10k-images-idx3-ubyte"]))
    with pytest.raises(DatasetError, match=r"t10k-labels-idx1-ubyte: magic number 0x00000803, expected 0x00000801"):
        load_mnist(str(tmp_path))


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_mnist_truncated_file(tmp_path, suffix):
    raw = write_mnist(tmp_path)
    (tmp_path / "train-images-idx3-ubyte").unlink()
    content = idx_bytes(raw["train-images-idx3-ubyte"])[:-10]  # header says 5*784 bytes of data
    write_file(tmp_path / f"train-images-idx3-ubyte{suffix}", content)
    with pytest.raises(DatasetError, match=r"3926 bytes, but its header \(5, 28, 28\) needs 3936 bytes"):
        load_mnist(str(tmp_path))


def test_mnist_header_cut_short(tmp_path):
    write_mnist(tmp_path)
    write_file(tmp_path / "train-labels-idx1-ubyte", b"\x00\x00\x08\x01\x00")
    with pytest.raises(DatasetError, match=r"5 bytes, shorter than its 8-byte header"):
        load_mnist(str(tmp_path))


def test_mnist_corrupt_gzip(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / "train-images-idx3-ubyte").unlink()
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DatasetError, match=r"corrupt MNIST gzip file .*train-images-idx3-ubyte.gz"):
        load_mnist(str(tmp_path))


def test_mnist_image_label_count_mismatch(tmp_path):
    write_mnist(tmp_path)
    write_file(tmp_path / "train-labels-idx1-ubyte", idx_bytes(np.array([1, 2, 3, 4], dtype=np.uint8)))
    with pytest.raises(DatasetError, match=r"image and label counts disagree: 5 images .* 4 labels"):
        load_mnist(str(tmp_path))


def test_mnist_wrong_image_size_and_label_range(tmp_path):
    write_mnist(tmp_path)
    write_file(tmp_path / "t10k-images-idx3-ubyte", idx_bytes(np.zeros((3, 32, 32), dtype=np.uint8)))
    with pytest.raises(DatasetError, match=r"are 32x32, expected 28x28"):
        load_mnist(str(tmp_path))
    write_mnist(tmp_path)
    write_file(tmp_path / "t10k-labels-idx1-ubyte", idx_bytes(np.array([1, 10, 5], dtype=np.uint8)))
    with pytest.raises(DatasetError, match=r"mnist test labels span \[1, 10\], expected class indices in \[0, 10\)"):
        load_mnist(str(tmp_path))


def test_mnist_unknown_variant(tmp_path):
    expected = r"unknown MNIST variant 'kmnist': expected one of \['fashion_mnist', 'mnist'\]"
    with pytest.raises(DatasetError, match=expected):
        load_mnist(str(tmp_path), variant="kmnist")


# ---------------------------------------------------------------- CIFAR (md5-verified pickles)


def test_cifar10_round_trip(tmp_path):
    md5, raw = write_cifar10(tmp_path / "cifar-10-batches-py")
    splits = load_cifar(str(tmp_path), num_classes=10, md5=md5)
    assert splits.name == "cifar10" and splits.num_classes == 10
    assert splits.train_x.shape == (10, 3, 32, 32) and splits.test_x.shape == (3, 3, 32, 32)
    assert splits.train_x.dtype == torch.float32 and splits.train_y.dtype == torch.int64
    assert splits.train_y.tolist() == [2, 3, 4, 5, 6, 7, 8, 9, 0, 1]  # batches 1..5 in order
    assert splits.test_y.tolist() == [9, 0, 4]
    raw_train = np.concatenate([raw[f"data_batch_{i}"][0] for i in range(1, 6)]).reshape(-1, 3, 32, 32)
    train_back = unstandardize(splits.train_x, raw_train)
    # image 3 = batch 2, row 1; channel 1 (green) pixel (4, 5) sits at 1024 + 4 * 32 + 5 in the row
    assert round(float(train_back[3, 1, 4, 5]), 3) == float(raw["data_batch_2"][0][1, 1024 + 4 * 32 + 5])
    assert torch.allclose(train_back, torch.from_numpy(raw_train).double(), atol=1e-3)
    test_back = unstandardize(splits.test_x, raw_train)
    assert round(float(test_back[2, 2, 31, 31]), 3) == float(raw["test_batch"][0][2, 3071])
    assert_standardized(splits)


def test_cifar10_files_directly_in_root_and_train_size(tmp_path):
    md5, _ = write_cifar10(tmp_path)
    splits = load_cifar(str(tmp_path), md5=md5, train_size=4, seed=1)
    assert splits.train_x.shape == (4, 3, 32, 32) and splits.test_y.tolist() == [9, 0, 4]
    kept = torch.randperm(10, generator=torch.Generator().manual_seed(1))[:4].sort().values
    assert splits.train_y.tolist() == [[2, 3, 4, 5, 6, 7, 8, 9, 0, 1][i] for i in kept.tolist()]


def test_cifar100_uses_fine_labels(tmp_path):
    md5, raw = write_cifar100(tmp_path / "cifar-100-python")
    splits = load_cifar(str(tmp_path), num_classes=100, md5=md5)
    assert splits.name == "cifar100" and splits.num_classes == 100
    assert splits.train_y.tolist() == [99, 0, 42, 17] and splits.test_y.tolist() == [63, 5]
    assert splits.test_x.shape == (2, 3, 32, 32)
    raw_train = raw["train"][0].reshape(-1, 3, 32, 32)
    assert round(float(unstandardize(splits.train_x, raw_train)[0, 0, 0, 0]), 3) == float(raw["train"][0][0, 0])
    assert_standardized(splits)


def test_cifar_official_md5_rejects_other_files(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    md5, _ = write_cifar10(folder)
    with pytest.raises(DatasetError) as error:
        load_cifar(str(tmp_path))  # default: the official table
    message = str(error.value)
    assert f"md5 mismatch for CIFAR-10 file {folder / 'data_batch_1'}" in message
    assert "expected c99cafc152244af753f735de768cd75f" in message
    assert f"got {md5['data_batch_1']}" in message


def test_cifar_checks_every_md5_before_unpickling(tmp_path, monkeypatch):
    md5, _ = write_cifar10(tmp_path)
    unpickled = []
    original = cifar_module._unpickle
    monkeypatch.setattr(cifar_module, "_unpickle", lambda path, title: unpickled.append(path) or original(path, title))
    bad_table = {**md5, "batches.meta": "0" * 32}  # the last file checked
    with pytest.raises(DatasetError, match=r"md5 mismatch .*batches.meta: expected 0{32}, got [0-9a-f]{32}"):
        load_cifar(str(tmp_path), md5=bad_table)
    assert unpickled == []
    load_cifar(str(tmp_path), md5=md5)
    assert len(unpickled) == 7  # meta + 5 train batches + test batch


def test_cifar_md5_table_without_the_file(tmp_path):
    md5, _ = write_cifar100(tmp_path)
    del md5["test"]
    with pytest.raises(DatasetError, match=r"no md5 given for CIFAR-100 file .*test: .*add 'test' to it"):
        load_cifar(str(tmp_path), num_classes=100, md5=md5)


def test_cifar_refuses_foreign_pickle_globals(tmp_path):
    md5, _ = write_cifar100(tmp_path)
    write_pickle(tmp_path / "test", {b"data": collections.OrderedDict(), b"fine_labels": []})
    md5["test"] = md5_of(tmp_path / "test")
    with pytest.raises(DatasetError, match=r"global collections.OrderedDict is not allowed in a CIFAR pickle"):
        load_cifar(str(tmp_path), num_classes=100, md5=md5)


def test_cifar_missing_file_names_path_and_expected_files(tmp_path):
    md5, _ = write_cifar10(tmp_path / "cifar-10-batches-py")
    (tmp_path / "cifar-10-batches-py" / "data_batch_4").unlink()
    with pytest.raises(DatasetError) as error:
        load_cifar(str(tmp_path), md5=md5)
    message = str(error.value)
    assert message.startswith(f"CIFAR-10 file not found: {tmp_path / 'cifar-10-batches-py' / 'data_batch_4'}.")
    assert ("data_batch_1, data_batch_2, data_batch_3, data_batch_4, data_batch_5, test_batch, batches.meta"
            in message)
    assert "Set dataset.root" in message


def test_cifar_empty_root_names_the_official_folder(tmp_path):
    with pytest.raises(DatasetError) as error:
        load_cifar(str(tmp_path), num_classes=100)
    message = str(error.value)
    assert message.startswith(f"CIFAR-100 file not found: {tmp_path / 'cifar-100-python' / 'train'}, ")
    assert f"Expected in {tmp_path / 'cifar-100-python'} (or directly in {tmp_path}): train, test, meta" in message


def test_cifar_meta_must_match_num_classes(tmp_path):
    md5, _ = write_cifar10(tmp_path)
    write_pickle(tmp_path / "batches.meta", {b"label_names": [b"x"] * 9})
    md5["batches.meta"] = md5_of(tmp_path / "batches.meta")
    with pytest.raises(DatasetError, match=r"batches.meta lists 9 label_names, expected 10"):
        load_cifar(str(tmp_path), md5=md5)


def test_cifar_batch_with_wrong_row_length(tmp_path):
    md5, _ = write_cifar10(tmp_path)
    write_pickle(tmp_path / "test_batch", {b"data": np.zeros((2, 1024), np.uint8), b"labels": [0, 1]})
    md5["test_batch"] = md5_of(tmp_path / "test_batch")
    with pytest.raises(DatasetError, match=r"data is uint8 \(2, 1024\), expected uint8 \(N, 3072\)"):
        load_cifar(str(tmp_path), md5=md5)


def test_cifar_unknown_num_classes(tmp_path):
    with pytest.raises(DatasetError, match=r"unknown CIFAR num_classes 20: expected 10 \(CIFAR-10\) or 100"):
        load_cifar(str(tmp_path), num_classes=20)


# ---------------------------------------------------------------- Hydra configs


CONFIG_FILES = ["cifar10", "cifar100", "digits", "fashion_mnist", "gaussian_mixture", "hf_disk", "image_folder", "mnist",
                "mnist1d", "moons", "tensors", "text"]


def test_every_dataset_option_has_a_config():
    assert sorted(path.stem for path in CONF_DIR.glob("*.yaml")) == CONFIG_FILES


@pytest.mark.parametrize("option", CONFIG_FILES)
def test_config_lists_every_argument_with_a_comment(option):
    node = OmegaConf.load(CONF_DIR / f"{option}.yaml")
    target = hydra.utils.get_method(node._target_)
    assert set(node.keys()) - {"_target_"} == set(inspect.signature(target).parameters)
    assert node._get_node("seed")._value() == "${seed}"
    lines = (CONF_DIR / f"{option}.yaml").read_text().splitlines()
    for number, line in enumerate(lines):
        key = re.match(r"^(\w+):", line)
        if key and key.group(1) != "_target_":
            assert "#" in line or lines[number - 1].startswith("#"), f"{option}.yaml: {key.group(1)} lacks a comment"


def instantiate_option(option: str, seed: int = 0, **overrides) -> DataSplits:
    cfg = OmegaConf.create({"seed": seed, "dataset": OmegaConf.load(CONF_DIR / f"{option}.yaml")})
    for key, value in overrides.items():
        cfg.dataset[key] = value
    return hydra.utils.instantiate(cfg.dataset)


@pytest.mark.parametrize(
    "option, name, num_classes, train_shape",
    [
        ("digits", "digits", 10, (1437, 1, 8, 8)),
        ("gaussian_mixture", "gaussian_mixture", 3, (1600, 2)),
        ("moons", "moons", 2, (1600, 2)),
        ("mnist", "mnist", 10, (5, 1, 28, 28)),
        ("fashion_mnist", "fashion_mnist", 10, (5, 1, 28, 28)),
        ("cifar10", "cifar10", 10, (10, 3, 32, 32)),
        ("cifar100", "cifar100", 100, (4, 3, 32, 32)),
    ],
)
def test_config_instantiates(tmp_path, option, name, num_classes, train_shape):
    overrides = {}
    if "mnist" in option:
        write_mnist(tmp_path)
        overrides = {"root": str(tmp_path)}
    elif option == "cifar10":
        overrides = {"root": str(tmp_path), "md5": write_cifar10(tmp_path / "cifar-10-batches-py")[0]}
    elif option == "cifar100":
        overrides = {"root": str(tmp_path), "md5": write_cifar100(tmp_path / "cifar-100-python")[0]}
    splits = instantiate_option(option, **overrides)
    assert isinstance(splits, DataSplits)
    assert (splits.name, splits.num_classes, tuple(splits.train_x.shape)) == (name, num_classes, train_shape)


def test_config_seed_reaches_the_loader():
    a, b = instantiate_option("moons", seed=0), instantiate_option("moons", seed=1)
    assert torch.equal(a.train_x, make_moons(seed=0).train_x)
    assert not torch.allclose(a.train_x, b.train_x)


def test_config_root_follows_data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("DATA_ROOT", str(tmp_path))
    write_mnist(tmp_path / "fashion_mnist")
    assert instantiate_option("fashion_mnist").train_y.tolist() == [7, 0, 9, 3, 3]
    # Hydra wraps the loader's DatasetError; its message still names the resolved folder.
    missing = re.escape(f"{tmp_path / 'mnist' / 'train-images-idx3-ubyte'}(.gz)")
    with pytest.raises(InstantiationException, match=missing):
        instantiate_option("mnist")
