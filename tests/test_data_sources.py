"""The researcher's own data: small files in every format round-trip exactly, bad input fails clearly,
the real pipeline scans a model trained on them, and a Hessian top eigenvalue on each is exact."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from PIL import Image
from safetensors.torch import save_file
from torch.func import functional_call

from conftest import compose_config
from losslandscape.errors import ConfigError
from losslandscape.data import (
    DatasetError,
    load_hf_disk,
    load_image_folder,
    load_mnist1d,
    load_tensors,
    load_text,
)
from losslandscape.hessian import HessianOperator, hessian_eigenpairs
from losslandscape.landscape.batches import Residency
from losslandscape.landscape.evaluator import Evaluator, parameters_of
from losslandscape.landscape.scans import ScanResult
from losslandscape.losses import TokenCrossEntropy
from losslandscape.tasks.landscape import run_landscape
from losslandscape.tasks.train import run_train
from losslandscape.training.checkpoints import model_from_checkpoint

CONTAINERS = ["pt", "npz", "safetensors"]


# ---------------------------------------------------------------- helpers: files in each format


def write_tensors(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    """``arrays`` saved in the container named by ``path``'s suffix."""
    if path.suffix == ".npz":
        np.savez(path, **arrays)
    elif path.suffix == ".pt":
        torch.save({k: torch.from_numpy(v) for k, v in arrays.items()}, path)
    else:
        save_file({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}, str(path))
    return path


def classification_arrays(seed: int = 0, n: int = 60, n_test: int = 20) -> dict[str, np.ndarray]:
    """Two Gaussian blobs in 3 features, labels 0 to 2 (so num_classes = 3 is max + 1)."""
    rng = np.random.default_rng(seed)
    y, y_test = rng.integers(0, 3, n), rng.integers(0, 3, n_test)
    centres = np.array([[2.0, 0.0, 1.0], [-2.0, 1.0, 0.0], [0.0, -2.0, -1.0]], dtype=np.float32)
    x = (centres[y] + rng.normal(0, 0.5, (n, 3))).astype(np.float32)
    x_test = (centres[y_test] + rng.normal(0, 0.5, (n_test, 3))).astype(np.float32)
    return {"x": x, "y": y, "x_test": x_test, "y_test": y_test}


def write_png_folder(root: Path, classes: dict[str, int], shape=(6, 5, 3), seed: int = 0) -> dict[str, list[np.ndarray]]:
    """``count`` random PNGs per class folder (``0.png`` ...), the written pixel arrays by class."""
    rng = np.random.default_rng(seed)
    written = {}
    for name, count in classes.items():
        (root / name).mkdir(parents=True)
        written[name] = [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(count)]
        for i, pixels in enumerate(written[name]):
            Image.fromarray(pixels.squeeze(-1) if shape[-1] == 1 else pixels).save(root / name / f"{i}.png")
    return written


def rows(x: torch.Tensor) -> set[bytes]:
    return {row.numpy().tobytes() for row in x}


# ---------------------------------------------------------------- tensors: .pt, .npz, .safetensors


@pytest.mark.parametrize("container", CONTAINERS)
def test_tensor_file_round_trips_exactly(tmp_path, container):
    arrays = classification_arrays()
    path = write_tensors(tmp_path / f"blobs.{container}", arrays)
    data = load_tensors(str(path), standardize=False)
    assert data.name == "blobs" and data.num_classes == 3 and data.input_shape == (3,)
    for split, key in (("train", ""), ("test", "_test")):
        x, y = data.split(split)
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        np.testing.assert_array_equal(x.numpy(), arrays["x" + key])
        np.testing.assert_array_equal(y.numpy(), arrays["y" + key])
    # standardized: the train mean and std of each feature, computed here with numpy
    scaled = load_tensors(str(path))
    mean, std = arrays["x"].mean(0), arrays["x"].std(0)
    np.testing.assert_allclose(scaled.train_x.numpy(), (arrays["x"] - mean) / std, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(scaled.test_x.numpy(), (arrays["x_test"] - mean) / std, rtol=1e-5, atol=1e-5)
    assert scaled.fingerprint == data.fingerprint and len(data.fingerprint) == 64


def test_tensor_file_without_test_keys_is_split_by_the_seed(tmp_path):
    arrays = classification_arrays(n=50)
    path = write_tensors(tmp_path / "d.npz", {"x": arrays["x"], "y": arrays["y"]})
    a, b, other = (load_tensors(str(path), test_fraction=0.2, seed=s, standardize=False) for s in (0, 0, 1))
    assert (len(a.train_x), len(a.test_x)) == (40, 10)
    assert rows(a.train_x) | rows(a.test_x) == rows(torch.from_numpy(arrays["x"]))
    assert not rows(a.train_x) & rows(a.test_x)
    assert torch.equal(a.test_x, b.test_x) and not torch.equal(a.test_x, other.test_x)
    # each example keeps its own target
    by_row = {row.tobytes(): label for row, label in zip(arrays["x"], arrays["y"])}
    assert [by_row[r.numpy().tobytes()] for r in a.test_x] == a.test_y.tolist()


def test_tensor_targets_and_inputs_of_any_kind(tmp_path):
    rng = np.random.default_rng(3)
    tokens = rng.integers(0, 1000, (12, 7)).astype(np.int32)
    regression = rng.normal(size=(12,))
    multilabel = rng.integers(0, 2, (12, 4))
    path = write_tensors(tmp_path / "k.npz", {"ids": tokens, "value": regression, "tags": multilabel,
                                             "label": np.arange(12) % 4 * 1.0})
    ids = load_tensors(str(path), x_key="ids", y_key="value", test_fraction=0.25)
    assert ids.train_x.dtype == torch.int64 and ids.num_classes is None and ids.train_y.dtype == torch.float32
    # integer inputs are never standardized: the ids come back as written
    assert rows(torch.cat([ids.train_x, ids.test_x])) == rows(torch.from_numpy(tokens.astype(np.int64)))
    assert load_tensors(str(path), x_key="ids", y_key="tags").num_classes is None  # 2-D integer targets: values
    labelled = load_tensors(str(path), x_key="ids", y_key="label", num_classes=4)  # integral floats as classes
    assert labelled.train_y.dtype == torch.int64 and labelled.num_classes == 4
    assert load_tensors(str(path), x_key="ids", y_key="label").num_classes is None  # float targets: regression


def test_integer_inputs_as_features_are_floats_and_standardized(tmp_path):
    pixels = np.random.default_rng(4).integers(0, 256, (20, 1, 4, 4), dtype=np.uint8)
    path = write_tensors(tmp_path / "pixels.pt", {"x": pixels, "y": np.arange(20) % 2})
    raw = load_tensors(str(path), integer_inputs="features", standardize=False, test_fraction=0.25)
    assert raw.train_x.dtype == torch.float32
    assert rows(torch.cat([raw.train_x, raw.test_x])) == rows(torch.from_numpy(pixels.astype(np.float32)))
    scaled = load_tensors(str(path), integer_inputs="features", test_fraction=0.25)
    train = raw.train_x.numpy()
    np.testing.assert_allclose(scaled.train_x.numpy(), (train - train.mean()) / train.std(), rtol=1e-5, atol=1e-5)
    assert load_tensors(str(path), test_fraction=0.25).train_x.dtype == torch.int64  # ids by default
    with pytest.raises(DatasetError, match="integer_inputs must be one of ids, features, got 'pixels'"):
        load_tensors(str(path), integer_inputs="pixels")


@pytest.mark.parametrize("container", CONTAINERS)
def test_unreadable_tensor_file_names_the_file(tmp_path, container):
    path = tmp_path / f"broken.{container}"
    path.write_bytes(b"not a tensor file at all")
    with pytest.raises(DatasetError, match=f"cannot read {path}"):
        load_tensors(str(path))


def test_tensor_file_errors(tmp_path):
    arrays = classification_arrays()
    with pytest.raises(DatasetError, match=f"tensor file not found: {tmp_path / 'nope.npz'}"):
        load_tensors(str(tmp_path / "nope.npz"))
    npz = write_tensors(tmp_path / "d.npz", arrays)
    with pytest.raises(DatasetError, match=r"has no key 'inputs' \(keys found: x, x_test, y, y_test\)"):
        load_tensors(str(npz), x_key="inputs")
    short = write_tensors(tmp_path / "short.npz", {"x": arrays["x"], "y": arrays["y"][:-1]})
    with pytest.raises(DatasetError, match=r"key 'x' of .*short.npz has 60 examples but key 'y' of .*short.npz has 59"):
        load_tensors(str(short))
    half = write_tensors(tmp_path / "half.npz", {"x": arrays["x"], "y": arrays["y"], "x_test": arrays["x_test"]})
    with pytest.raises(DatasetError, match="has test key 'x_test' but not 'y_test'"):
        load_tensors(str(half))
    for bad in (np.nan, np.inf):
        x = arrays["x_test"].copy()
        x[7, 1] = bad
        path = write_tensors(tmp_path / "bad.npz", {**arrays, "x_test": x})
        with pytest.raises(DatasetError, match=r"key 'x_test' of .* holds 1 NaN or infinite values \(the first in example 7\)"):
            load_tensors(str(path))
    with pytest.raises(DatasetError, match=r"key 'y' of .* spans \[0, 2\], expected class indices in \[0, 2\)"):
        load_tensors(str(npz), num_classes=2)
    strings = tmp_path / "s.npz"
    np.savez(strings, x=arrays["x"], y=np.array(["a"] * 60))
    with pytest.raises(DatasetError, match="key 'y' of .* has dtype <U1; expected numbers"):
        load_tensors(str(strings))
    pickled = tmp_path / "numpy_inside.pt"
    torch.save({"x": arrays["x"], "y": arrays["y"]}, pickled)  # numpy arrays need pickle globals
    with pytest.raises(DatasetError, match=r"torch.load\(weights_only=True\): Unsupported global"):
        load_tensors(str(pickled))


def test_line_scan_on_a_tensor_file_centres_on_the_trained_model(tiny_config, tmp_path):
    path = write_tensors(tmp_path / "blobs.safetensors", classification_arrays())
    cfg = tiny_config("dataset=tensors", f"dataset.path={path}", "model=mlp", "scan=line")
    summary = run_landscape(cfg)
    line = ScanResult.load(summary["scans"]["line"]["file"])
    model = model_from_checkpoint(summary["checkpoint"])
    data = instantiate(cfg.dataset)
    with torch.no_grad():
        truth = torch.nn.functional.cross_entropy(model(data.test_x), data.test_y).item()
    assert line.values["test_loss"].shape == (7,)
    assert line.center_value("test_loss") == pytest.approx(truth, rel=1e-5)


# ---------------------------------------------------------------- image folders


def test_image_folder_round_trips_pixels_labels_and_normalization(tmp_path):
    train = write_png_folder(tmp_path / "train", {"dog": 3, "cat": 2})
    test = write_png_folder(tmp_path / "test", {"dog": 1, "cat": 2}, seed=1)
    data = load_image_folder(str(tmp_path / "train"), test_root=str(tmp_path / "test"), mean=[0, 0, 0], std=[1, 1, 1])
    assert data.num_classes == 2 and data.input_shape == (3, 6, 5)
    for (x, y), written in ((data.split("train"), train), (data.split("test"), test)):
        # class index = sorted folder name (cat = 0, dog = 1), images in file order, (C, H, W) in [0, 1]
        expected = [pixels for name in ("cat", "dog") for pixels in written[name]]
        labels = [i for i, name in enumerate(("cat", "dog")) for _ in written[name]]
        assert y.tolist() == labels
        np.testing.assert_array_equal(x.numpy(), np.stack(expected).transpose(0, 3, 1, 2).astype(np.float32) / 255)
    given = load_image_folder(str(tmp_path / "train"), test_root=str(tmp_path / "test"),
                              mean=[0.5, 0.4, 0.3], std=[0.2, 0.25, 0.5])
    shift, scale = np.array([0.5, 0.4, 0.3])[:, None, None], np.array([0.2, 0.25, 0.5])[:, None, None]
    np.testing.assert_allclose(given.test_x.numpy(), (data.test_x.numpy() - shift) / scale, rtol=1e-5, atol=1e-6)
    computed = load_image_folder(str(tmp_path / "train"), test_root=str(tmp_path / "test"))
    raw = data.train_x.numpy()
    mean, std = raw.mean(axis=(0, 2, 3), keepdims=True), raw.std(axis=(0, 2, 3), keepdims=True)
    np.testing.assert_allclose(computed.train_x.numpy(), (raw - mean) / std, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(computed.test_x.numpy(), (data.test_x.numpy() - mean) / std, rtol=1e-4, atol=1e-5)


def test_image_folder_grayscale_resize_and_stratified_split(tmp_path):
    written = write_png_folder(tmp_path / "gray", {"a": 5, "b": 5}, shape=(6, 4, 1))
    data = load_image_folder(str(tmp_path / "gray"), channels=1, mean=[0], std=[1], test_fraction=0.4)
    assert data.input_shape == (1, 6, 4)
    assert sorted(data.test_y.tolist()) == [0, 0, 1, 1]  # 40 % of every class
    every = np.stack([p for name in "ab" for p in written[name]]).transpose(0, 3, 1, 2).astype(np.float32) / 255
    assert rows(torch.cat([data.train_x, data.test_x])) == rows(torch.from_numpy(every))
    resized = load_image_folder(str(tmp_path / "gray"), channels=1, size=[3, 2], mean=[0], std=[1], test_fraction=0.4)
    assert resized.input_shape == (1, 3, 2)  # size is [H, W]
    reference = Image.open(tmp_path / "gray" / "a" / "0.png").resize((2, 3), Image.Resampling.BILINEAR)
    assert rows(torch.from_numpy(np.asarray(reference, dtype=np.float32)[None] / 255)[None]) <= rows(
        torch.cat([resized.train_x, resized.test_x]))


def test_image_folder_errors(tmp_path):
    with pytest.raises(DatasetError, match=f"image folder not found: {tmp_path / 'none'}"):
        load_image_folder(str(tmp_path / "none"))
    write_png_folder(tmp_path / "mixed", {"a": 2, "b": 2})
    Image.fromarray(np.zeros((7, 9, 3), dtype=np.uint8)).save(tmp_path / "mixed" / "b" / "odd.png")
    first, odd = tmp_path / "mixed" / "a" / "0.png", tmp_path / "mixed" / "b" / "odd.png"
    with pytest.raises(DatasetError, match=f"images of different sizes: {first} is 6x5, {odd} is 7x9; set dataset.size"):
        load_image_folder(str(tmp_path / "mixed"))
    assert load_image_folder(str(tmp_path / "mixed"), size=[4, 4], test_fraction=0.5).input_shape == (3, 4, 4)
    (tmp_path / "mixed" / "c").mkdir()
    with pytest.raises(DatasetError, match=f"class folder {tmp_path / 'mixed' / 'c'} is empty"):
        load_image_folder(str(tmp_path / "mixed"), size=[4, 4])
    (tmp_path / "mixed" / "c" / "notes.txt").write_text("not an image")
    with pytest.raises(DatasetError, match=f"{tmp_path / 'mixed' / 'c' / 'notes.txt'} is not an image Pillow can read"):
        load_image_folder(str(tmp_path / "mixed"), size=[4, 4])
    write_png_folder(tmp_path / "other", {"a": 1, "z": 1})
    with pytest.raises(DatasetError, match=r"class folders differ: .* has \['a', 'b', 'c'\], .* has \['a', 'z'\]"):
        load_image_folder(str(tmp_path / "mixed"), test_root=str(tmp_path / "other"), size=[4, 4])
    with pytest.raises(DatasetError, match=f"class folder {tmp_path / 'other' / 'a'} has 1 image: a stratified test split"):
        load_image_folder(str(tmp_path / "other"))
    with pytest.raises(DatasetError, match="mean and std need one value per channel"):
        load_image_folder(str(tmp_path / "other"), mean=[0.5], std=[0.5])


def test_line_scan_on_an_image_folder(tiny_config, tmp_path):
    write_png_folder(tmp_path / "pngs", {"a": 8, "b": 8}, shape=(8, 8, 3))
    cfg = tiny_config("dataset=image_folder", f"dataset.root={tmp_path / 'pngs'}", "dataset.test_fraction=0.25",
                      "model=cnn", "scan=line")
    summary = run_landscape(cfg)
    line = ScanResult.load(summary["scans"]["line"]["file"])
    model = model_from_checkpoint(summary["checkpoint"])
    data = instantiate(cfg.dataset)
    assert data.input_shape == (3, 8, 8) and len(data.test_y) == 4
    with torch.no_grad():
        truth = torch.nn.functional.cross_entropy(model(data.train_x), data.train_y).item()
    assert line.center_value("train_loss") == pytest.approx(truth, rel=1e-5)


# ---------------------------------------------------------------- text


CORPUS = "the cat sat on the mat. the dog sat on the log. a cat and a dog met on a mat.\n" * 3


def test_text_characters_in_blocks_with_next_token_targets(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(CORPUS)
    data = load_text(str(path), block_size=10, test_fraction=0.25)
    vocabulary = sorted(set(CORPUS))
    ids = [vocabulary.index(c) for c in CORPUS]
    blocks = (len(ids) - 1) // 10
    truth_x = {bytes(np.array(ids[i * 10:i * 10 + 10], dtype=np.int64)) for i in range(blocks)}
    truth_y = {bytes(np.array(ids[i * 10 + 1:i * 10 + 11], dtype=np.int64)) for i in range(blocks)}
    assert data.num_classes == len(vocabulary) and data.train_x.dtype == data.train_y.dtype == torch.int64
    assert len(data.test_x) == round(blocks * 0.25) and len(data.train_x) + len(data.test_x) == blocks
    assert rows(torch.cat([data.train_x, data.test_x])) == truth_x
    assert rows(torch.cat([data.train_y, data.test_y])) == truth_y
    assert torch.equal(data.train_x[:, 1:], data.train_y[:, :-1])  # each target is the input shifted by one
    # a folder of .txt files is the files concatenated in sorted order
    (tmp_path / "parts").mkdir()
    (tmp_path / "parts" / "b.txt").write_text(CORPUS[100:])
    (tmp_path / "parts" / "a.txt").write_text(CORPUS[:100])
    folder = load_text(str(tmp_path / "parts"), block_size=10, test_fraction=0.25)
    assert torch.equal(folder.train_x, data.train_x) and torch.equal(folder.test_y, data.test_y)


def test_text_with_a_local_hugging_face_tokenizer(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    path = tmp_path / "corpus.txt"
    path.write_text(CORPUS)
    words = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    words.train([str(path)], trainers.WordLevelTrainer(special_tokens=["[UNK]"]))
    PreTrainedTokenizerFast(tokenizer_object=words, unk_token="[UNK]").save_pretrained(tmp_path / "tok")
    data = load_text(str(path), block_size=4, tokenizer=str(tmp_path / "tok"), test_fraction=0.2)
    ids = words.encode(CORPUS).ids  # the tokenizers library itself, not through transformers
    blocks = (len(ids) - 1) // 4
    assert data.num_classes == words.get_vocab_size() == len(set(CORPUS.replace(".", " . ").split())) + 1  # + [UNK]
    assert rows(torch.cat([data.train_x, data.test_x])) == {
        bytes(np.array(ids[i * 4:i * 4 + 4], dtype=np.int64)) for i in range(blocks)}
    assert torch.equal(data.train_x[:, 1:], data.train_y[:, :-1])


def test_text_errors(tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("tiny")
    with pytest.raises(DatasetError, match=rf"{short} is 4 tokens long, shorter than one block: block_size=8 needs at least 9"):
        load_text(str(short), block_size=8)
    with pytest.raises(DatasetError, match=f"text not found: {tmp_path / 'none.txt'}"):
        load_text(str(tmp_path / "none.txt"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="holds no .txt files"):
        load_text(str(tmp_path / "empty"))
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\u00e9 ".encode("latin-1") * 30)
    with pytest.raises(DatasetError, match="is not valid utf-8 text .* set dataset.encoding"):
        load_text(str(latin), block_size=4)
    assert load_text(str(latin), block_size=4, encoding="latin-1").num_classes == 5
    with pytest.raises(DatasetError, match=f"tokenizer folder not found: {tmp_path / 'tok'}"):
        load_text(str(latin), block_size=4, encoding="latin-1", tokenizer=str(tmp_path / "tok"))


def test_text_config_composes_and_loads(tmp_path):
    (tmp_path / "c.txt").write_text(CORPUS)
    cfg = compose_config(tmp_path, ["dataset=text", f"dataset.path={tmp_path / 'c.txt'}", "dataset.block_size=16"])
    data = instantiate(cfg.dataset)
    assert data.input_shape == (16,) and data.num_classes == len(set(CORPUS))


# ---------------------------------------------------------------- MNIST-1D


def test_mnist1d_is_the_packages_own_dataset_and_leaves_global_rngs_alone():
    from mnist1d.data import get_dataset_args, make_dataset

    numpy_before, python_before = np.random.get_state()[1].copy(), random.getstate()
    data = load_mnist1d()
    assert np.array_equal(np.random.get_state()[1], numpy_before) and random.getstate() == python_before
    truth = make_dataset(get_dataset_args())  # the package's defaults (seed 42)
    assert (data.train_x.shape, data.test_x.shape, data.num_classes) == ((4000, 40), (1000, 40), 10)
    np.testing.assert_array_equal(data.train_x.numpy(), truth["x"].astype(np.float32))
    np.testing.assert_array_equal(data.test_y.numpy(), truth["y_test"])
    assert not torch.equal(load_mnist1d(generator_seed=1).train_x, data.train_x)


def test_mnist1d_cnn_beats_the_mlp_through_the_real_pipeline(tmp_path):
    """The paper's ordering (CNN > MLP on test accuracy), not its numbers, after a short training
    with the default training config (at 5 epochs the two still tie; measured at 10: 78 % vs 61 %)."""
    accuracy, threads = {}, torch.get_num_threads()
    torch.set_num_threads(1)  # models this small train fastest on one thread, and do not fight other jobs
    try:
        for model in ("cnn1d", "mlp_mnist1d"):
            cfg = compose_config(tmp_path / model, ["dataset=mnist1d", f"model={model}", "task=train", "logger=none",
                                                    "progress=false", "train.epochs=10"])
            accuracy[model] = run_train(cfg)["test_accuracy"]
    finally:
        torch.set_num_threads(threads)
    assert accuracy["cnn1d"] > accuracy["mlp_mnist1d"] > 0.2, accuracy


# ---------------------------------------------------------------- Hugging Face datasets saved to disk


def test_hf_disk_dataset_dict_and_single_dataset(tmp_path):
    import datasets

    arrays = classification_arrays()
    features = datasets.Features({"x": datasets.List(datasets.Value("float32")),
                                  "y": datasets.ClassLabel(names=["a", "b", "c", "d"])})
    train = datasets.Dataset.from_dict({"x": arrays["x"], "y": arrays["y"]}, features=features)
    test = datasets.Dataset.from_dict({"x": arrays["x_test"], "y": arrays["y_test"]}, features=features)
    datasets.DatasetDict({"train": train, "test": test}).save_to_disk(tmp_path / "dict", num_proc=1)
    data = load_hf_disk(str(tmp_path / "dict"), standardize=False)
    assert data.num_classes == 4  # the ClassLabel's count, not max + 1
    np.testing.assert_array_equal(data.train_x.numpy(), arrays["x"])
    np.testing.assert_array_equal(data.test_y.numpy(), arrays["y_test"])
    train.save_to_disk(tmp_path / "single")
    single = load_hf_disk(str(tmp_path / "single"), standardize=False, test_fraction=0.25)
    assert (len(single.train_x), len(single.test_x)) == (45, 15)
    assert rows(torch.cat([single.train_x, single.test_x])) == rows(torch.from_numpy(arrays["x"]))
    with pytest.raises(DatasetError, match=r"has no column 'pixels' \(columns found: x, y\)"):
        load_hf_disk(str(tmp_path / "dict"), x_column="pixels")
    with pytest.raises(DatasetError, match=r"has no split 'validation' \(splits found: train, test\)"):
        load_hf_disk(str(tmp_path / "dict"), train_split="validation")
    with pytest.raises(DatasetError, match="no dataset saved with save_to_disk at"):
        load_hf_disk(str(tmp_path / "none"))
    cfg = compose_config(tmp_path, ["dataset=hf_disk", f"dataset.path={tmp_path / 'dict'}"])
    assert instantiate(cfg.dataset).num_classes == 4


def test_a_missing_path_fails_before_training(tiny_config, tmp_path):
    cfg = tiny_config("dataset=tensors", f"dataset.path={tmp_path / 'absent.npz'}", "model=mlp", "scan=line")
    with pytest.raises(ConfigError, match=f"dataset.path={tmp_path / 'absent.npz'}: no such file"):
        run_landscape(cfg)  # caught by the validation step, before the loader or any training
    assert not Path(cfg.cache_dir).exists()


# ---------------------------------------------------------------- a Hessian top eigenvalue on every source


def top_eigenvalues(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, loss=None) -> tuple[float, float, float]:
    """``(resident, streamed, dense)``: Lanczos on the evaluator's Hessian, the split resident and streamed
    (4 examples per batch), and the largest eigenvalue of the dense Hessian of the plain mean loss."""
    model = model.double().eval()
    x = x.double() if x.is_floating_point() else x
    theta = parameters_of(model)
    tops = []
    for residency in (Residency(True), Residency(False, loader_workers=1)):
        evaluator = Evaluator(model, x, y, batch_size=4, loss=loss, residency=residency)
        values, _, _ = hessian_eigenpairs(HessianOperator.from_evaluator(evaluator, theta), 1, "top", 1e-10, seed=0)
        tops.append(float(values[0]))
    names, shapes = list(theta), [v.shape for v in theta.values()]

    def plain_mean_loss(flat: torch.Tensor) -> torch.Tensor:
        params = {n: t.view(s) for n, t, s in zip(names, flat.split([s.numel() for s in shapes]), shapes)}
        logits = functional_call(model, params, (x,))
        return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))

    dense = torch.autograd.functional.hessian(plain_mean_loss, torch.cat([v.reshape(-1) for v in theta.values()]))
    return tops[0], tops[1], torch.linalg.eigvalsh(dense)[-1].item()


def assert_top_eigenvalue_is_exact(model, x, y, loss=None) -> None:
    resident, streamed, dense = top_eigenvalues(model, x, y, loss)
    assert streamed == resident  # the same batches in the same order: bit for bit
    assert resident == pytest.approx(dense, rel=1e-8) and dense > 0


@pytest.mark.parametrize("container", CONTAINERS)
def test_hessian_top_eigenvalue_on_a_tensor_file(tmp_path, container):
    data = load_tensors(str(write_tensors(tmp_path / f"blobs.{container}", classification_arrays())))
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 3))
    assert_top_eigenvalue_is_exact(model, data.train_x, data.train_y)


def test_hessian_top_eigenvalue_on_an_image_folder(tmp_path):
    write_png_folder(tmp_path / "pngs", {"a": 6, "b": 6})
    data = load_image_folder(str(tmp_path / "pngs"), test_fraction=0.25)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 6 * 5, 2))
    assert_top_eigenvalue_is_exact(model, data.train_x, data.train_y)


class TinyLanguageModel(torch.nn.Module):
    def __init__(self, vocabulary: int):
        super().__init__()
        self.embedding, self.head = torch.nn.Embedding(vocabulary, 3), torch.nn.Linear(3, vocabulary)

    def forward(self, ids):
        return self.head(torch.tanh(self.embedding(ids)))


def test_hessian_top_eigenvalue_on_a_text_file(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(CORPUS)
    data = load_text(str(path), block_size=10, test_fraction=0.25)
    torch.manual_seed(0)
    assert_top_eigenvalue_is_exact(TinyLanguageModel(data.num_classes), data.train_x, data.train_y, TokenCrossEntropy())
