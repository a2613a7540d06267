"""`apps/epoch_overhead.py`: its summary of per-epoch timings."""

from __future__ import annotations

import pytest

from tests.helpers.apps import load_app


def _row(epoch, wall, step, validation, traces):
    return {
        "epoch": epoch,
        "steps": 4,
        "wall_s": wall,
        "step_s": step,
        "step_median_s": step / 4,
        "first_step_s": step / 4,
        "validation_s": validation,
        "other_s": wall - step - validation,
        "traces": traces,
    }


def test_summary_separates_the_first_epoch_and_the_recompiles():
    app = load_app("epoch_overhead")
    rows = [_row(1, 20.0, 16.0, 2.0, 1), _row(2, 12.0, 10.0, 1.5, 0), _row(3, 15.0, 10.0, 1.5, 1)]
    s = app.summarize(rows)
    assert s["wall_over_steps"] == pytest.approx(47.0 / 36.0)
    assert s["wall_over_steps_after_epoch_1"] == pytest.approx(27.0 / 20.0)
    assert s["wall_over_steps_without_recompile_epochs"] == pytest.approx(12.0 / 10.0)
    assert s["recompiles_after_epoch_1"] == 1 and s["recompile_epochs"] == [3]
    text = app.markdown(rows, s, "header")
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert len(table) == 2 + len(rows)  # header, rule, one line an epoch
    assert "epochs [3]" in text
