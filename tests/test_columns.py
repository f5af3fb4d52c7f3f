"""asv_similarity, pica_loss, cluster_contrastive_loss and their registered ops."""
import math

import pytest
import torch

import fastclust
from fastclust import reference
from helpers import assert_accurate, devices, needs_cuda

OPS = torch.ops.fastclust
PICA, CLUSTER_CONTRASTIVE = reference.PICA, reference.CLUSTER_CONTRASTIVE
FRONT_ENDS = {
    "asv": (fastclust.asv_similarity, reference.asv_similarity, {}),
    "pica": (fastclust.pica_loss, reference.pica_loss, {"lam": 2.0, "return_parts": True}),
    "cc": (fastclust.cluster_contrastive_loss, reference.cluster_contrastive_loss,
           {"tau": 0.5, "entropy_weight": 1.5, "return_parts": True}),
}
front_ends = pytest.mark.parametrize("name", list(FRONT_ENDS))
LOSSES = ["pica", "cc"]
# k = 700 over-clustering: the 2k x 2k Gram of cluster_contrastive_loss at n = 768 costs
# seconds on a small CPU, so it runs at n <= 127 there.
REFERENCE_CASES = [(name, n, k) for name in FRONT_ENDS for n in (1, 3, 127, 768) for k in (2, 10, 70, 700)
                   if not (name == "cc" and k == 700 and n > 127)]


def views(n, k, dtype=torch.float64, device="cpu", seed=0, probabilities=True):
    """Two views of n samples: cluster probabilities (softmax of scaled logits) by default."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(2):
        x = torch.randn(n, k, generator=g, dtype=torch.float64) * 3
        out.append((x.softmax(1) if probabilities else x).to(dtype=dtype, device=device))
    return out


def outputs_and_grads(fn, a, b, kwargs, seed=1):
    """The op's outputs, and the gradients of a fixed random combination of them."""
    a = a.detach().requires_grad_()
    b = b.detach().requires_grad_()
    out = fn(a, b, **kwargs)
    outs = out if isinstance(out, tuple) else (out,)
    g = torch.Generator().manual_seed(seed)
    weights = [torch.randn(o.shape, generator=g, dtype=torch.float64).to(o) for o in outs]
    total = sum((o * w).sum() for o, w in zip(outs, weights))
    grads = torch.autograd.grad(total, (a, b), allow_unused=True)  # PICA's entropy ignores p2
    grads = [torch.zeros_like(x) if g is None else g for g, x in zip(grads, (a, b))]
    return [o.detach() for o in outs], grads


def assert_matches(got, want, rtol, atol):
    for g, w in zip(got[0] + got[1], want[0] + want[1]):
        torch.testing.assert_close(g, w, rtol=rtol, atol=atol)


@pytest.mark.parametrize("full_gram", [False, True])
@pytest.mark.parametrize("n,k", [(1, 1), (5, 3), (300, 17), (1000, 70)])
def test_column_stats_matches_reference(n, k, full_gram):
    a, b = views(n, k, probabilities=False)
    got = outputs_and_grads(OPS.column_stats, a, b, {"full_gram": full_gram})
    want = outputs_and_grads(reference.column_stats, a, b, {"full_gram": full_gram})
    assert_matches(got, want, rtol=1e-10, atol=1e-11)
    gram = got[0][0]
    if full_gram:
        assert torch.equal(gram, gram.T)  # the lower triangle mirrors the upper one exactly


def test_loss_parts_add_up_and_backpropagate_separately():
    a, b = views(50, 6)
    for fn, ref, kwargs, weight in [
            (fastclust.pica_loss, reference.pica_loss, {"lam": 0.7}, 0.7),
            (fastclust.cluster_contrastive_loss, reference.cluster_contrastive_loss,
             {"entropy_weight": 0.3, "tau": 2.0}, 0.3)]:
        loss, ce, ent = fn(a, b, return_parts=True, **kwargs)
        torch.testing.assert_close(loss, ce + weight * ent, rtol=1e-12, atol=0)
        torch.testing.assert_close(fn(a, b, **kwargs), loss, rtol=0, atol=0)
        for part in (1, 2):  # each part alone, through the same op
            got = outputs_and_grads(lambda x, y: fn(x, y, return_parts=True, **kwargs)[part], a, b, {})
            want = outputs_and_grads(lambda x, y: ref(x, y, return_parts=True, **kwargs)[part], a, b, {})
            assert_matches(got, want, rtol=1e-9, atol=1e-12)


def test_pica_hand_computed_2x2():
    # p1 = [[3, 0], [0, 1]]: columns (3, 0) and (0, 1), i.e. e1 and e2 once normalised.
    # p2 = [[0.7, 0.3], [0, 0.4]]: columns (0.7, 0) -> e1 and (0.3, 0.4) -> (0.6, 0.8).
    # M = [[cos(e1, e1), cos(e1, (.6, .8))], [cos(e2, e1), cos(e2, (.6, .8))]] = [[1, .6], [0, .8]].
    # Row 0, target 0: log(e^1 + e^.6) - 1 = log(4.54040) - 1 = 0.51302
    # Row 1, target 1: log(e^0 + e^.8) - .8 = log(3.22554) - .8 = 0.37110
    # cross_entropy = (0.51302 + 0.37110) / 2 = 0.44206
    # z = column sums of p1 / total = (3, 1) / 4 = (.75, .25);
    # H = -(.75 log .75 + .25 log .25) = 0.215762 + 0.346574 = 0.562335
    # entropy_term = log 2 - H = 0.693147 - 0.562335 = 0.130812
    # loss = 0.44206 + 2 * 0.130812 = 0.70368 (lam = 2)
    p1 = torch.tensor([[3.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    p2 = torch.tensor([[0.7, 0.3], [0.0, 0.4]], dtype=torch.float64)
    M = fastclust.asv_similarity(p1, p2)
    torch.testing.assert_close(M, torch.tensor([[1.0, 0.6], [0.0, 0.8]], dtype=torch.float64))
    loss, ce, ent = fastclust.pica_loss(p1, p2, lam=2.0, return_parts=True)
    want_ce = ((math.log(math.exp(1) + math.exp(0.6)) - 1) + (math.log(1 + math.exp(0.8)) - 0.8)) / 2
    want_ent = math.log(2) + 0.75 * math.log(0.75) + 0.25 * math.log(0.25)
    assert ce.item() == pytest.approx(want_ce, rel=1e-12) and ce.item() == pytest.approx(0.44206, abs=1e-5)
    assert ent.item() == pytest.approx(want_ent, rel=1e-12) and ent.item() == pytest.approx(0.130812, abs=1e-6)
    assert loss.item() == pytest.approx(want_ce + 2 * want_ent, rel=1e-12)
    assert loss.item() == pytest.approx(0.70368, abs=1e-5)


def test_cluster_contrastive_hand_computed():
    # k = 2, n = 2, c_a = I, c_b = I: columns e1, e2, e1, e2. Column 0's twin is column 2
    # (cosine 1), its other candidate column 1 / 3 (cosine 0): with tau = 1 every row's
    # cross-entropy is log(e^1 + e^0 + e^0) - 1 = log(e + 2) - 1. Column sums (1, 1): H = log 2,
    # so both views' entropy terms vanish.
    eye = torch.eye(2, dtype=torch.float64)
    loss, ce, ent = fastclust.cluster_contrastive_loss(eye, eye, return_parts=True)
    assert ce.item() == pytest.approx(math.log(math.e + 2) - 1, rel=1e-12)
    assert ent.item() == pytest.approx(0.0, abs=1e-15)
    assert loss.item() == pytest.approx(ce.item(), rel=1e-15)


@devices
@pytest.mark.parametrize("full_gram", [False, True])
def test_gradcheck_ops(device, full_gram):
    a, b = views(6, 3, seed=5, probabilities=False, device=device)
    a.requires_grad_()
    b.requires_grad_()
    assert torch.autograd.gradcheck(lambda x, y: OPS.column_stats(x, y, full_gram), (a, b))
    kind = CLUSTER_CONTRASTIVE if full_gram else PICA
    stats = [s.detach().requires_grad_()
             for s in reference.column_stats(*views(6, 3, seed=6, device=device), full_gram)]
    assert torch.autograd.gradcheck(
        lambda *s: OPS.column_loss_from_stats(*s, kind, 0.7, 1.3)[:3], stats)


@devices
@pytest.mark.parametrize("kind", [PICA, CLUSTER_CONTRASTIVE])
def test_fused_op_is_the_split_ops(device, kind):
    # The local loss's single op runs the same kernels as column_stats -> column_loss_from_stats
    # (the distributed path), and its backward the same column_stats_backward: same bits, for
    # the loss and for each part on its own.
    a, b = views(300, 17, dtype=torch.float32, device=device, seed=7)
    full_gram = kind == CLUSTER_CONTRASTIVE

    def split(x, y):
        return OPS.column_loss_from_stats(*OPS.column_stats(x, y, full_gram), kind, 0.5, 1.5)[:3]

    def fused(x, y):
        return OPS.column_loss(x, y, kind, 0.5, 1.5)[:3]

    for part in (None, 0, 1, 2):
        pick = (lambda out: out) if part is None else (lambda out, p=part: out[p])
        got = outputs_and_grads(lambda x, y: pick(fused(x, y)), a, b, {})
        want = outputs_and_grads(lambda x, y: pick(split(x, y)), a, b, {})
        for g, w in zip(got[0] + got[1], want[0] + want[1]):
            assert torch.equal(g, w)


@devices
@pytest.mark.parametrize("kind", [PICA, CLUSTER_CONTRASTIVE])
def test_gradcheck_fused_op(device, kind):
    a, b = views(6, 3, seed=8, device=device)
    a.requires_grad_()
    b.requires_grad_()
    assert torch.autograd.gradcheck(lambda x, y: OPS.column_loss(x, y, kind, 0.7, 1.3)[:3], (a, b))


@front_ends
def test_zero_column_is_defined(name):
    fn, ref, kwargs = FRONT_ENDS[name]
    for dtype in (torch.float32, torch.float64):
        a, b = views(20, 5, dtype=dtype)
        a[:, 1] = 0
        b[:, 3] = 0
        got = outputs_and_grads(fn, a, b, kwargs)
        for t in got[0] + got[1]:
            assert torch.isfinite(t).all(), f"{name} {dtype}: non-finite value with an all-zero column"
        if dtype == torch.float64:
            assert_matches(got, outputs_and_grads(ref, a, b, kwargs), rtol=1e-9, atol=1e-12)
    if name == "asv":
        M = got[0][0]
        assert torch.equal(M[1], torch.zeros_like(M[1])) and torch.equal(M[:, 3], torch.zeros_like(M[:, 3]))


@pytest.mark.parametrize("name", LOSSES)
def test_negative_column_sum_gives_nan(name):
    fn, _, kwargs = FRONT_ENDS[name]
    a, b = views(10, 3)
    a[:, 0] = -1.0
    b[:, 0] = -1.0
    assert torch.isnan(fn(a, b, **kwargs)[0])


def _bad(shape=(4, 3), dtype=torch.float32):
    return torch.rand(shape, dtype=dtype)


@pytest.mark.parametrize("name", list(FRONT_ENDS))
@pytest.mark.parametrize("a,b,match", [
    (_bad((5,)), _bad(), r"the first view \(p1 / c_a\) must be a 2-D"),
    (_bad(), _bad((2, 2, 3)), r"the second view \(p2 / c_b\) must be a 2-D"),
    (_bad((0, 3)), _bad((0, 3)), "must have at least one row"),
    (_bad((4, 0)), _bad((4, 0)), r"at least one column \(k >= 1\)"),
    (_bad(), _bad((4, 2)), r"the second view \(p2 / c_b\) has shape \[4, 2\] but the first view"),
    (_bad(), _bad((5, 3)), r"has shape \[5, 3\] but the first view \(p1 / c_a\) has shape \[4, 3\]"),
    (_bad(), _bad(dtype=torch.float64), "has dtype Double but the first view"),
    (_bad(dtype=torch.float16), _bad(), "has dtype Float but the first view"),
    (torch.ones(4, 3, dtype=torch.int64), torch.ones(4, 3, dtype=torch.int64), "must be float32 or float64"),
])
def test_bad_views(name, a, b, match):
    fn, _, kwargs = FRONT_ENDS[name]
    with pytest.raises(RuntimeError, match=match):
        fn(a, b, **kwargs)


@pytest.mark.parametrize("call,match", [
    (lambda a, b: fastclust.pica_loss(a[:, :1], b[:, :1]), r"needs k >= 2 clusters.*got k = 1"),
    (lambda a, b: fastclust.cluster_contrastive_loss(a[:, :1], b[:, :1]), r"needs k >= 2 clusters"),
    (lambda a, b: fastclust.cluster_contrastive_loss(a, b, tau=0.0), "tau must be a finite number > 0"),
    (lambda a, b: fastclust.cluster_contrastive_loss(a, b, tau=-1.0), "tau must be a finite number > 0"),
    (lambda a, b: fastclust.cluster_contrastive_loss(a, b, tau=float("nan")), "tau must be a finite number > 0"),
    (lambda a, b: fastclust.pica_loss(a, b, lam=-1.0), r"entropy weight \(lam / entropy_weight\) must be a finite number >= 0"),
    (lambda a, b: fastclust.pica_loss(a, b, lam=float("inf")), "must be a finite number >= 0"),
    (lambda a, b: fastclust.cluster_contrastive_loss(a, b, entropy_weight=float("nan")), "must be a finite number >= 0"),
])
def test_bad_loss_arguments(call, match):
    a, b = views(6, 3, dtype=torch.float32)
    with pytest.raises(RuntimeError, match=match):
        call(a, b)


def test_bad_python_arguments():
    a, b = views(6, 3, dtype=torch.float32)
    with pytest.raises(TypeError, match="lam must be a number"):
        fastclust.pica_loss(a, b, lam="two")
    with pytest.raises(TypeError, match="tau must be a number"):
        fastclust.cluster_contrastive_loss(a, b, tau=None)
    with pytest.raises(ValueError, match="entropy_weight must be a number"):
        fastclust.cluster_contrastive_loss(a, b, entropy_weight=torch.ones(2))


def test_bad_op_arguments():
    a, b = views(6, 3, dtype=torch.float32)
    gram, sq, sums = reference.column_stats(a, b, False)
    with pytest.raises(RuntimeError, match="kind must be one of 'pica', 'cluster_contrastive', got 'cc'"):
        OPS.column_loss_from_stats(gram, sq, sums, "cc", 1.0, 1.0)
    with pytest.raises(RuntimeError, match=r"gram must have shape \[6, 6\]"):
        OPS.column_loss_from_stats(gram, sq, sums, CLUSTER_CONTRASTIVE, 1.0, 1.0)
    with pytest.raises(RuntimeError, match=r"sq_norms must have shape \[6\]"):
        OPS.column_loss_from_stats(gram, sq[:3], sums, PICA, 1.0, 1.0)
    with pytest.raises(RuntimeError, match="sums must hold the 2k column sums"):
        OPS.column_loss_from_stats(gram, sq, sums[:5], PICA, 1.0, 1.0)
    with pytest.raises(RuntimeError, match="sq_norms has dtype Double but sums has dtype Float"):
        OPS.column_loss_from_stats(gram, sq.double(), sums, PICA, 1.0, 1.0)
    with pytest.raises(RuntimeError, match="sums must be float32 or float64"):
        OPS.column_loss_from_stats(gram.half(), sq.half(), sums.half(), PICA, 1.0, 1.0)
    with pytest.raises(RuntimeError, match=r"grad_gram must have shape \[6, 6\]"):
        OPS.column_stats_backward(gram, None, None, a, b, True)
    with pytest.raises(RuntimeError, match=r"grad_sums must have shape \[6\]"):
        OPS.column_stats_backward(None, None, sums[:3], a, b, False)
    with pytest.raises(RuntimeError, match="kind must be one of 'pica', 'cluster_contrastive', got 'x'"):
        OPS.column_loss(a, b, "x", 1.0, 1.0)
    with pytest.raises(RuntimeError, match="tau"):
        OPS.column_loss(a, b, CLUSTER_CONTRASTIVE, 0.0, 1.0)
    with pytest.raises(RuntimeError, match="the entropy weight"):
        OPS.column_loss(a, b, PICA, 1.0, -1.0)
    with pytest.raises(RuntimeError, match="the second view"):
        OPS.column_loss(a, b[:, :2], PICA, 1.0, 1.0)
    with pytest.raises(RuntimeError, match="k >= 2"):
        OPS.column_loss(a[:, :1], b[:, :1], PICA, 1.0, 1.0)


@needs_cuda
def test_device_mismatch():
    a, b = views(6, 3, dtype=torch.float32)
    with pytest.raises(RuntimeError, match=r"the second view \(p2 / c_b\) is on cpu but the first view"):
        fastclust.pica_loss(a.cuda(), b)
    gram, sq, sums = reference.column_stats(a, b, False)
    with pytest.raises(RuntimeError, match="gram is on cpu but sums is on cuda"):
        OPS.column_loss_from_stats(gram, sq.cuda(), sums.cuda(), PICA, 1.0, 1.0)


@needs_cuda
@pytest.mark.parametrize("full_gram", [False, True])
@pytest.mark.parametrize("n,k", [(1, 1), (17, 65), (4096, 130), (100000, 7)])
def test_cuda_column_stats_matches_reference(n, k, full_gram):
    a, b = views(n, k, probabilities=False, device="cuda")
    got = outputs_and_grads(OPS.column_stats, a, b, {"full_gram": full_gram})
    want = outputs_and_grads(reference.column_stats, a, b, {"full_gram": full_gram})
    assert_matches(got, want, rtol=1e-10, atol=1e-10)
    assert torch.equal(got[0][0], got[0][0].T) or not full_gram


@needs_cuda
@front_ends
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_cuda_bitwise_deterministic(name, dtype):
    fn, _, kwargs = FRONT_ENDS[name]
    a, b = views(1 << 17, 100, dtype=dtype, device="cuda")
    first = outputs_and_grads(fn, a, b, kwargs)
    second = outputs_and_grads(fn, a, b, kwargs)
    for x, y in zip(first[0] + first[1], second[0] + second[1]):
        assert torch.equal(x, y)


@needs_cuda
@front_ends
def test_cuda_low_precision_large_n(name):
    fn, ref, kwargs = FRONT_ENDS[name]
    a64, b64 = views(1 << 16, 100, device="cuda", probabilities=name != "asv")
    want = outputs_and_grads(ref, a64, b64, kwargs)
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        a, b = a64.to(dtype), b64.to(dtype)
        got = outputs_and_grads(fn, a, b, kwargs)
        eager = outputs_and_grads(ref, a, b, kwargs)
        assert got[0][0].dtype == (torch.float32 if dtype != torch.float64 else dtype)
        assert got[1][0].dtype == dtype
        for i, (g, e, w) in enumerate(zip(got[0] + got[1], eager[0] + eager[1], want[0] + want[1])):
            assert_accurate(g, e, w, name=f"{name} {dtype} output {i}")
