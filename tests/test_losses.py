"""fastclust.losses: the fused losses as nn.Modules, equal to the functions they wrap and to the
eager twins, with the methods' threshold schedules carried by the pairwise ones."""
import pytest
import torch

import fastclust
from fastclust import reference
from fastclust.losses import (ClusterContrastiveLoss, DACLoss, DSECLoss, NTXentLoss, PICALoss,
                              SemanticContrastiveLoss, ThresholdSchedule)
from fastclust.trainers.schedules import aedac_thresholds, dac_thresholds, sect_thresholds


def _x(n=12, k=5, seed=0):
    return torch.randn(n, k, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _p(n=12, k=5, seed=0):
    return (_x(n, k, seed) * 2).softmax(1)


MODULES = [
    (DACLoss(0.8, 0.3), (_x(),), lambda f: reference.dac_loss(f, 0.8, 0.3)),
    (DACLoss(0.8, 0.3, reduction="sum", p=3.0), (_x(),),
     lambda f: reference.dac_loss(f, 0.8, 0.3, reduction="sum", p=3.0)),
    (DSECLoss(0.8, 0.3), (_x(),), lambda f: reference.dsec_loss(f, 0.8, 0.3)),
    (PICALoss(lam=1.5), (_p(), _p(seed=1)), lambda a, b: reference.pica_loss(a, b, lam=1.5)),
    (ClusterContrastiveLoss(tau=0.7, entropy_weight=0.5), (_p(), _p(seed=1)),
     lambda a, b: reference.cluster_contrastive_loss(a, b, tau=0.7, entropy_weight=0.5)),
    (NTXentLoss(tau=0.3), (_x(), _x(seed=1)), lambda a, b: reference.nt_xent_loss(a, b, tau=0.3)),
    (SemanticContrastiveLoss(tau=0.6), (_x(), _x(seed=1), _x(seed=2), _x(seed=3)),
     lambda *v: reference.semantic_contrastive_loss(*v, tau=0.6)),
]


@pytest.mark.parametrize("module, inputs, twin", MODULES, ids=lambda v: type(v).__name__ if isinstance(v, torch.nn.Module) else "")
def test_modules_equal_the_eager_twins_forward_and_backward(module, inputs, twin):
    leaves = [t.clone().requires_grad_() for t in inputs]
    got = module(*leaves)
    want = twin(*inputs)
    torch.testing.assert_close(got, want)
    got.backward()
    twin_leaves = [t.clone().requires_grad_() for t in inputs]
    twin(*twin_leaves).backward()
    for a, b in zip(leaves, twin_leaves):
        torch.testing.assert_close(a.grad, b.grad)
    assert got.item() != 0


def test_pairwise_modules_take_a_selector_and_return_stats():
    feats, select = _x(), _x(seed=4)
    loss, pos, neg = DACLoss(0.8, 0.3, return_stats=True)(feats, select)
    want = fastclust.dac_loss(feats, 0.8, 0.3, select=select, return_stats=True)
    torch.testing.assert_close((loss, pos, neg), want)


def test_schedules_follow_the_methods_and_live_in_the_state_dict():
    criterion = DACLoss.scheduled(eta=0.02)
    assert criterion.schedule.num_epochs == 23  # (0.95 - 0.455) / (1.1 * 0.02) = 22.5: epochs 0-22
    for epoch in range(3):
        assert criterion.thresholds() == dac_thresholds(epoch, 0.02)
        torch.testing.assert_close(criterion(_x()), fastclust.dac_loss(_x(), *dac_thresholds(epoch, 0.02)))
        criterion.schedule.step()
    resumed = DACLoss.scheduled(eta=0.02)
    resumed.load_state_dict(criterion.state_dict())
    assert resumed.schedule.epoch == 3 and resumed.thresholds() == dac_thresholds(3, 0.02)
    assert DSECLoss.scheduled(e=10).thresholds() == sect_thresholds(0, 0.99, 0.8, 10)
    aedac = DACLoss(schedule=ThresholdSchedule.aedac())
    aedac.schedule.step()
    assert aedac.thresholds() == aedac_thresholds(1)
    assert "schedule=ThresholdSchedule.dac(eta=0.02) at epoch 3 of 23" in repr(criterion)
    assert repr(NTXentLoss(0.2)) == "NTXentLoss(tau=0.2, exclude_self=True)"
    with pytest.raises(ValueError, match="with a schedule"):
        DACLoss(0.9, 0.5).load_state_dict(criterion.state_dict())


@pytest.mark.parametrize("build, match", [
    (lambda: DACLoss(), "give the thresholds u and l, or a schedule"),
    (lambda: DACLoss(0.9, 0.5, schedule=ThresholdSchedule.dac()), "not both"),
    (lambda: NTXentLoss(tau=0), "tau must be a finite number > 0"),
    (lambda: PICALoss(lam=-1), "lam must be a finite number >= 0"),
    (lambda: ThresholdSchedule.sect(u=0.5, l=0.6), "sect needs -1 <= l < u <= 1"),
    (lambda: ThresholdSchedule.dac(eta=float("nan")), "eta must be a finite number > 0"),
])
def test_bad_hyperparameters_are_refused_at_construction(build, match):
    with pytest.raises(ValueError, match=match):
        build()
