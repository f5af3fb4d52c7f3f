"""STL-10 binaries (the stl10_binary directory of the official archive).

Splits: "all" (train + test, 13,000 labelled images, the papers' setting), "train", "test",
"unlabeled" (100,000 images without labels, for over-clustering) and "train+unlabeled". A split
that includes the unlabeled images has no labels (y is None): load "all" to evaluate.
The unlabeled split takes about 11 GB as float32.
"""
import numpy as np

from .dataset import DatasetError, join_parts, read_bytes, require_dir

PARTS = ("train", "test", "unlabeled")
SPLITS = {"all": ("train", "test"), "train": ("train",), "test": ("test",),
          "unlabeled": ("unlabeled",), "train+unlabeled": ("train", "unlabeled")}
SHAPE = (3, 96, 96)
NUM_CLASSES = 10


def detect(path):
    """Whether path is a directory holding STL-10 binaries."""
    return path.is_dir() and any((path / f"{part}_X.bin").is_file() for part in PARTS)


def read_images(path):
    """Images (n, 3, 96, 96) of an STL-10 _X.bin file."""
    raw = read_bytes(path)
    size = int(np.prod(SHAPE))
    if not raw or len(raw) % size:
        raise DatasetError(f"{path}: {len(raw)} bytes is not a whole number of "
                           f"{'x'.join(map(str, SHAPE))} images ({size} bytes each); truncated?")
    # Each image is stored column-major (MATLAB order): swap rows and columns back.
    return np.frombuffer(raw, np.uint8).reshape(-1, *SHAPE).transpose(0, 1, 3, 2)


def read_part(directory, part):
    """Images and labels (0-9; None for the unlabeled part) of one part."""
    images = read_images(directory / f"{part}_X.bin")
    if part == "unlabeled":
        return images, None
    labels_path = directory / f"{part}_y.bin"
    labels = np.frombuffer(read_bytes(labels_path), np.uint8).astype(np.int64)
    if len(labels) != len(images):
        raise DatasetError(f"{labels_path}: {len(labels)} labels for the {len(images)} images "
                           f"of {part}_X.bin")
    if labels.min() < 1 or labels.max() > NUM_CLASSES:
        raise DatasetError(f"{labels_path}: labels must lie in 1..{NUM_CLASSES}, "
                           f"found {labels.min()}..{labels.max()}")
    return images, labels - 1


def class_names(directory):
    """The names in class_names.txt, or None when it is absent."""
    path = directory / "class_names.txt"
    if not path.is_file():
        return None
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if len(names) != NUM_CLASSES:
        raise DatasetError(f"{path}: expected {NUM_CLASSES} class names, found {len(names)}")
    return names


def load(path, split):
    """The images of `split` (one of SPLITS) in the directory `path`."""
    require_dir(path, "the STL-10 binaries (train_X.bin, train_y.bin, ...)")
    parts = [read_part(path, part) for part in SPLITS[split]]
    return join_parts(path, parts, name="stl10", num_classes=NUM_CLASSES,
                      class_names=class_names(path))
