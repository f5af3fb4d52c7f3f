"""NumPy arrays: a .npy file or a .npz archive of images or feature vectors, labels optional.

Samples (x):
  (N, D)                   feature vectors, kept as they are (as float32)
  (N, H, W)                grayscale images
  (N, C, H, W), C in 1, 3  images; (N, H, W, C) is recognised by its last dimension
Images are uint8 (divided by 255) or floats already in [0, 1].

Labels (y), optional: in a .npz the arrays are "x" (or "images") and "y" (or "labels"); beside
foo.npy a file foo_labels.npy holds them. Integer labels are kept; other labels (e.g. strings)
become the index of their value among the sorted distinct values, which are the class names.
"""
import zipfile

import numpy as np
import torch

from .dataset import ClusterDataset, DatasetError, images_from_uint8, require_file

SPLITS = ("all",)
IMAGE_CHANNELS = (1, 3)
SAMPLE_KEYS, LABEL_KEYS = ("x", "images"), ("y", "labels")


def detect(path):
    """Whether path is a .npy or .npz file."""
    return path.is_file() and path.suffix.lower() in (".npy", ".npz")


def _guarded(path, read):
    """read(path), numpy's errors turned into a DatasetError naming the file."""
    require_file(path)
    try:
        return read(path)
    except DatasetError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        # numpy takes a file without the .npy magic for a pickle and advises loading it unsafely.
        reason = ("not an array of numbers (pickled objects, or not a .npy file at all)"
                  if "allow_pickle" in str(err) else err)
        raise DatasetError(f"{path}: cannot read the arrays ({reason})") from err


def _read_npy(path):
    array = np.load(path, allow_pickle=False)
    if not isinstance(array, np.ndarray):
        raise DatasetError(f"{path}: expected a single .npy array, found an archive")
    return array


def _read_npz(path):
    with np.load(path, allow_pickle=False) as archive:
        x_key = next((k for k in SAMPLE_KEYS if k in archive.files), None)
        if x_key is None:
            raise DatasetError(f"{path}: no {' or '.join(map(repr, SAMPLE_KEYS))} array "
                               f"(found {', '.join(sorted(archive.files)) or 'none'})")
        y_key = next((k for k in LABEL_KEYS if k in archive.files), None)
        return archive[x_key], None if y_key is None else archive[y_key]


def read_arrays(path):
    """(samples, labels or None, the file the labels came from) from a .npz archive, or from a
    .npy file and its sidecar."""
    if path.suffix.lower() == ".npz":
        return *_guarded(path, _read_npz), path
    sidecar = path.with_name(f"{path.stem}_labels.npy")
    labels = _guarded(sidecar, _read_npy) if sidecar.is_file() else None
    return _guarded(path, _read_npy), labels, sidecar


def as_samples(path, x):
    """x as a float32 tensor: feature vectors (N, D) as they are, images (N, C, H, W) in [0, 1]."""
    if x.dtype.kind not in "biuf":
        raise DatasetError(f"{path}: samples must be numeric, got dtype {x.dtype}")
    if x.ndim == 2:
        return torch.from_numpy(x.astype(np.float32))
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim != 4:
        raise DatasetError(f"{path}: samples must be (N, D) features or (N, [C,] H, W) images, "
                           f"got shape {x.shape}")
    elif x.shape[1] not in IMAGE_CHANNELS:
        if x.shape[3] not in IMAGE_CHANNELS:
            raise DatasetError(f"{path}: images (N, C, H, W) or (N, H, W, C) need C in "
                               f"{IMAGE_CHANNELS}, got shape {x.shape}")
        x = x.transpose(0, 3, 1, 2)
    if x.dtype == np.uint8:
        return images_from_uint8(x)
    if x.dtype.kind != "f":
        raise DatasetError(f"{path}: integer images must be uint8 (0-255), got {x.dtype}")
    images = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    # NaN compares false here; ClusterDataset reports it as non-finite.
    if images.min() < 0 or images.max() > 1:
        raise DatasetError(f"{path}: float images must lie in [0, 1], found "
                           f"{images.min().item():g}..{images.max().item():g}")
    return images


def as_labels(path, y):
    """Integer labels, and class names when the labels are not integers."""
    if y.ndim != 1:
        raise DatasetError(f"{path}: labels must be 1-D, got shape {y.shape}")
    if y.dtype.kind in "iu":
        return y.astype(np.int64), None
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
            raise DatasetError(f"{path}: float labels must be whole numbers")
        return y.astype(np.int64), None
    names, labels = np.unique(y, return_inverse=True)
    return labels.astype(np.int64), [str(n) for n in names]


def load(path, split):
    """The samples (and labels) of a .npy or .npz file."""
    x, y, labels_path = read_arrays(path)
    samples = as_samples(path, x)
    labels, class_names = (None, None) if y is None else as_labels(labels_path, y)
    if labels is not None and len(labels) != len(samples):
        raise DatasetError(f"{labels_path}: {len(labels)} labels for the {len(samples)} samples "
                           f"of {path}")
    return ClusterDataset(samples, labels, path.stem, class_names=class_names, source=str(path))
