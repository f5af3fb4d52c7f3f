"""The in-memory dataset every loader returns, the error every loader raises on bad data, and the
file handling the loaders share."""
import gzip
import zlib
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import FastclustError


class DatasetError(FastclustError, ValueError):
    """Data on disk that cannot be loaded as it is: the message names the file and the fault."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """A file or directory a dataset needs is missing."""


def require_file(path):
    """`path` as an existing file, else DatasetNotFoundError naming it."""
    if not path.is_file():
        raise DatasetNotFoundError(f"{path}: no such file")
    return path


def require_dir(path, what):
    """`path` as an existing directory, else DatasetError saying what it should hold."""
    if not path.is_dir():
        raise DatasetError(f"{path}: expected a directory holding {what}")
    return path


def read_bytes(path):
    """The bytes of a file, gunzipped when gzip-compressed (told by its magic, not its name)."""
    require_file(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
        return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    except (OSError, EOFError, zlib.error) as err:
        raise DatasetError(f"{path}: cannot read the file ({err})") from err


@dataclass(eq=False)
class ClusterDataset(torch.utils.data.Dataset):
    """A whole dataset held in memory, as the trainers consume it.

    x: float32 tensor, images (N, C, H, W) scaled to [0, 1] or feature vectors (N, D).
    y: ground-truth labels as an int64 array (N,), or None when unknown. Labels are kept as
       given; with num_classes or class_names known they must lie in 0..num_classes-1.
    name: a short name for logs and reports.
    num_classes: number of ground-truth classes; when not given, the number of class names,
       else of distinct labels, else None.
    class_names: the name of each class, indexed by label, or None.
    source: the file, directory or built-in name the data came from; named in errors.

    As a torch Dataset, item i is (x[i], i): trainers look labels and pair statistics up by index.
    """

    x: torch.Tensor
    y: np.ndarray | None
    name: str
    num_classes: int | None = None
    class_names: list[str] | None = None
    source: str | None = None

    def __post_init__(self):
        where = self.source or self.name
        if not isinstance(self.x, torch.Tensor) or self.x.dtype != torch.float32:
            raise TypeError(f"{where}: x must be a float32 torch tensor")
        if self.x.dim() not in (2, 4):
            raise DatasetError(f"{where}: x must be images (N, C, H, W) or features (N, D), "
                               f"got shape {tuple(self.x.shape)}")
        if len(self.x) == 0:
            raise DatasetError(f"{where}: no samples")
        # In chunks: a whole-tensor isfinite would briefly need another N x D bytes.
        if not all(torch.isfinite(chunk).all() for chunk in self.x.reshape(-1).split(1 << 24)):
            raise DatasetError(f"{where}: the data holds non-finite values (NaN or inf)")
        if self.class_names is not None:
            if self.num_classes is None:
                self.num_classes = len(self.class_names)
            elif self.num_classes != len(self.class_names):
                raise DatasetError(f"{where}: {len(self.class_names)} class names for "
                                   f"{self.num_classes} classes")
        if self.y is None:
            return
        self.y = np.asarray(self.y)
        if self.y.ndim != 1 or not np.issubdtype(self.y.dtype, np.integer):
            raise DatasetError(f"{where}: labels must be a 1-D integer array, "
                               f"got {self.y.dtype} of shape {self.y.shape}")
        if len(self.y) != len(self.x):
            raise DatasetError(f"{where}: {len(self.y)} labels for {len(self.x)} samples")
        self.y = self.y.astype(np.int64, copy=False)
        if self.num_classes is None:
            self.num_classes = len(np.unique(self.y))
        elif self.y.min() < 0 or self.y.max() >= self.num_classes:
            raise DatasetError(f"{where}: labels must lie in 0..{self.num_classes - 1}, "
                               f"found {self.y.min()}..{self.y.max()}")

    @property
    def is_image(self):
        """True for images (N, C, H, W), False for feature vectors (N, D)."""
        return self.x.dim() == 4

    def __len__(self):
        return len(self.x)

    def __getitem__(self, index):
        return self.x[index], index

    def subset(self, indices):
        """The samples at `indices` (e.g. a small slice for a quick run), classes kept."""
        indices = np.asarray(indices, dtype=np.int64)
        return ClusterDataset(self.x[torch.from_numpy(indices)],
                              None if self.y is None else self.y[indices], self.name,
                              self.num_classes, self.class_names, self.source)


def images_from_uint8(pixels):
    """uint8 pixels (N, C, H, W) as float32 in [0, 1], converted in one pass."""
    return torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32)).div_(255.0)


def join_parts(path, parts, *, name, num_classes=None, class_names=None):
    """One dataset from parts (uint8 images (n, C, H, W), int labels (n,) or None) read from path.

    Joining a labelled part with an unlabeled one gives a dataset without labels.
    """
    images, labels = zip(*parts)
    x = images_from_uint8(np.concatenate(images) if len(images) > 1 else images[0])
    y = None if any(part is None for part in labels) else np.concatenate(labels)
    return ClusterDataset(x, y, name, num_classes, class_names, source=str(path))
