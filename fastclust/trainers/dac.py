"""DAC, Deep Adaptive Image Clustering (Chang et al., ICCV 2017)."""
import fastclust

from ..augment import random_affine
from ..nn import ClusterNet, make_trunk
from .base import Method
from .schedules import dac_epochs, dac_thresholds


class DAC(Method):
    """ALL-ConvNet-style network ending in k outputs, the restraint layer and the DAC loss
    (inside :func:`fastclust.dac_loss`); Adaptive Learning moves u down and l up by
    ``eta`` per epoch until they cross (51 epochs at eta = 0.009). Pairs are selected per
    mini-batch from the network's current outputs, without gradient. ``affine``: images are
    randomly rotated, shifted and zoomed a little first (``random_affine``), as DAC's own code
    trains on augmented batches."""

    name = "dac"
    defaults = {"epochs": None, "batch_size": 256, "lr": 1e-3, "eta": 0.009,
                "widths": (32, 64), "depth": 2, "hidden": (512, 256), "affine": True, "views": 1}

    def build_model(self):
        p = self.params
        trunk = make_trunk(self.input_shape, widths=p["widths"], depth=p["depth"], hidden=p["hidden"])
        return ClusterNet(trunk, self.num_clusters)

    def schedule_epochs(self):
        return dac_epochs(self.params["eta"])

    def thresholds(self, epoch):
        return dac_thresholds(epoch, self.params["eta"])

    def pairwise_loss(self, feats, u, l):
        return fastclust.dac_loss(feats, u, l, return_stats=True)

    def epoch_settings(self, epoch):
        u, l = self.thresholds(epoch)
        return {"u": u, "l": l}

    def loss(self, model, x, epoch, step, generator):
        # views > 1: each image enters the batch that many times, each copy warped on its own.
        x = x.repeat(int(self.params["views"]), *([1] * (x.dim() - 1)))
        if self.params["affine"] and x.dim() == 4:
            x = random_affine(x, generator)
        loss, n_pos, n_neg = self.pairwise_loss(model(x), *self.thresholds(epoch))
        return loss, {"pos": n_pos, "neg": n_neg}
