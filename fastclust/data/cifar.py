"""CIFAR-10 and CIFAR-100 "python version" pickles (the cifar-10-batches-py and cifar-100-python
directories of the official archives).

CIFAR-100 is labelled with its 20 superclasses (coarse labels), the ground truth of the
clustering papers. The pickles are read by an unpickler that builds numpy arrays and nothing
else, so a tampered file cannot run code.
"""
import codecs
import io
import math
import pickle
from dataclasses import dataclass

import numpy as np

from .dataset import DatasetError, join_parts, read_bytes, require_dir

SPLITS = ("all", "train", "test")


class _PendingArray:
    """What numpy's array reconstruction returns here: no array yet. Unlike numpy's
    ``_reconstruct`` (which allocates an uninitialised array of any claimed shape), it becomes an
    array only when its pickle gives it exactly the bytes its shape and dtype need."""

    def __init__(self, *args):
        self.array = None

    def __setstate__(self, state):
        # (version, shape, dtype, is_fortran, raw bytes), or without the version (numpy < 1.x).
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise pickle.UnpicklingError("an array state that is not numpy's")
        shape, dtype, fortran, raw = state[-4:]
        if not isinstance(dtype, np.dtype):
            raise pickle.UnpicklingError(f"an array whose dtype is {type(dtype).__name__}")
        if dtype.hasobject:
            raise pickle.UnpicklingError(f"arrays of dtype {dtype} are not read")
        if not (isinstance(shape, tuple) and all(isinstance(d, int) and d >= 0 for d in shape)):
            raise pickle.UnpicklingError(f"an array of shape {shape!r}")
        if not isinstance(raw, (bytes, bytearray)):
            raise pickle.UnpicklingError("an array without its raw bytes")
        expected = math.prod(shape) * dtype.itemsize
        if len(raw) != expected:
            raise pickle.UnpicklingError(f"an array of shape {shape} and dtype {dtype} needs {expected} "
                                         f"bytes, its pickle gives {len(raw)}")
        self.array = np.frombuffer(raw, dtype).reshape(shape, order="F" if fortran else "C").copy()


def _latin1(text, encoding):
    # numpy's pickles from Python 2 carry their bytes as latin-1 text; no other codec is run
    # (chained expanding codecs would let a small file claim any size).
    if encoding != "latin1":
        raise pickle.UnpicklingError(f"refusing to run the codec {encoding!r}")
    return codecs.encode(text, "latin1")


class _ArraysOnlyUnpickler(pickle.Unpickler):
    # What numpy arrays pickled by Python 2 or 3, numpy 1 or 2, need to rebuild; nothing more.
    ALLOWED = {("numpy.core.multiarray", "_reconstruct"): _PendingArray,
               ("numpy._core.multiarray", "_reconstruct"): _PendingArray,
               ("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
               ("_codecs", "encode"): _latin1}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return self.ALLOWED[module, name]


def _resolved(obj, arrays):
    """``obj`` with each _PendingArray replaced by its array (collected in ``arrays``, by id)."""
    if isinstance(obj, _PendingArray):
        if obj.array is None:
            raise pickle.UnpicklingError("an array whose data the file never gives")
        arrays[id(obj)] = obj.array
        return obj.array
    if isinstance(obj, dict):
        return {key: _resolved(value, arrays) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_resolved(value, arrays) for value in obj)
    return obj


def read_pickle(path):
    """The dict in a CIFAR pickle, keys as str (the official files, from Python 2, use bytes)."""
    raw = read_bytes(path)
    arrays = {}
    try:
        content = _resolved(_ArraysOnlyUnpickler(io.BytesIO(raw), encoding="bytes").load(), arrays)
    except Exception as err:  # whatever a damaged or crafted pickle makes the unpickler raise
        raise DatasetError(f"{path}: not a readable CIFAR pickle ({type(err).__name__}: {err})") from None
    claimed = sum(array.nbytes for array in arrays.values())
    if claimed > len(raw):
        raise DatasetError(f"{path}: its arrays claim {claimed} bytes, more than the {len(raw)} bytes "
                           f"of the file")
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
