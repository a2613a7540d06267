"""Tests of what `fit` prints (kmixvae.training.progress) and of the inference progress bars."""

from __future__ import annotations

import io

import numpy as np

from kmixvae.config import Config
from kmixvae.objectives import OBJECTIVES, Objective, register_objective, training_only_metrics
from kmixvae.training.progress import (
    DropUncomputedValidation,
    format_epoch_line,
    summarize_config,
)
from kmixvae.utils.progress import attached_to_terminal, track

LOGS = {
    "loss": 52.83201,
    "nelbo": 63.9486,
    "val_nelbo": 75.1088,
    "val_cluster_acc": 0.8375,
    "active_channels": 10.0,
    "usage_0": 0.1,
    "val_usage_0": 0.1,
    "neighbor_agreement": 0.86,
}


def test_epoch_line_holds_the_watched_numbers_and_is_short():
    line = format_epoch_line(11, 15, LOGS, 8.43, num_channels=10)
    assert line == (
        "epoch 11/15  loss 52.832  -ELBO 63.95 (val 75.11)  acc 83.8%  channels 10/10  8.4 s"
    )
    assert len(line) < 100


def test_epoch_line_without_validation_or_labels():
    line = format_epoch_line(1, 3, {"loss": 1.0, "nelbo": float("nan")}, 0.5)
    assert line == "epoch 1/3  loss 1.000  -ELBO -  0.5 s"


def test_validation_keeps_only_what_it_computes():
    terms = training_only_metrics()
    assert set(terms) == {"neighbor_agreement", "self_label_share", "view_agreement"}  # built-in
    logs = dict(LOGS, **{f"val_{t}": 0.0 for t in terms})
    DropUncomputedValidation().on_epoch_end(0, logs)
    assert not [t for t in terms if f"val_{t}" in logs]
    assert logs["neighbor_agreement"] == 0.86 and "val_nelbo" in logs and "val_usage_0" in logs


class PairedOnly(Objective):
    section = "paired_only"
    views = ("augmented",)
    metrics = ("paired_value", "plain_value")
    training_only_metrics = ("paired_value",)


def test_a_new_objectives_training_only_metrics_are_dropped():
    register_objective(PairedOnly)
    try:
        logs = {"val_paired_value": 0.0, "val_plain_value": 1.0, "val_nelbo": 2.0}
        DropUncomputedValidation().on_epoch_end(0, logs)
    finally:
        OBJECTIVES.pop("paired_only")
    assert logs == {"val_plain_value": 1.0, "val_nelbo": 2.0}


def test_config_summary_is_a_few_lines():
    text = summarize_config(Config(), "runs/x")
    lines = text.splitlines()
    assert 3 <= len(lines) <= 6 and all(len(line) < 130 for line in lines)
    assert "runs/x" in text and "config.json" in text and "K=" in text


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_track_is_silent_off_a_terminal(capsys):
    assert list(track(range(0, 10, 2), total=10, step=2, label="x")) == [0, 2, 4, 6, 8]
    assert capsys.readouterr().out == ""
    assert not attached_to_terminal(io.StringIO())


def test_track_shows_a_bar_on_a_terminal(monkeypatch, capsys):
    fake = FakeTerminal()
    monkeypatch.setattr("sys.stdout", fake)
    starts = list(track(np.arange(0, 10, 2), total=10, step=2, label="evaluate", stream=fake))
    assert starts == [0, 2, 4, 6, 8]
    shown = fake.getvalue()
    assert "evaluate" in shown and "10/10" in shown


def test_fit_history_has_no_validation_values_for_training_only_terms(tmp_path):
    from tests.helpers.cli import run_cli
    from tests.helpers.runs import SMOKE, read_history, tiny_sets, write_patterns

    data = write_patterns(tmp_path / "data")
    run = tmp_path / "run"
    sets = tiny_sets(
        tmp_path,
        "training.epochs=1",
        "curriculum.enabled=false",
        "data.neighbors=5",
        "loss.neighbor.weight=1.0",
        "loss.self_label.weight=1.0",
        "output.report=false",
    )
    _, out, _ = run_cli("fit", "--config", SMOKE, "--data-dir", data, "--run-dir", run, *sets)
    row = read_history(run / "history.csv")[0]
    assert "neighbor_agreement" in row and "self_label_share" in row  # training computes them
    assert not [t for t in training_only_metrics() if f"val_{t}" in row]
    assert "val_nelbo" in row and "val_usage_0" in row  # validation's own values stay
    assert [line for line in out.splitlines() if line.startswith("epoch 1/1  loss ")]
    assert not (run / "report.html").exists()  # output.report=false is honoured
