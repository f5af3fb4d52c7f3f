"""CIFAR-10 and CIFAR-100 "python version" pickles (the cifar-10-batches-py and cifar-100-python
directories of the official archives).

CIFAR-100 is labelled with its 20 superclasses (coarse labels), the ground truth of the
clustering papers. The pickles are read by an unpickler that builds numpy arrays and nothing
else, so a tampered file cannot run code.
"""
import io
import pickle
from dataclasses import dataclass

import numpy as np

from .dataset import DatasetError, join_parts, read_bytes, require_dir

SPLITS = ("all", "train", "test")


class _ArraysOnlyUnpickler(pickle.Unpickler):
    # What numpy arrays pickled by Python 2 or 3, numpy 1 or 2, need to rebuild; nothing more.
    ALLOWED = {("numpy.core.multiarray", "_reconstruct"),
               ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def read_pickle(path):
    """The dict in a CIFAR pickle, keys as str (the official files, from Python 2, use bytes)."""
    raw = read_bytes(path)
    try:
        content = _ArraysOnlyUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as err:
        raise DatasetError(f"{path}: not a readable CIFAR pickle ({err})") from err
    if not isinstance(content, dict):
        raise DatasetError(f"{path}: expected a pickled dict, got {type(content).__name__}")
    return {key.decode() if isinstance(key, bytes) else key: value
            for key, value in content.items()}


@dataclass(frozen=True)
class Layout:
    """Where one CIFAR variant keeps its batches, labels and class names."""

    name: str
    parts: dict          # split -> batch files
    labels_key: str
    meta_file: str
    names_key: str
    num_classes: int

    def detect(self, path):
        """Whether path is a directory holding this variant's batches."""
        return path.is_dir() and all((path / part).is_file() for part in self.parts["test"])

    def read_batch(self, path):
        """Images (n, 3, 32, 32) and labels of one batch file."""
        batch = read_pickle(path)
        for key in ("data", self.labels_key):
            if key not in batch:
                raise DatasetError(f"{path}: no {key!r} entry (found {sorted(map(str, batch))})")
        data, labels = np.asarray(batch["data"]), np.asarray(batch[self.labels_key])
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise DatasetError(f"{path}: 'data' must be uint8 of shape (n, 3072), "
                               f"got {data.dtype} {data.shape}")
        if labels.shape != (len(data),):
            raise DatasetError(f"{path}: {labels.size} labels for {len(data)} images")
        if len(labels) and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise DatasetError(f"{path}: labels must lie in 0..{self.num_classes - 1}, "
                               f"found {labels.min()}..{labels.max()}")
        return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)

    def class_names(self, directory):
        """The class names from the meta file, or None when it is absent."""
        meta = directory / self.meta_file
        if not meta.is_file():
            return None
        names = read_pickle(meta).get(self.names_key)
        if names is None or len(names) != self.num_classes:
            raise DatasetError(f"{meta}: expected {self.num_classes} names "
                               f"under {self.names_key!r}")
        return [n.decode() if isinstance(n, bytes) else str(n) for n in names]

    def load(self, path, split):
        """The batches of `split` ("all" joins train and test) of the directory `path`."""
        require_dir(path, f"the {self.name} batches ({', '.join(self.parts['test'])}, ...)")
        files = self.parts["train"] + self.parts["test"] if split == "all" else self.parts[split]
        parts = [self.read_batch(path / f) for f in files]
        return join_parts(path, parts, name=self.name, num_classes=self.num_classes,
                          class_names=self.class_names(path))


CIFAR10 = Layout("cifar10", {"train": tuple(f"data_batch_{i}" for i in range(1, 6)),
                             "test": ("test_batch",)},
                 "labels", "batches.meta", "label_names", 10)
CIFAR100 = Layout("cifar100", {"train": ("train",), "test": ("test",)},
                  "coarse_labels", "meta", "coarse_label_names", 20)
