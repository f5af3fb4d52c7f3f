"""Threshold schedules of the pairwise methods, as pure functions of the epoch (0-based).

All three are one linear law: ``lambda = epoch * eta``, ``u = u0 - lambda``,
``l = l0 + slope * lambda``; training stops before the epoch at which ``l`` would exceed ``u``.
"""
import math


def linear_thresholds(epoch, *, u0, l0, eta, slope):
    lam = epoch * eta
    # Rounding off the float error lets u and l meet exactly at a crossing epoch: DAC at
    # eta = 0.005 has u = 0.4999999999999999 < l = 0.5000000000000001 there, which the loss
    # rejects.
    return round(u0 - lam, 12), round(l0 + slope * lam, 12)


def epochs_until_crossing(*, u0, l0, eta, slope):
    """The number of epochs whose thresholds keep ``l <= u``: the first epoch with
    ``l0 + slope * t * eta > u0 - t * eta``."""
    # Integer arithmetic would be exact; a tiny tolerance does the same for float inputs.
    crossing = (u0 - l0) / ((1 + slope) * eta)
    return math.floor(crossing + 1e-9) + 1


def dac_thresholds(epoch, eta=0.009):
    """DAC: ``u(lambda) = 0.95 - lambda``, ``l(lambda) = 0.455 + 0.1 lambda``."""
    return linear_thresholds(epoch, u0=0.95, l0=0.455, eta=eta, slope=0.1)


def dac_epochs(eta=0.009):
    return epochs_until_crossing(u0=0.95, l0=0.455, eta=eta, slope=0.1)


def aedac_thresholds(epoch, eta=0.005):
    """AE+DAC: ``u(xi) = 0.95 - xi``, ``l(xi) = 0.5 + 0.1 xi``."""
    return linear_thresholds(epoch, u0=0.95, l0=0.5, eta=eta, slope=0.1)


def aedac_epochs(eta=0.005):
    return epochs_until_crossing(u0=0.95, l0=0.5, eta=eta, slope=0.1)


def sect_thresholds(epoch, u0=0.99, l0=0.8, e=50):
    """DSEC's self-evolution schedule: ``u -= eta``, ``l += eta`` per epoch with
    ``eta = (u0 - l0) / (2 e)``, so that u and l meet after e epochs."""
    return linear_thresholds(epoch, u0=u0, l0=l0, eta=(u0 - l0) / (2 * e), slope=1.0)
