"""AE+DAC: deep adaptive clustering on the code of a convolutional autoencoder."""
import torch

import fastclust

from ..distributed import global_mean
from ..nn import ConvAutoencoder
from .base import Method
from .dac import warped_views
from .schedules import aedac_epochs, aedac_thresholds


class AEDAC(Method):
    """The fully convolutional autoencoder of the paper's Table 3 with a clustering head on its
    code. The first ``pretrain_epochs`` epochs train the reconstruction loss (mean squared
    error) alone; then ``alpha * L_rec + beta * L_dac`` with ``u(xi) = 0.95 - xi``,
    ``l(xi) = 0.5 + 0.1 xi``, xi rising by ``eta`` per epoch until l > u (82 epochs at
    eta = 0.005). Adam 1e-4, batch 128. The paper does not fix the pretraining length; on
    digits 50 epochs gave ACC 0.66 where 10 gave 0.50 (seed 0).

    After pretraining, ``affine``, ``views`` and ``select_clean`` work as in :class:`DAC`: the
    DAC term is learnt on ``views`` warped copies of each image, its pairs selected on the
    clean images' outputs, and the reconstruction term covers clean and warped images. Clean
    and warped images go through the network in one batch, whose batch-norm statistics cover
    both. The learning rate decays along a cosine over the run
    (``lr_decay``, as for DAC). On mnist5k (seed 0) the paper's procedure (no warps, constant
    rate) ended at ACC 0.46; warped views alone peaked at 0.75 and fell to 0.30 late in the
    schedule; with the decay too the run ends at 0.75."""

    name = "aedac"
    defaults = {"epochs": None, "batch_size": 128, "lr": 1e-4, "lr_decay": "cosine", "eta": 0.005, "alpha": 0.5,
                "beta": 0.3, "pretrain_epochs": 50, "channels": (8, 16, 32, 64), "head_hidden": 64,
                "affine": True, "views": 2, "select_clean": True}

    @property
    def unused_parameters(self):
        return int(self.params["pretrain_epochs"]) > 0  # no gradient to the head while pretraining

    def build_model(self):
        if len(self.input_shape) != 3:
            raise ValueError("aedac clusters images: its autoencoder is convolutional, but the "
                             f"samples have shape {self.input_shape}; use dsec for feature vectors")
        return ConvAutoencoder(self.input_shape, self.num_clusters, tuple(self.params["channels"]),
                               int(self.params["head_hidden"]))

    def schedule_epochs(self):
        return int(self.params["pretrain_epochs"]) + aedac_epochs(self.params["eta"])

    def thresholds(self, epoch):
        """(u, l) of a clustering epoch, or None during pretraining."""
        xi_epoch = epoch - int(self.params["pretrain_epochs"])
        return aedac_thresholds(xi_epoch, self.params["eta"]) if xi_epoch >= 0 else None

    def epoch_settings(self, epoch):
        thresholds = self.thresholds(epoch)
        return {"phase": "pretrain"} if thresholds is None else {"u": thresholds[0], "l": thresholds[1]}

    def loss(self, model, x, epoch, step, generator):
        thresholds = self.thresholds(epoch)
        warped = thresholds is not None and self.params["affine"]
        inputs = torch.cat([x, warped_views(x, generator, self.params["views"])]) if warped else x
        logits, reconstruction = model(inputs)
        rec = global_mean((reconstruction.float() - inputs.float()).square(), self.group)
        if thresholds is None:
            return rec, {"rec": rec.detach()}
        select = None
        if warped:
            clean, logits = logits[:len(x)], logits[len(x):]
            if self.params["select_clean"]:
                select = clean.detach().repeat(int(self.params["views"]), 1)
        dac, n_pos, n_neg = fastclust.dac_loss(logits, *thresholds, select=select, return_stats=True,
                                               group=self.group)
        loss = self.params["alpha"] * rec + self.params["beta"] * dac
        return loss, {"rec": rec.detach(), "dac": dac.detach(), "pos": n_pos, "neg": n_neg}

    def logits(self, model, x):
        return model(x)[0]
