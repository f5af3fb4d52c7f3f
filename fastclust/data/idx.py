"""MNIST-style IDX files (MNIST, Fashion-MNIST, KMNIST), plain or gzipped.

A directory holds train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and
t10k-labels-idx1-ubyte (or the `.idx3-ubyte` spelling, each optionally `.gz`); split "all" needs
all four. A single images file loads alone, with the labels file beside it if there is one
(its name with images -> labels and idx3 -> idx1, gzipped or not).
"""
import numpy as np

from .dataset import DatasetError, DatasetNotFoundError, join_parts, read_bytes

SPLITS = {"all": ("train", "t10k"), "train": ("train",), "test": ("t10k",)}
UNSIGNED_BYTE = 0x08


def detect(path):
    """Whether path is an IDX images file or a directory holding one."""
    if path.is_file():
        return "idx3-ubyte" in path.name
    return any("idx3-ubyte" in child.name for child in path.iterdir())


def read_idx(path, ndim):
    """The unsigned-byte array of an IDX file with `ndim` dimensions, its size checked against its
    header."""
    raw = read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DatasetError(f"{path}: not an IDX file (bad magic number {raw[:4].hex()})")
    if raw[2] != UNSIGNED_BYTE:
        raise DatasetError(f"{path}: IDX data type 0x{raw[2]:02x} is not supported "
                           f"(only unsigned bytes, 0x08)")
    if raw[3] != ndim:
        raise DatasetError(f"{path}: expected {ndim} dimensions, the header says {raw[3]}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{path}: truncated IDX header")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim, 4))
    expected, found = int(np.prod(dims)), len(raw) - header
    if found != expected:
        fault = "truncated" if found < expected else "has trailing bytes"
        raise DatasetError(f"{path}: {fault}: the header says {' x '.join(map(str, dims))} "
                           f"= {expected} bytes of data, the file holds {found}")
    return np.frombuffer(raw, np.uint8, expected, header).reshape(dims)


def read_pair(images_path, labels_path):
    """Images (n, 1, H, W) and labels (or None when labels_path is None) of one IDX pair."""
    images = read_idx(images_path, 3)[:, None]
    if labels_path is None:
        return images, None
    labels = read_idx(labels_path, 1).astype(np.int64)
    if len(labels) != len(images):
        raise DatasetError(f"{labels_path}: {len(labels)} labels for the {len(images)} images "
                           f"of {images_path}")
    return images, labels


def find(directory, prefix, kind):
    """The file of one part (prefix "train" or "t10k") and kind ("images" or "labels")."""
    idx = "idx3" if kind == "images" else "idx1"
    names = [f"{prefix}-{kind}{sep}{idx}-ubyte{gz}" for sep in "-." for gz in ("", ".gz")]
    for name in names:
        if (directory / name).is_file():
            return directory / name
    raise DatasetNotFoundError(f"{directory / names[0]}: no such file (nor {', '.join(names[1:])})")


def labels_beside(images):
    """The labels file next to a single images file: its name with images -> labels and idx3 ->
    idx1, gzipped or not whichever the images file is; None when there is none."""
    name = images.name.replace("images", "labels").replace("idx3", "idx1")
    stem = name[:-len(".gz")] if name.endswith(".gz") else name
    for candidate in (images.with_name(stem), images.with_name(stem + ".gz")):
        if candidate != images and candidate.is_file():
            return candidate
    return None


def load(path, split):
    """An IDX directory (split of SPLITS) or a single IDX images file (split "all")."""
    if path.is_file():
        if split != "all":
            raise ValueError(f"{path}: a single IDX file has no splits; split must be 'all'")
        parts = [read_pair(path, labels_beside(path))]
    else:
        parts = [read_pair(find(path, prefix, "images"), find(path, prefix, "labels"))
                 for prefix in SPLITS[split]]
    return join_parts(path, parts, name=path.name)
