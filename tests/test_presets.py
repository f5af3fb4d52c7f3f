"""Presets: named settings on top of a method's defaults, per input kind, overridden by what the
user gives; recorded in config.json and held fixed on resume."""
import json

import pytest

from fastclust import cli
from fastclust.errors import ParameterError
from fastclust.trainers import METHODS


def test_a_presets_values_reach_the_method_by_input_kind():
    large = METHODS["pica"]((1, 28, 28), 10)
    assert large.preset == "tuned" and large.restarts == 3
    assert (large.params["epochs"], large.params["overcluster"], large.params["lr"]) == (90, 30, 3e-3)
    small = METHODS["pica"]((1, 8, 8), 10)
    assert small.restarts == 2 and small.params["epochs"] == 60 and small.params["overcluster"] == 70
    aedac = METHODS["aedac"]((1, 28, 28), 10)
    assert aedac.params["strides"] == (1, 1, 2, 2) and aedac.params["head_hidden"] == 256
    assert METHODS["aedac"]((1, 8, 8), 10).params["strides"] == (2, 2, 2, 2)
    paper = METHODS["dac"]((1, 28, 28), 10, preset="paper")
    assert paper.restarts == 1 and paper.params["widths"] == (64, 128) and paper.params["lr_decay"] == "none"
    assert paper.num_epochs() == 51  # the paper's schedule in full


def test_given_parameters_override_the_preset():
    method = METHODS["pica"]((1, 28, 28), 10, {"epochs": 5, "overcluster": 12}, preset="tuned")
    assert method.params["epochs"] == 5 and method.params["overcluster"] == 12 and method.params["lr"] == 3e-3
    with pytest.raises(ParameterError, match="dac: unknown preset 'fast'; known: tuned, paper"):
        METHODS["dac"]((1, 8, 8), 10, preset="fast")


TINY = ["--no-progress", "--batch-size", "256", "--set", "widths=4,8", "--set", "lr_decay=none"]


def test_the_command_line_records_the_preset_and_resume_refuses_another(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", "dac", "--data", "digits", "--preset", "paper", "--epochs", "1", "--out",
                     str(out), *TINY]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["preset"] == "paper"
    assert config["params"]["depth"] == 3  # the paper's, not the default 1
    assert config["params"]["widths"] == [4, 8]  # --set wins over the preset
    with pytest.raises(SystemExit, match="preset 'tuned' differs from the run's 'paper'"):
        cli.main(["train", "--resume", str(out), "--preset", "tuned", "--no-progress"])
    assert cli.main(["train", "--resume", str(out), "--preset", "paper", "--epochs", "2", "--no-progress"]) == 0


def test_a_presets_restarts_apply_unless_the_run_is_too_short(tmp_path):
    assert cli.main(["train", "dsec", "--data", "digits", "--epochs", "2", "--out", str(tmp_path / "two"),
                     *TINY]) == 0
    assert json.loads((tmp_path / "two" / "config.json").read_text())["restarts"] == 2
    assert (tmp_path / "two" / "restarts.json").exists()
    assert cli.main(["train", "dsec", "--data", "digits", "--epochs", "1", "--out", str(tmp_path / "one"),
                     *TINY]) == 0
    assert json.loads((tmp_path / "one" / "config.json").read_text())["restarts"] == 1
    assert cli.main(["train", "dsec", "--data", "digits", "--epochs", "2", "--restarts", "1", "--out",
                     str(tmp_path / "own"), *TINY]) == 0
    assert json.loads((tmp_path / "own" / "config.json").read_text())["restarts"] == 1
