"""Clustering scores: accuracy under the best one-to-one map of clusters to classes, NMI, ARI.

Every function takes the ground truth and the cluster assignments as 1-D integer numpy arrays or
torch tensors of the same non-zero length. Labels and cluster ids may be any integers; the number
of clusters may differ from the number of classes.
"""
import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

__all__ = ["cluster_accuracy", "nmi", "ari", "confusion_matrix", "best_mapping", "evaluate"]


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


def best_mapping(y_true, y_pred):
    """The one-to-one map {cluster: class} that agrees with y_true on the most samples
    (Hungarian algorithm). With more clusters than classes the extra clusters are absent."""
    _, classes, clusters, _ = _assignment(y_true, y_pred)
    return {cluster.item(): cls.item() for cluster, cls in zip(clusters, classes)}


def cluster_accuracy(y_true, y_pred):
    """ACC: the fraction of samples whose cluster maps to their class under best_mapping.
    Samples in clusters left unmatched (more clusters than classes) count as wrong."""
    _, _, _, matched = _assignment(y_true, y_pred)
    return float(matched) / len(y_true)


def nmi(y_true, y_pred):
    """Normalized mutual information (scikit-learn, arithmetic-mean normalization)."""
    return float(normalized_mutual_info_score(*_pair(y_true, y_pred)))


def ari(y_true, y_pred):
    """Adjusted Rand index (scikit-learn)."""
    return float(adjusted_rand_score(*_pair(y_true, y_pred)))


def evaluate(y_true, y_pred):
    """{"acc", "nmi", "ari"} as floats."""
    return {"acc": cluster_accuracy(y_true, y_pred), "nmi": nmi(y_true, y_pred),
            "ari": ari(y_true, y_pred)}
