"""The fused losses as ``torch.nn.Module`` s, in torch.nn's conventions: the constructor holds the
hyperparameters, ``forward`` takes tensors, ``reduction`` where the loss has one. Each takes
``group=`` / ``global_batch=`` for torch.distributed as the functions do.

The pairwise losses (:class:`DACLoss`, :class:`DSECLoss`) take fixed thresholds ``u, l`` or a
:class:`ThresholdSchedule` that the training loop steps once per epoch, so that a custom loop
needs no copy of the methods' schedules::

    criterion = DACLoss.scheduled()              # DAC's Adaptive Learning, eta = 0.009
    for epoch in range(criterion.schedule.num_epochs):
        for x in loader:
            criterion(model(x)).backward(); ...
        criterion.schedule.step()

The schedule's epoch is part of the module's ``state_dict``.
"""
import math

from torch import nn

from .ops import (cluster_contrastive_loss, dac_loss, dsec_loss, nt_xent_loss, pica_loss,
                  semantic_contrastive_loss)
from .trainers.schedules import (aedac_epochs, aedac_thresholds, dac_epochs, dac_thresholds,
                                 sect_thresholds)

__all__ = ["ThresholdSchedule", "DACLoss", "DSECLoss", "PICALoss", "ClusterContrastiveLoss",
           "NTXentLoss", "SemanticContrastiveLoss"]


def _positive(name, value, allow_zero=False):
    """``value`` as a float, refused unless finite and > 0 (>= 0 with ``allow_zero``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be a finite number {'>=' if allow_zero else '>'} 0, got {value!r}")
    return float(value)


class ThresholdSchedule:
    """The thresholds ``(u, l)`` of a pairwise method, epoch by epoch: ``thresholds`` those of
    the current ``epoch`` (0-based), :meth:`step` moves to the next; ``num_epochs`` is the
    schedule's length (the thresholds of later epochs would cross)."""

    def __init__(self, thresholds, num_epochs, name):
        self._thresholds = thresholds
        self.num_epochs = int(num_epochs)
        self.name = name
        self.epoch = 0

    @classmethod
    def dac(cls, eta=0.009):
        """DAC's Adaptive Learning: ``u = 0.95 - lambda``, ``l = 0.455 + 0.1 lambda``."""
        eta = _positive("eta", eta)
        return cls(lambda epoch: dac_thresholds(epoch, eta), dac_epochs(eta), f"dac(eta={eta:g})")

    @classmethod
    def aedac(cls, eta=0.005):
        """AE+DAC's: ``u = 0.95 - xi``, ``l = 0.5 + 0.1 xi`` (count its epochs from the end of
        the autoencoder's pretraining)."""
        eta = _positive("eta", eta)
        return cls(lambda epoch: aedac_thresholds(epoch, eta), aedac_epochs(eta), f"aedac(eta={eta:g})")

    @classmethod
    def sect(cls, u=0.99, l=0.8, e=50):
        """DSEC's self-evolution schedule: u and l meet after ``e`` epochs."""
        if not -1 <= l < u <= 1:
            raise ValueError(f"sect needs -1 <= l < u <= 1, got u={u!r}, l={l!r}")
        if isinstance(e, bool) or not isinstance(e, int) or e < 1:
            raise ValueError(f"e must be an integer >= 1, got {e!r}")
        return cls(lambda epoch: sect_thresholds(epoch, u, l, e), e, f"sect(u={u:g}, l={l:g}, e={e})")

    @property
    def thresholds(self):
        return self._thresholds(self.epoch)

    def step(self):
        self.epoch += 1

    def __repr__(self):
        return f"ThresholdSchedule.{self.name} at epoch {self.epoch} of {self.num_epochs}"


class _PairwiseLoss(nn.Module):
    _loss = None

    def __init__(self, u, l, *, schedule, p, normalized, reduction, group, global_batch, **options):
        super().__init__()
        if schedule is None and (u is None or l is None):
            raise ValueError("give the thresholds u and l, or a schedule")
        if schedule is not None and (u is not None or l is not None):
            raise ValueError("give the thresholds u and l or a schedule, not both")
        if schedule is not None and not isinstance(schedule, ThresholdSchedule):
            raise TypeError(f"schedule must be a ThresholdSchedule, got {type(schedule).__name__}")
        self.u, self.l, self.schedule = u, l, schedule
        self.p = _positive("p", p)
        self.normalized, self.reduction = normalized, reduction
        self.group, self.global_batch = group, global_batch
        self.options = options

    def thresholds(self):
        """(u, l) for the current step: the fixed ones, or the schedule's."""
        return (self.u, self.l) if self.schedule is None else self.schedule.thresholds

    def forward(self, feats, select=None):
        """The loss of the batch ``feats`` (pairs selected on ``select`` when given), a scalar;
        with ``return_stats=True`` in the constructor, ``(loss, n_positive, n_negative)``."""
        return type(self)._loss(feats, *self.thresholds(), select=select, p=self.p, normalized=self.normalized,
                                reduction=self.reduction, group=self.group, global_batch=self.global_batch,
                                **self.options)

    def get_extra_state(self):
        return {"schedule_epoch": None if self.schedule is None else self.schedule.epoch}

    def set_extra_state(self, state):
        if (state["schedule_epoch"] is None) != (self.schedule is None):
            raise ValueError("the state is of a loss " + ("without" if self.schedule else "with") + " a schedule")
        if self.schedule is not None:
            self.schedule.epoch = int(state["schedule_epoch"])

    def extra_repr(self):
        where = f"u={self.u}, l={self.l}" if self.schedule is None else f"schedule={self.schedule!r}"
        return f"{where}, p={self.p}, normalized={self.normalized}, reduction={self.reduction!r}"


class DACLoss(_PairwiseLoss):
    """:func:`fastclust.dac_loss` as a module: ``DACLoss(u, l)`` or ``DACLoss(schedule=...)``;
    ``forward(feats, select=None)``."""

    _loss = staticmethod(dac_loss)

    def __init__(self, u=None, l=None, *, schedule=None, p=2.0, normalized=False, reduction="mean", eps=1e-7,
                 return_stats=False, group=None, global_batch=False):
        super().__init__(u, l, schedule=schedule, p=p, normalized=normalized, reduction=reduction, group=group,
                         global_batch=global_batch, eps=eps, return_stats=return_stats)

    @classmethod
    def scheduled(cls, eta=0.009, **kwargs):
        """DAC's own schedule (:meth:`ThresholdSchedule.dac`); AE+DAC's:
        ``DACLoss(schedule=ThresholdSchedule.aedac())``."""
        return cls(schedule=ThresholdSchedule.dac(eta), **kwargs)


class DSECLoss(_PairwiseLoss):
    """:func:`fastclust.dsec_loss` as a module: ``DSECLoss(u, l)`` or ``DSECLoss.scheduled()``;
    ``forward(feats, select=None)``."""

    _loss = staticmethod(dsec_loss)

    def __init__(self, u=None, l=None, *, schedule=None, p=2.0, normalized=False, reduction="mean",
                 return_stats=False, group=None, global_batch=False):
        super().__init__(u, l, schedule=schedule, p=p, normalized=normalized, reduction=reduction, group=group,
                         global_batch=global_batch, return_stats=return_stats)

    @classmethod
    def scheduled(cls, u=0.99, l=0.8, e=50, **kwargs):
        """DSEC's self-evolution schedule (:meth:`ThresholdSchedule.sect`)."""
        return cls(schedule=ThresholdSchedule.sect(u, l, e), **kwargs)


class PICALoss(nn.Module):
    """:func:`fastclust.pica_loss` as a module; ``forward(p1, p2)`` with the two views'
    ``(n, k)`` cluster probabilities."""

    def __init__(self, lam=2.0, *, return_parts=False, group=None, global_batch=False):
        super().__init__()
        self.lam = _positive("lam", lam, allow_zero=True)
        self.return_parts, self.group, self.global_batch = return_parts, group, global_batch

    def forward(self, p1, p2):
        return pica_loss(p1, p2, lam=self.lam, return_parts=self.return_parts, group=self.group,
                         global_batch=self.global_batch)

    def extra_repr(self):
        return f"lam={self.lam}"


class ClusterContrastiveLoss(nn.Module):
    """:func:`fastclust.cluster_contrastive_loss` (CC / DCSC) as a module; ``forward(c_a, c_b)``."""

    def __init__(self, tau=1.0, entropy_weight=1.0, *, return_parts=False, group=None, global_batch=False):
        super().__init__()
        self.tau = _positive("tau", tau)
        self.entropy_weight = _positive("entropy_weight", entropy_weight, allow_zero=True)
        self.return_parts, self.group, self.global_batch = return_parts, group, global_batch

    def forward(self, c_a, c_b):
        return cluster_contrastive_loss(c_a, c_b, tau=self.tau, entropy_weight=self.entropy_weight,
                                        return_parts=self.return_parts, group=self.group,
                                        global_batch=self.global_batch)

    def extra_repr(self):
        return f"tau={self.tau}, entropy_weight={self.entropy_weight}"


class NTXentLoss(nn.Module):
    """:func:`fastclust.nt_xent_loss` (SimCLR / CC / DCSC) as a module; ``forward(z_a, z_b)``."""

    def __init__(self, tau=0.5, *, exclude_self=True, group=None, global_batch=False):
        super().__init__()
        self.tau = _positive("tau", tau)
        self.exclude_self, self.group, self.global_batch = exclude_self, group, global_batch

    def forward(self, z_a, z_b):
        return nt_xent_loss(z_a, z_b, tau=self.tau, exclude_self=self.exclude_self, group=self.group,
                            global_batch=self.global_batch)

    def extra_repr(self):
        return f"tau={self.tau}, exclude_self={self.exclude_self}"


class SemanticContrastiveLoss(nn.Module):
    """:func:`fastclust.semantic_contrastive_loss` (DCSC) as a module;
    ``forward(p_a, p_b, q_a, q_b)``."""

    def __init__(self, tau=1.0, *, group=None, global_batch=False):
        super().__init__()
        self.tau = _positive("tau", tau)
        self.group, self.global_batch = group, global_batch

    def forward(self, p_a, p_b, q_a, q_b):
        return semantic_contrastive_loss(p_a, p_b, q_a, q_b, tau=self.tau, group=self.group,
                                         global_batch=self.global_batch)

    def extra_repr(self):
        return f"tau={self.tau}"

