"""Clustering scores: accuracy under a map of clusters to classes (the best one-to-one map, or
each cluster to its majority class), NMI, ARI.

Every function takes the ground truth and the cluster assignments as 1-D integer numpy arrays or
torch tensors of the same non-zero length. Labels and cluster ids may be any integers; the number
of clusters may differ from the number of classes.
"""
import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

__all__ = ["cluster_accuracy", "nmi", "ari", "confusion_matrix", "best_mapping", "evaluate", "format_scores",
           "MAPPINGS"]


def _as_labels(name, labels):
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {labels.shape}")
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == np.bool_):
        raise ValueError(f"{name} must hold integer labels, got dtype {labels.dtype}")
    return labels


def _pair(y_true, y_pred):
    y_true, y_pred = _as_labels("y_true", y_true), _as_labels("y_pred", y_pred)
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true and y_pred differ in length: {len(y_true)} vs {len(y_pred)}")
    if len(y_true) == 0:
        raise ValueError("y_true and y_pred are empty")
    return y_true, y_pred


def _contingency(y_true, y_pred):
    classes, class_index = np.unique(y_true, return_inverse=True)
    clusters, cluster_index = np.unique(y_pred, return_inverse=True)
    counts = np.zeros((len(classes), len(clusters)), dtype=np.int64)
    np.add.at(counts, (class_index, cluster_index), 1)
    return counts, classes, clusters


def confusion_matrix(y_true, y_pred, *, return_labels=False):
    """Counts (classes x clusters): entry [i, j] is how many samples of class classes[i] fell in
    cluster clusters[j], with classes and clusters the sorted distinct values of y_true and
    y_pred. return_labels=True returns (counts, classes, clusters)."""
    counts, classes, clusters = _contingency(*_pair(y_true, y_pred))
    return (counts, classes, clusters) if return_labels else counts


def _assignment(y_true, y_pred):
    counts, classes, clusters = _contingency(*_pair(y_true, y_pred))
    # Rectangular when #clusters != #classes: only min(#clusters, #classes) pairs get matched.
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return counts, classes[rows], clusters[cols], counts[rows, cols].sum()


MAPPINGS = ("hungarian", "majority")


def _check_mapping(mapping):
    if mapping not in MAPPINGS:
        raise ValueError(f"mapping must be one of {', '.join(MAPPINGS)}, got {mapping!r}")


def best_mapping(y_true, y_pred, mapping="hungarian"):
    """The map {cluster: class}. "hungarian": the one-to-one map that agrees with y_true on the
    most samples (with more clusters than classes the extra clusters are absent); "majority":
    every cluster to the class most of its samples have (many clusters may share a class; ties
    go to the smallest class)."""
    _check_mapping(mapping)
    if mapping == "majority":
        counts, classes, clusters = _contingency(*_pair(y_true, y_pred))
        return {cluster.item(): classes[row].item() for cluster, row in zip(clusters, counts.argmax(0))}
    _, classes, clusters, _ = _assignment(y_true, y_pred)
    return {cluster.item(): cls.item() for cluster, cls in zip(clusters, classes)}


def cluster_accuracy(y_true, y_pred, mapping="hungarian"):
    """ACC: the fraction of samples whose cluster maps to their class under
    ``best_mapping(..., mapping)``. With "hungarian", samples in clusters left unmatched (more
    clusters than classes) count as wrong; "majority" is the many-to-one accuracy reported for
    over-clustering (it reaches 1 with one cluster per sample, so compare it at a fixed k)."""
    _check_mapping(mapping)
    if mapping == "majority":
        counts, _, _ = _contingency(*_pair(y_true, y_pred))
        return float(counts.max(0).sum()) / len(y_true)
    _, _, _, matched = _assignment(y_true, y_pred)
    return float(matched) / len(y_true)


def nmi(y_true, y_pred):
    """Normalized mutual information (scikit-learn, arithmetic-mean normalization)."""
    return float(normalized_mutual_info_score(*_pair(y_true, y_pred)))


def ari(y_true, y_pred):
    """Adjusted Rand index (scikit-learn)."""
    return float(adjusted_rand_score(*_pair(y_true, y_pred)))


SCORE_NAMES = {"acc": "ACC", "nmi": "NMI", "ari": "ARI", "acc_majority": "ACC (majority)"}


def format_scores(scores):
    """The scores of a dict (an :func:`evaluate` result, or a history entry holding one) as one
    line; other keys are left out."""
    return "  ".join(f"{name} {scores[key]:.4f}" for key, name in SCORE_NAMES.items() if key in scores)


def evaluate(y_true, y_pred, num_clusters=None):
    """{"acc", "nmi", "ari"} as floats, and "acc_majority" (the majority-vote accuracy) when
    ``num_clusters``, the k the assignments were made with, differs from the number of classes."""
    scores = {"acc": cluster_accuracy(y_true, y_pred), "nmi": nmi(y_true, y_pred),
              "ari": ari(y_true, y_pred)}
    if num_clusters is not None and num_clusters != len(np.unique(_as_labels("y_true", y_true))):
        scores["acc_majority"] = cluster_accuracy(y_true, y_pred, mapping="majority")
    return scores
