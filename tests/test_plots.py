"""The run's pictures (fastclust.plots): written, of a sensible size, without an exception; and
the cluster order that puts matched clusters on the confusion matrix's diagonal. What they show
was looked at when they were made; tests check that they are made."""
import json
import shutil

import numpy as np
import pytest
import torch

from fastclust import cli, plots

pytest.importorskip("matplotlib")
from PIL import Image  # noqa: E402


def png_size(path):
    with Image.open(path) as image:
        return image.size


def test_cluster_order_puts_matched_clusters_on_the_diagonal():
    y = np.array([0, 0, 1, 1, 2, 2, 2])
    assignments = np.array([2, 2, 0, 0, 1, 1, 3])
    assert plots.cluster_order(assignments, y) == [2, 0, 1, 3]  # classes 0, 1, 2, then unmatched
    assert plots.cluster_order(assignments, None, num_clusters=5) == [0, 1, 2, 3, 4]  # by size, ties by id
    assert plots.cluster_order(np.array([1, 1, 1, 0]), None) == [1, 0]


def test_every_picture_is_written(tmp_path):
    history = [{"epoch": e, "u": 0.9 - 0.01 * e, "l": 0.5, "loss": 1 / e, "pos": 10 * e, "neg": 100,
                "acc": 0.5 + 0.1 * e, "nmi": 0.4, "ari": 0.3, "clusters_used": 3, "seconds": 1.0}
               for e in range(1, 4)]
    candidate = tmp_path / "restarts" / "seed-1"
    candidate.mkdir(parents=True)
    (candidate / "metrics.json").write_text(json.dumps({"history": history[:1]}))
    x = torch.rand(30, 1, 8, 8)
    y = np.arange(30) % 3
    logits = torch.randn(30, 4)
    written = plots.write_run_plots(tmp_path, history, "test", x, y, logits.argmax(1).numpy(), logits, 4)
    assert [p.rsplit("/", 1)[1] for p in written] == ["curves.png", "confusion.png", "clusters.png"]
    width, height = png_size(tmp_path / "curves.png")
    assert width > 3 * height > 600  # four panels side by side
    width, height = png_size(tmp_path / "clusters.png")
    assert width > 400 and height > 150  # 10 images per row, one row per used cluster
    # Colour images, and no labels: no confusion matrix.
    (tmp_path / "rgb").mkdir()
    written = plots.write_run_plots(tmp_path / "rgb", [], "rgb", torch.rand(12, 3, 9, 9), None,
                                    np.arange(12) % 2, torch.randn(12, 2), 2)
    assert [p.rsplit("/", 1)[1] for p in written] == ["clusters.png"]


def test_fastclust_plot_redraws_a_finished_and_an_interrupted_run(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", "dac", "--data", "digits", "--epochs", "2", "--out", str(out), "--no-progress",
                     "--batch-size", "256", "--set", "widths=4,8", "--set", "lr_decay=none"]) == 0
    for name in ("curves.png", "confusion.png", "clusters.png"):
        assert png_size(out / name)[0] > 300, name
        (out / name).unlink()
    interrupted = tmp_path / "interrupted"
    shutil.copytree(out, interrupted)
    (interrupted / "model.pt").unlink()  # the checkpoint is then the model
    for run in (out, interrupted):
        assert cli.main(["plot", str(run)]) == 0
        assert "curves.png" in capsys.readouterr().out
        assert all((run / name).exists() for name in ("curves.png", "confusion.png", "clusters.png"))
    with pytest.raises(SystemExit, match="holds no run"):
        cli.main(["plot", str(tmp_path / "nothing")])
