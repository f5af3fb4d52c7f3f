"""fastclust.compat: each class against an eager implementation of its peer's published formula,
written here (the peers are not dependencies), and against the peer itself where it happens to
be installed."""
import math

import pytest
import torch
import torch.nn.functional as F

from fastclust.compat import cc, lightly, pica, pml


def _x(n=10, d=6, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _p(n=10, k=4, seed=0):
    return (_x(n, k, seed) * 2).softmax(1)


def lightly_ntxent(out0, out1, t):
    """lightly's NTXentLoss without a memory bank."""
    out0, out1 = F.normalize(out0, dim=1), F.normalize(out1, dim=1)
    n = len(out0)
    off_diagonal = ~torch.eye(n, dtype=torch.bool)
    logits_00 = (out0 @ out0.T / t)[off_diagonal].view(n, -1)
    logits_11 = (out1 @ out1.T / t)[off_diagonal].view(n, -1)
    logits = torch.cat([torch.cat([out0 @ out1.T / t, logits_00], 1), torch.cat([out1 @ out0.T / t, logits_11], 1)])
    return F.cross_entropy(logits, torch.arange(n).repeat(2))


def pml_ntxent(embeddings, labels, t):
    """pytorch-metric-learning's NTXentLoss (cosine similarity, mean over positive pairs)."""
    s = F.normalize(embeddings, dim=1) @ F.normalize(embeddings, dim=1).T / t
    losses = []
    for a in range(len(labels)):
        for p in range(len(labels)):
            if a != p and labels[a] == labels[p]:
                negatives = s[a][labels != labels[a]]
                losses.append(-(s[a, p] - torch.logsumexp(torch.cat([s[a, p:p + 1], negatives]), 0)))
    return torch.stack(losses).mean()


def _cc_mask(n):
    mask = torch.ones(2 * n, 2 * n, dtype=torch.bool)
    mask.fill_diagonal_(False)
    for i in range(n):
        mask[i, n + i] = mask[n + i, i] = False
    return mask


def _cc_cross_entropy(sim, n):
    positives = torch.cat([torch.diag(sim, n), torch.diag(sim, -n)]).reshape(2 * n, 1)
    negatives = sim[_cc_mask(n)].reshape(2 * n, -1)
    logits = torch.cat([positives, negatives], 1)
    return F.cross_entropy(logits, torch.zeros(2 * n, dtype=torch.long), reduction="sum") / (2 * n)


def cc_instance(z_i, z_j, t):
    """Contrastive Clustering's InstanceLoss (plain dot products)."""
    z = torch.cat([z_i, z_j])
    return _cc_cross_entropy(z @ z.T / t, len(z_i))


def cc_cluster(c_i, c_j, t):
    """Contrastive Clustering's ClusterLoss."""
    k = c_i.shape[1]
    entropy = 0
    for c in (c_i, c_j):
        p = c.sum(0) / c.sum()
        entropy = entropy + math.log(k) + (p * p.log()).sum()
    c = torch.cat([c_i.T, c_j.T])
    sim = F.cosine_similarity(c.unsqueeze(1), c.unsqueeze(0), dim=2) / t
    return _cc_cross_entropy(sim, k) + entropy


def pica_pui(x, y, lamda):
    """PICA's PUILoss."""
    pui = F.normalize(x.T, dim=1) @ F.normalize(y, dim=0)
    p = x.sum(0) / x.sum()
    return F.cross_entropy(pui, torch.arange(pui.shape[0])) + lamda * (math.log(len(p)) + (p * p.log()).sum())


def _same_value_and_gradient(ours, theirs, *inputs):
    mine = [t.clone().requires_grad_() for t in inputs]
    other = [t.clone().requires_grad_() for t in inputs]
    got, want = ours(*mine), theirs(*other)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    got.backward()
    want.backward()
    for a, b in zip(mine, other):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-9, atol=1e-12)


def test_lightly_ntxent():
    _same_value_and_gradient(lightly.NTXentLoss(temperature=0.3), lambda a, b: lightly_ntxent(a, b, 0.3),
                             _x(), _x(seed=1))
    assert repr(lightly.NTXentLoss()) == "NTXentLoss(temperature=0.5, gather_distributed=False)"
    with pytest.raises(NotImplementedError, match="a memory bank .* is not supported"):
        lightly.NTXentLoss(memory_bank_size=4096)


def test_pml_ntxent_for_two_views_in_any_order():
    embeddings = _x(8)
    labels = torch.tensor([3, 0, 1, 3, 2, 0, 2, 1])
    _same_value_and_gradient(lambda e: pml.NTXentLoss(temperature=0.1)(e, labels),
                             lambda e: pml_ntxent(e, labels, 0.1), embeddings)
    for bad in (torch.tensor([0, 0, 0, 1, 1, 1, 2, 2]), torch.tensor([0, 1, 2, 3, 4, 5, 6, 7]),
                torch.tensor([0, 0, 1, 1, 1, 1, 2, 2])):
        with pytest.raises(NotImplementedError, match="every label must occur exactly twice"):
            pml.NTXentLoss()(embeddings, bad)


def test_cc_instance_and_cluster_losses():
    _same_value_and_gradient(cc.InstanceLoss(10, 0.5, "cpu"), lambda a, b: cc_instance(a, b, 0.5),
                             F.normalize(_x(), dim=1), F.normalize(_x(seed=1), dim=1))
    _same_value_and_gradient(cc.InstanceLoss(10, 0.5, "cpu"), lambda a, b: cc_instance(a, b, 0.5),
                             _x(), _x(seed=1))  # unnormalised, as CC's formula takes them
    _same_value_and_gradient(cc.ClusterLoss(4, 1.0, "cpu"), lambda a, b: cc_cluster(a, b, 1.0),
                             _p(), _p(seed=1))
    with pytest.raises(ValueError, match=r"InstanceLoss\(batch_size=10\) takes two \(10, d\) views"):
        cc.InstanceLoss(10, 0.5, "cpu")(_x(8), _x(8))


def test_pica_pui_loss():
    _same_value_and_gradient(pica.PUILoss(lamda=2.0), lambda a, b: pica_pui(a, b, 2.0), _p(), _p(seed=1))


def test_against_the_peers_where_installed():
    checked = 0
    try:
        from pytorch_metric_learning.losses import NTXentLoss as PeerPML
    except ImportError:
        PeerPML = None
    if PeerPML is not None:
        embeddings, labels = _x(8), torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
        torch.testing.assert_close(pml.NTXentLoss(0.2)(embeddings, labels), PeerPML(0.2)(embeddings, labels))
        checked += 1
    try:
        from lightly.loss import NTXentLoss as PeerLightly
    except ImportError:
        PeerLightly = None
    if PeerLightly is not None:
        torch.testing.assert_close(lightly.NTXentLoss(0.3)(_x(), _x(seed=1)), PeerLightly(0.3)(_x(), _x(seed=1)))
        checked += 1
    if not checked:
        pytest.skip("neither pytorch-metric-learning nor lightly is installed")
