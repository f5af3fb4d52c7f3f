"""DAC, Deep Adaptive Image Clustering (Chang et al., ICCV 2017)."""
import torch

import fastclust

from ..augment import random_affine
from ..nn import ClusterNet, make_trunk
from .base import Method, by_input
from .params import Bool, Float, Int, Ints
from .schedules import dac_epochs, dac_thresholds


# The parameters of learning_batch.
VIEW_SPECS = {"affine": Bool(), "views": Int(1), "select_clean": Bool()}


class DAC(Method):
    """ALL-ConvNet-style network ending in k outputs, the restraint layer and the DAC loss
    (inside :func:`fastclust.dac_loss`); Adaptive Learning moves u down and l up by
    ``eta`` per epoch until they cross (51 epochs at eta = 0.009). Pairs are selected per
    mini-batch from the network's current outputs, without gradient.

    As DAC's own code trains on augmented batches, images are warped a little (``affine``:
    rotation, shift, zoom by :func:`fastclust.augment.random_affine`), and each image enters
    its batch ``views`` times, each copy warped on its own: a copy and its twin start out as a
    confident positive pair, which teaches the network invariance to the warps. With
    ``select_clean`` (DAC's procedure: the fixed network labels the pairs, then learns them),
    pairs are selected on the network's outputs for the unwarped images and learnt on the
    warped copies (``select=`` of :func:`fastclust.dac_loss`); otherwise on the warped copies
    themselves. ``passes`` passes over the data make one epoch (one step of the schedule);
    DAC's code trains each selection 5 times.

    The learning rate decays along a cosine over the schedule (``lr_decay``; DAC's paper keeps
    it constant). At a constant rate, as ``u`` falls towards ``l`` in the last third of the
    schedule, pairs of middling similarity become positives and merge clusters that were
    separate; a decaying rate lets those late, permissive thresholds move the network less, so
    the partition reached mid-schedule is kept (docs/quality.md has the runs).
    """

    name = "dac"
    defaults = {"epochs": None, "batch_size": 64, "lr": 1e-3, "lr_decay": "cosine", "eta": 0.009,
                "widths": (16, 32, 64), "depth": 1, "pool": 3, "hidden": (512, 256), "affine": True, "views": 2,
                "passes": 1, "select_clean": True}
    # tuned: on 28 px images the run stops early in the schedule, before its permissive late
    # thresholds merge clusters, and keeps the better of two seeds: a seed that settles in a poor
    # partition already shows a higher training loss when the restarts compare (docs/quality.md).
    # On small images the loss at that epoch does not rank the seeds by how they end
    # (docs/presets.md): no restarts.
    # paper: the MNIST network of the paper (widths 64, 128 at depth 3), a constant rate.
    presets = {"tuned": by_input(large={"epochs": 20, "restarts": 2}),
               "paper": by_input(widths=(64, 128), depth=3, lr_decay="none")}
    specs = {**Method.specs, "eta": Float(0, low_open=True), "widths": Ints(1), "depth": Int(1),
             "pool": Int(1), "hidden": Ints(1), **VIEW_SPECS}

    def build_model(self):
        p = self.params
        trunk = make_trunk(self.input_shape, widths=p["widths"], depth=p["depth"], pool=p["pool"],
                           hidden=p["hidden"])
        return ClusterNet(trunk, self.num_clusters)

    def schedule_epochs(self):
        return dac_epochs(self.params["eta"])

    def thresholds(self, epoch):
        return dac_thresholds(epoch, self.params["eta"])

    def pairwise_loss(self, feats, u, l, select):
        return fastclust.dac_loss(feats, u, l, select=select, return_stats=True, group=self.group)

    def epoch_settings(self, epoch):
        u, l = self.thresholds(epoch)
        return {"u": u, "l": l}

    def loss(self, model, x, epoch, step, generator):
        x, select = learning_batch(model, x, generator, self.params)
        loss, n_pos, n_neg = self.pairwise_loss(model(x), *self.thresholds(epoch), select)
        return loss, {"pos": n_pos, "neg": n_neg}


def learning_batch(logits, x, generator, params):
    """The images DAC learns on and the outputs that select their pairs (None: the learnt
    outputs themselves). With ``affine``, ``views`` stacked copies of the images ``x``, each
    warped on its own by :func:`fastclust.augment.random_affine` (unwarped copies would be
    identical rows, so views only count for warped images); with ``select_clean`` too, their
    pairs are selected by ``logits(x)`` for the clean images, without gradient.

    The clean images go through the network in a batch of their own: in one batch with the
    warped copies they would share the copies' batch-norm statistics, so the outputs that
    select the pairs would depend on the warps of other images, and the selected pairs get
    worse (AE+DAC's runs before and after the change: docs/quality.md)."""
    if not (params["affine"] and x.dim() == 4):
        return x, None
    views = int(params["views"])
    select = None
    if params["select_clean"]:
        with torch.no_grad():
            select = logits(x).repeat(views, 1)
    return random_affine(x.repeat(views, 1, 1, 1), generator.repeated(views)), select
