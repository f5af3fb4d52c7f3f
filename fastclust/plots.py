"""Pictures of a run, written to its directory when matplotlib is installed (the extra ``plot``):

- ``curves.png``: per epoch, the loss and its parts, ACC / NMI / ARI when the data has labels,
  the thresholds u / l and the selected-pair counts where the method has them; the restart
  candidates' loss and ACC as dashed lines.
- ``clusters.png`` (image data): one row per cluster with its size and its most confident
  images first, so that what each cluster holds is seen at a glance.
- ``confusion.png`` (labelled data): classes x clusters, the clusters ordered by the best
  one-to-one mapping, so that matched clusters lie on the diagonal.

``fastclust plot DIR`` draws them again from a finished or interrupted run.
"""
import glob
import json
import os

import numpy as np

from .metrics import best_mapping, confusion_matrix

SCORES = ("acc", "nmi", "ari", "acc_majority")
THRESHOLDS = ("u", "l")
PAIR_COUNTS = ("pos", "neg")
# History entries that are not a loss or a part of one.
_NOT_LOSS = {"epoch", "seconds", "clusters_used", "phase", *SCORES, *THRESHOLDS, *PAIR_COUNTS}
# Rows of clusters.png at most (a large k would make the picture unreadable).
MAX_CLUSTER_ROWS = 40


def pyplot():
    """matplotlib.pyplot on the file-only backend, or None when matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, plt, path):
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_curves(path, history, candidates=None):
    """curves.png from a run's ``history`` (the metrics.json entries) and ``candidates``
    ({seed: history} of its restart candidates). Returns the path, or None without matplotlib
    or without a finished epoch."""
    plt = pyplot()
    if plt is None or not history:
        return None
    candidates = candidates or {}
    epochs = [entry["epoch"] for entry in history]
    losses = [key for key in history[-1] if key not in _NOT_LOSS]
    panels = [("loss and its parts", losses, "linear")]
    for title, keys, scale in (("scores", SCORES, "linear"), ("thresholds", THRESHOLDS, "linear"),
                               ("selected pairs", PAIR_COUNTS, "log")):
        present = [key for key in keys if any(key in entry for entry in history)]
        if present:
            panels.append((title, present, scale))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 3.6), squeeze=False)
    for ax, (title, keys, scale) in zip(axes[0], panels):
        for key in keys:
            points = [(e["epoch"], e[key]) for e in history if key in e]
            ax.plot(*zip(*points), label=key, marker="." if len(points) < 30 else None)
        # A candidate's loss and ACC where the panel shows them: dashed, one line per seed.
        for seed, entries in sorted(candidates.items()):
            for key in ({"loss", "acc"} & set(keys)):
                points = [(e["epoch"], e[key]) for e in entries if key in e]
                if points:
                    ax.plot(*zip(*points), linestyle="--", linewidth=0.9, alpha=0.8,
                            marker="x" if len(points) < 30 else None, label=f"{key}, candidate seed {seed}")
        ax.set(title=title, xlabel="epoch", yscale=scale, xlim=(min(epochs) - 0.5, max(epochs) + 0.5))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, plt, path)


def cluster_order(assignments, y=None, num_clusters=None):
    """The clusters in display order: with labels, the cluster matched to each class in class
    order, then the unmatched ones by size; without, all by size (largest first). Clusters no
    sample was assigned to come last."""
    ids = range(int(num_clusters) if num_clusters else int(assignments.max()) + 1)
    sizes = np.bincount(assignments, minlength=len(ids))
    by_size = sorted(ids, key=lambda c: (-sizes[c], c))
    if y is None:
        return by_size
    mapping = best_mapping(y, assignments)
    matched = sorted(mapping, key=lambda c: mapping[c])
    return matched + [c for c in by_size if c not in mapping]


def plot_confusion(path, y, assignments, title, class_names=None):
    """confusion.png: rows the classes, columns the clusters in :func:`cluster_order`."""
    plt = pyplot()
    if plt is None:
        return None
    counts, classes, clusters = confusion_matrix(y, assignments, return_labels=True)
    position = {c.item(): i for i, c in enumerate(clusters)}
    order = [c for c in cluster_order(assignments, y) if c in position]
    counts = counts[:, [position[c] for c in order]]
    names = [class_names[c] if class_names is not None else c for c in classes]
    fig, ax = plt.subplots(figsize=(1.5 + 0.45 * len(order), 1.2 + 0.45 * len(classes)))
    ax.imshow(counts, cmap="Blues")
    ax.set(xticks=range(len(order)), xticklabels=order, yticks=range(len(classes)), yticklabels=names,
           xlabel="cluster (ordered by the best one-to-one mapping)", ylabel="class", title=title)
    if counts.size <= 400:
        for (i, j), count in np.ndenumerate(counts):
            ax.text(j, i, count, ha="center", va="center", fontsize=7,
                    color="white" if count > counts.max() / 2 else "black")
    return _save(fig, plt, path)


def plot_clusters(path, images, assignments, confidence, title, y=None, num_clusters=None,
                  per_cluster=10):
    """clusters.png: a row per cluster (:func:`cluster_order`, at most MAX_CLUSTER_ROWS), its
    size, and its ``per_cluster`` most confident images (``confidence``: one value per sample,
    e.g. the probability of its cluster)."""
    plt = pyplot()
    if plt is None:
        return None
    images = np.asarray(images, dtype=np.float32)
    order = cluster_order(assignments, y, num_clusters)
    shown = order[:MAX_CLUSTER_ROWS]
    _, channels, h, w = images.shape
    pad = 2
    grid = np.ones((len(shown) * (h + pad) + pad, per_cluster * (w + pad) + pad, 3), dtype=np.float32)
    sizes = np.bincount(assignments, minlength=max(order) + 1)
    for row, cluster in enumerate(shown):
        members = np.flatnonzero(assignments == cluster)
        members = members[np.argsort(-confidence[members], kind="stable")][:per_cluster]
        for col, index in enumerate(members):
            image = images[index]
            pixels = np.repeat(image, 3, axis=0) if channels == 1 else image[:3]
            top, left = pad + row * (h + pad), pad + col * (w + pad)
            grid[top:top + h, left:left + w] = np.clip(pixels.transpose(1, 2, 0), 0, 1)
    # Half an inch per image whatever its pixels: 8 x 8 digits stay as visible as 96 x 96 photos.
    cell = 0.5
    fig, ax = plt.subplots(figsize=(2.4 + per_cluster * cell, 0.8 + len(shown) * cell * (h + pad) / (w + pad)))
    ax.imshow(grid, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([pad + row * (h + pad) + h / 2 for row in range(len(shown))])
    mapping = {} if y is None else best_mapping(y, assignments)
    ax.set_yticklabels([f"cluster {c}" + (f" = class {mapping[c]}" if c in mapping else "") + f"  ({sizes[c]})"
                        for c in shown], fontsize=8)
    more = f"; {len(order) - len(shown)} more clusters not shown" if len(order) > len(shown) else ""
    ax.set_title(f"{title}: most confident first{more}", fontsize=9)
    for side in ax.spines.values():
        side.set_visible(False)
    return _save(fig, plt, path)


def candidate_histories(out):
    """{seed: history} of the restart candidates kept in ``out/restarts/seed-S``."""
    histories = {}
    for path in glob.glob(os.path.join(glob.escape(str(out)), "restarts", "seed-*", "metrics.json")):
        seed = os.path.basename(os.path.dirname(path))[len("seed-"):]
        with open(path) as f:
            histories[int(seed)] = json.load(f).get("history", [])
    return histories


def write_run_plots(out, history, title, x=None, y=None, assignments=None, logits=None,
                    num_clusters=None, class_names=None):
    """Every picture the run's data allows, into ``out``; returns the paths written."""
    written = [plot_curves(os.path.join(out, "curves.png"), history, candidate_histories(out))]
    if assignments is not None and y is not None:
        written.append(plot_confusion(os.path.join(out, "confusion.png"), y, assignments, title, class_names))
    if assignments is not None and x is not None and x.dim() == 4:
        confidence = logits.float().softmax(1).max(1).values.numpy()
        written.append(plot_clusters(os.path.join(out, "clusters.png"), x.numpy(), assignments, confidence,
                                     title, y, num_clusters))
    return [path for path in written if path]
