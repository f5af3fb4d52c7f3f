"""What the augmentation-based methods (PICA, DCSC) share: the trunk and the augment pipeline."""
from ..augment import Augment
from ..errors import ParameterError
from ..nn import make_trunk
from .base import Method
from .params import PROBABILITY, Bool, Choice, Float, Int, Ints, Optional, Range

AUGMENT_DEFAULTS = {"trunk": "resnet", "widths": (32, 64, 128), "blocks": 1, "pool": 1, "sobel": False,
                    "affine_p": None, "crop_scale": (0.5, 1.0), "flip_p": None, "jitter_p": 0.8,
                    "grayscale_p": 0.2, "blur_p": 0.5}
AUGMENT_SPECS = {"epochs": Int(1), "trunk": Choice("conv", "resnet"), "widths": Ints(1), "blocks": Int(1),
                 "pool": Int(1), "sobel": Bool(),
                 "affine_p": Optional(PROBABILITY, "1 for 1-channel images, 0 for colour ones"),
                 "crop_scale": Range(Float(0, 1, low_open=True)),
                 "flip_p": Optional(PROBABILITY, "0.5 for colour images, 0 for 1-channel ones"),
                 "jitter_p": PROBABILITY, "grayscale_p": PROBABILITY, "blur_p": PROBABILITY}


def _by_channels(value, input_shape, colour, gray):
    """An augmentation probability given as None: ``colour`` for 3-channel images, else ``gray``."""
    if value is not None:
        return float(value)
    return colour if input_shape[0] == 3 else gray


class AugmentedMethod(Method):
    """``flip_p`` None flips colour images with probability 0.5 and never 1-channel ones
    (handwriting and characters change meaning when mirrored); ``affine_p`` None warps every
    1-channel image (rotation, shift, zoom: the variation of handwriting, which crops, flips and
    colour changes do not cover; DCSC on mnist5k needs it, docs/quality.md) and no colour image."""

    def __init__(self, input_shape, num_clusters, params=None, preset="tuned"):
        super().__init__(input_shape, num_clusters, params, preset)
        p = self.params
        self.augment = Augment(affine_p=_by_channels(p["affine_p"], self.input_shape, 0.0, 1.0),
                               crop_scale=tuple(p["crop_scale"]),
                               flip_p=_by_channels(p["flip_p"], self.input_shape, 0.5, 0.0),
                               jitter_p=p["jitter_p"], grayscale_p=p["grayscale_p"], blur_p=p["blur_p"])

    def check_params(self):
        if len(self.input_shape) != 3:
            raise ParameterError(f"{self.name} trains on augmented images, but the samples have shape "
                                 f"{self.input_shape}; use dsec for feature vectors")

    def trunk(self):
        p = self.params
        return make_trunk(self.input_shape, kind=p["trunk"], widths=p["widths"], depth=p["blocks"],
                          sobel=p["sobel"], pool=p["pool"])

    def schedule_epochs(self):
        raise ParameterError(f"{self.name} has no threshold schedule: give the number of epochs")
