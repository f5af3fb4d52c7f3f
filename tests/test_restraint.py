"""The restraint layer: hand-computed values, non-finite input and bad arguments (the shared
checks against the reference: tests/test_op_families.py)."""
import math

import pytest
import torch

import fastclust


def test_hand_computed():
    x = torch.tensor([[0.0, math.log(2.0)], [5.0, 5.0]], dtype=torch.float64)
    # t = [1/2, 1]: p=1 gives t / 1.5, p=2 gives t / sqrt(1.25); equal entries give 1/sqrt(2).
    torch.testing.assert_close(fastclust.restraint(x, 1.0)[0], torch.tensor([1 / 3, 2 / 3], dtype=torch.float64))
    torch.testing.assert_close(fastclust.restraint(x, 2.0),
                               torch.tensor([[0.5 / math.sqrt(1.25), 1 / math.sqrt(1.25)],
                                             [2 ** -0.5, 2 ** -0.5]], dtype=torch.float64))


def test_non_finite_propagates():
    x = torch.randn(3, 4)
    x[1, 2] = float("nan")
    out = fastclust.restraint(x)
    assert torch.isnan(out[1]).all()
    assert torch.isfinite(out[[0, 2]]).all()


@pytest.mark.parametrize("x,p,match", [
    (torch.randn(5), 2.0, "feats must be a 2-D"),
    (torch.randn(0, 3), 2.0, "feats must have at least one row"),
    (torch.randn(3, 0), 2.0, r"feats must have at least one column \(k >= 1\)"),
    (torch.randn(3, 4), 0.0, "p must be a finite number > 0"),
    (torch.randn(3, 4), -1.0, "p must be a finite number > 0"),
    (torch.randn(3, 4), float("nan"), "p must be a finite number > 0"),
    (torch.ones(3, 4, dtype=torch.long), 2.0, "feats must be float32 or float64"),
])
def test_bad_input(x, p, match):
    with pytest.raises(RuntimeError, match=match):
        fastclust.restraint(x, p)
