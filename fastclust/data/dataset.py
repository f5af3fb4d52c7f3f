"""The in-memory dataset every loader returns, and the error every loader raises on bad data."""
from dataclasses import dataclass

import numpy as np
import torch


class DatasetError(ValueError):
    """Data on disk that cannot be loaded as it is: the message names the file and the fault."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """A file or directory a dataset needs is missing."""


def require_file(path):
    """`path` as an existing file, else DatasetNotFoundError naming it."""
    if not path.is_file():
        raise DatasetNotFoundError(f"{path}: no such file")
    return path


@dataclass(eq=False)
class ClusterDataset(torch.utils.data.Dataset):
    """A whole dataset held in memory, as the trainers consume it.

    x: float32 tensor, images (N, C, H, W) scaled to [0, 1] or feature vectors (N, D).
    y: ground-truth labels as an int64 array (N,), or None when unknown.
    name: a short name for logs and reports.
    num_classes: number of ground-truth classes (from class_names, else the distinct labels).
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
        if not torch.isfinite(self.x).all():
            raise DatasetError(f"{where}: the data holds non-finite values (NaN or inf)")
        if self.y is not None:
            self.y = np.asarray(self.y)
            if self.y.ndim != 1 or not np.issubdtype(self.y.dtype, np.integer):
                raise DatasetError(f"{where}: labels must be a 1-D integer array, "
                                   f"got {self.y.dtype} of shape {self.y.shape}")
            if len(self.y) != len(self.x):
                raise DatasetError(f"{where}: {len(self.y)} labels for {len(self.x)} samples")
            self.y = self.y.astype(np.int64, copy=False)
        if self.num_classes is None:
            if self.class_names is not None:
                self.num_classes = len(self.class_names)
            elif self.y is not None:
                self.num_classes = len(np.unique(self.y))

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
    return torch.from_numpy(np.ascontiguousarray(pixels)).to(torch.float32).div_(255.0)
