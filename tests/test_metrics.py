import itertools

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from fastclust import metrics


def brute_force_accuracy(y_true, y_pred):
    # The best one-to-one map of clusters to classes by trying every injective map.
    classes, clusters = np.unique(y_true), np.unique(y_pred)
    small, large, to_class = ((clusters, classes, True) if len(clusters) <= len(classes)
                              else (classes, clusters, False))
    best = 0
    for image in itertools.permutations(large, len(small)):
        pairs = zip(small, image) if to_class else ((c, k) for k, c in zip(small, image))
        best = max(best, sum(np.sum((y_pred == c) & (y_true == k)) for c, k in pairs))
    return best / len(y_true)


def test_permuted_labels_score_one():
    y_true = np.array([0, 0, 1, 1, 2, 2, 3, 3, 3])
    y_pred = np.array([2, 2, 3, 3, 0, 0, 1, 1, 1])
    assert metrics.evaluate(y_true, y_pred) == pytest.approx({"acc": 1.0, "nmi": 1.0, "ari": 1.0})
    assert metrics.best_mapping(y_true, y_pred) == {2: 0, 3: 1, 0: 2, 1: 3}


def test_hand_worked_six_samples():
    # Contingency (classes x clusters): [[1, 2], [3, 0]]; best map cluster 1 -> class 0 (2 right)
    # and cluster 0 -> class 1 (3 right): 5 of 6.
    y_true = [0, 0, 0, 1, 1, 1]
    y_pred = [1, 1, 0, 0, 0, 0]
    np.testing.assert_array_equal(metrics.confusion_matrix(y_true, y_pred), [[1, 2], [3, 0]])
    assert metrics.cluster_accuracy(y_true, y_pred) == pytest.approx(5 / 6)
    assert metrics.best_mapping(y_true, y_pred) == {1: 0, 0: 1}


def test_more_clusters_than_classes_leaves_extra_clusters_wrong():
    # Clusters 1 and 3 stay unmatched: their samples count as wrong (purity would say 1.0).
    y_true = [0, 0, 0, 1, 1, 1]
    y_pred = [0, 0, 1, 2, 2, 3]
    assert metrics.cluster_accuracy(y_true, y_pred) == pytest.approx(4 / 6)
    assert metrics.best_mapping(y_true, y_pred) == {0: 0, 2: 1}
    assert metrics.confusion_matrix(y_true, y_pred).shape == (2, 4)


def test_fewer_clusters_than_classes():
    y_true = [0, 0, 1, 1, 2, 2]
    y_pred = [0, 0, 0, 0, 1, 1]
    assert metrics.cluster_accuracy(y_true, y_pred) == pytest.approx(4 / 6)
    mapping = metrics.best_mapping(y_true, y_pred)
    assert mapping[1] == 2 and mapping[0] in (0, 1) and len(mapping) == 2


def test_arbitrary_label_values_and_confusion_labels():
    y_true = np.array([7, 7, 3, 3, 3])
    y_pred = np.array([-1, 10, 10, 10, 10])
    counts, classes, clusters = metrics.confusion_matrix(y_true, y_pred, return_labels=True)
    np.testing.assert_array_equal(classes, [3, 7])
    np.testing.assert_array_equal(clusters, [-1, 10])
    np.testing.assert_array_equal(counts, [[0, 3], [1, 1]])
    assert metrics.best_mapping(y_true, y_pred) == {10: 3, -1: 7}
    assert metrics.cluster_accuracy(y_true, y_pred) == pytest.approx(4 / 5)


@pytest.mark.parametrize("n_classes,n_clusters", [(3, 3), (3, 5), (5, 3), (4, 1)])
@pytest.mark.parametrize("seed", range(4))
def test_accuracy_matches_brute_force(n_classes, n_clusters, seed):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, n_classes, 40)
    y_pred = rng.integers(0, n_clusters, 40)
    want = brute_force_accuracy(y_true, y_pred)
    assert metrics.cluster_accuracy(y_true, y_pred) == pytest.approx(want)


def test_nmi_ari_match_sklearn_and_accept_tensors():
    rng = np.random.default_rng(0)
    y_true, y_pred = rng.integers(0, 4, 200), rng.integers(0, 6, 200)
    scores = metrics.evaluate(torch.from_numpy(y_true), torch.from_numpy(y_pred))
    assert scores["nmi"] == pytest.approx(normalized_mutual_info_score(y_true, y_pred), abs=1e-12)
    assert scores["ari"] == pytest.approx(adjusted_rand_score(y_true, y_pred), abs=1e-12)
    assert scores["acc"] == pytest.approx(metrics.cluster_accuracy(y_true, y_pred))
    assert all(isinstance(v, float) for v in scores.values())
    counts = metrics.confusion_matrix(torch.from_numpy(y_true), y_pred)
    assert counts.sum() == 200 and counts[2, 5] == np.sum((y_true == 2) & (y_pred == 5))


@pytest.mark.parametrize("y_true,y_pred,message", [
    (np.array([0, 1, 2]), np.array([0, 1]), "differ in length"),
    (np.array([], dtype=np.int64), np.array([], dtype=np.int64), "empty"),
    (np.array([[0, 1]]), np.array([[0, 1]]), "1-D"),
    (np.array([0, 1]), np.array([0.2, 0.7]), "integer labels"),
    (torch.tensor([0, 1]), torch.tensor([[0.2, 0.8], [0.9, 0.1]]), "1-D"),
])
def test_bad_input_is_rejected(y_true, y_pred, message):
    for fn in (metrics.cluster_accuracy, metrics.nmi, metrics.ari, metrics.confusion_matrix,
               metrics.best_mapping, metrics.evaluate):
        with pytest.raises(ValueError, match=message):
            fn(y_true, y_pred)


def test_majority_mapping_by_hand():
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([5, 5, 6, 6, 7, 7])
    # cluster 5 holds {0, 0}: class 0; 6 holds {0, 1} and 7 {1, 2}: ties go to the smaller class.
    assert metrics.best_mapping(y_true, y_pred, mapping="majority") == {5: 0, 6: 0, 7: 1}
    assert metrics.cluster_accuracy(y_true, y_pred, mapping="majority") == pytest.approx(4 / 6)
    # Over-clustering: one-to-one leaves two clusters unmatched, the majority vote does not.
    y_true, y_pred = np.array([0, 0, 1, 1, 1]), np.array([0, 1, 2, 3, 3])
    assert metrics.cluster_accuracy(y_true, y_pred) == pytest.approx(3 / 5)
    assert metrics.cluster_accuracy(y_true, y_pred, mapping="majority") == pytest.approx(1.0)
    assert metrics.evaluate(y_true, y_pred, num_clusters=4)["acc_majority"] == pytest.approx(1.0)
    assert "acc_majority" not in metrics.evaluate(y_true, y_pred, num_clusters=2)
    assert "acc_majority" not in metrics.evaluate(y_true, y_pred)
    with pytest.raises(ValueError, match="mapping must be one of hungarian, majority"):
        metrics.cluster_accuracy(y_true, y_pred, mapping="greedy")
    assert metrics.format_scores({"acc": 0.5, "nmi": 0.25, "acc_majority": 1.0, "loss": 3.0}) == \
        "ACC 0.5000  NMI 0.2500  ACC (majority) 1.0000"
