"""An ImageFolder-style tree: root/<class>/<image>, one subdirectory per class.

Classes are the subdirectories in sorted order (label i = the i-th name). Images are read with
Pillow (an optional dependency: pip install "fastclust[data]"), 8-bit only, as one grayscale
channel when every image is grayscale and as RGB otherwise (alpha is dropped). All must have
one size, unless `size` is given: then each is resized to it.
"""
import numbers

import numpy as np
from tqdm import tqdm

from ..errors import ParameterError
from .dataset import DatasetError, join_parts, require_dir

SPLITS = ("all",)
EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
GRAYSCALE_MODES = {"1", "L", "LA"}


def detect(path):
    """Whether path is a directory with at least one subdirectory."""
    return path.is_dir() and any(child.is_dir() for child in path.iterdir())


def _pillow():
    try:
        from PIL import Image
    except ImportError as err:
        raise ImportError('reading an image folder needs Pillow: '
                          'pip install "fastclust[data]"') from err
    return Image


def _as_hw(size):
    def positive_int(s):
        return isinstance(s, numbers.Integral) and not isinstance(s, bool) and s >= 1

    if positive_int(size):
        return int(size), int(size)
    if isinstance(size, (tuple, list)) and len(size) == 2 and all(map(positive_int, size)):
        return int(size[0]), int(size[1])
    raise ParameterError(f"size must be a positive integer or (height, width) of positive integers, "
                         f"got {size!r}")


def list_images(path):
    """Class names and, per class, its image files, both sorted."""
    classes = sorted(child.name for child in path.iterdir()
                     if child.is_dir() and not child.name.startswith("."))
    if not classes:
        raise DatasetError(f"{path}: no class subdirectories")
    files = []
    for label, name in enumerate(classes):
        found = sorted(f for f in (path / name).iterdir()
                       if f.is_file() and f.suffix.lower() in EXTENSIONS)
        if not found:
            raise DatasetError(f"{path / name}: no images "
                               f"(extensions: {' '.join(sorted(EXTENSIONS))})")
        files += [(f, label) for f in found]
    return classes, files


def load(path, split, size=None):
    """Every image under path, labelled by its class subdirectory."""
    require_dir(path, "one subdirectory of images per class")
    Image = _pillow()
    target = None if size is None else _as_hw(size)
    classes, files = list_images(path)
    images = []
    for file, _ in tqdm(files, desc=f"reading {path.name}", unit="img", disable=None):
        try:
            with Image.open(file) as image:
                image.load()
                if image.mode.startswith(("I", "F")):
                    raise DatasetError(f"{file}: {image.mode} images (16-bit or float) are not "
                                       f"supported; convert to 8-bit")
                if target is not None:
                    image = image.resize(target[::-1], Image.Resampling.BILINEAR)
                images.append(image.convert("L" if image.mode in GRAYSCALE_MODES else "RGB"))
        except DatasetError:
            raise
        # What Pillow raises for a damaged, truncated or oversized (decompression bomb) file.
        except (OSError, ValueError, EOFError, Image.DecompressionBombError) as err:
            raise DatasetError(f"{file}: cannot read the image ({err})") from err
        if images[-1].size != images[0].size:
            (w, h), (w0, h0) = images[-1].size, images[0].size
            raise DatasetError(f"{file}: {h}x{w} pixels, but {files[0][0]} is {h0}x{w0}; "
                               f"pass size= to resize all")
    if all(image.mode == "L" for image in images):
        pixels = np.stack([np.asarray(image) for image in images])[:, None]
    else:
        pixels = np.stack([np.asarray(image.convert("RGB")) for image in images])
        pixels = pixels.transpose(0, 3, 1, 2)
    labels = np.array([label for _, label in files], dtype=np.int64)
    return join_parts(path, [(pixels, labels)], name=path.name, class_names=classes)
