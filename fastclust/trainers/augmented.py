"""What the augmentation-based methods (PICA, DCSC) share: ResNet trunk and the augment pipeline."""
from ..augment import Augment
from ..nn import make_trunk
from .base import Method

AUGMENT_DEFAULTS = {"widths": (32, 64, 128), "blocks": 1, "sobel": False, "crop_scale": (0.5, 1.0),
                    "flip_p": None, "jitter_p": 0.8, "grayscale_p": 0.2, "blur_p": 0.5}


class AugmentedMethod(Method):
    """``flip_p`` None flips colour images with probability 0.5 and never 1-channel ones
    (handwriting and characters change meaning when mirrored)."""

    def __init__(self, input_shape, num_clusters, params=None):
        super().__init__(input_shape, num_clusters, params)
        if len(self.input_shape) != 3:
            raise ValueError(f"{self.name} trains on augmented images, but the samples have shape "
                             f"{self.input_shape}; use dsec for feature vectors")
        p = self.params
        flip_p = p["flip_p"] if p["flip_p"] is not None else (0.5 if self.input_shape[0] == 3 else 0.0)
        self.augment = Augment(crop_scale=tuple(p["crop_scale"]), flip_p=flip_p, jitter_p=p["jitter_p"],
                               grayscale_p=p["grayscale_p"], blur_p=p["blur_p"])

    def trunk(self):
        p = self.params
        return make_trunk(self.input_shape, kind="resnet", widths=p["widths"], depth=p["blocks"],
                          sobel=p["sobel"])

    def schedule_epochs(self):
        raise ValueError(f"{self.name} has no threshold schedule: give the number of epochs")
