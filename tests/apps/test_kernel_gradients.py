"""apps/kernel_gradients.py: a frozen layer really drops its gradient; bad input is one line."""

from __future__ import annotations

import json

import pytest

from tests.helpers.apps import load_app
from tests.helpers.paths import REPO_ROOT

SMOKE = str(REPO_ROOT / "configs" / "smoke.json")


@pytest.fixture(scope="module")
def app():
    return load_app("kernel_gradients")


def test_each_frozen_layer_trains_without_its_own_weights(app, tmp_path):
    out = tmp_path / "kg.json"
    code = app.main(
        [
            "--config",
            SMOKE,
            "--layers",
            "encoder/conv_1,head/projection",
            "--batch-size",
            "16",
            "--images",
            "64",
            "--steps",
            "1",
            "--repeats",
            "1",
            "--warmup-steps",
            "1",
            "--warmup-rounds",
            "0",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    record = json.loads(out.read_text())
    rows = {r["frozen"]: r for r in record["rows"]}
    assert set(rows) == {None, "mixture_vae/encoder/conv_1", "mixture_vae/decoder/head/projection"}
    # The smoke encoder's second conv: 3x3, 8 -> 16 filters, plus a bias; the head's
    # projection is the model's other 3x3 conv. Frozen, each leaves exactly its weights out.
    full = rows[None]["trainable_params"]
    assert full - rows["mixture_vae/encoder/conv_1"]["trainable_params"] == 3 * 3 * 8 * 16 + 16
    assert rows["mixture_vae/decoder/head/projection"]["trainable_params"] < full
    for r in record["rows"]:
        assert r["ms_per_step"] > 0 and len(r["ms_per_step_each_epoch"]) == 1
    assert rows[None]["gradient_ms"] is None
    frozen = rows["mixture_vae/encoder/conv_1"]
    assert frozen["gradient_ms"] == pytest.approx(rows[None]["ms_per_step"] - frozen["ms_per_step"])


def test_epochs_are_interleaved_after_the_untimed_rounds(app):
    calls = []

    class History:
        history = {"loss": [0.0]}

    class Model:
        def __init__(self, name):
            self.name = name

        def fit(self, dataset, epochs, steps_per_epoch, shuffle, verbose):
            calls.append(self.name)
            return History()

    models = {"all trained": Model("a"), "x/conv": Model("b")}
    times = app.time_epochs(models, dataset=None, steps=2, repeats=3, warmup_rounds=1)
    assert calls == ["a", "b"] * 4  # one model's epoch, then the other's, 1 + 3 rounds
    assert {name: len(v) for name, v in times.items()} == {"all trained": 3, "x/conv": 3}


def test_summary_takes_the_cost_from_the_medians(app):
    times = {"all trained": [50.0, 40.0, 60.0], "a/conv": [30.0, 35.0, 100.0]}
    rows = app.summarize(times, {"all trained": 10, "a/conv": 7}, batch_size=100)
    by = {r["frozen"]: r for r in rows}
    assert by["a/conv"]["gradient_ms"] == pytest.approx(50.0 - 35.0)
    assert by["a/conv"]["gradient_share"] == pytest.approx(15.0 / 50.0)
    assert by[None]["images_per_s"] == pytest.approx(2000.0)
    table = app.markdown(rows, "header")
    assert "| `a/conv` | 7 | 35.0 | 15.0 | 30% |" in table


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--layers", "encoder/nope"], "--layers: 'encoder/nope' matches no layer with weights"),
        (["--layers", "conv_0"], "--layers: 'conv_0' matches 2 layers"),
        (["--json", "/no/such/folder/kg.json"], "--json: no folder"),
    ],
)
def test_bad_input_is_one_error_line(app, capsys, argv, message):
    assert app.main(["--config", SMOKE, *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]


def test_a_bad_count_is_a_usage_error(app, capsys):
    with pytest.raises(SystemExit) as e:
        app.main(["--config", SMOKE, "--repeats", "0"])
    assert e.value.code == 2 and "--repeats must be at least 1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        app.main(["--config", SMOKE, "--warmup-rounds", "-1"])
    assert e.value.code == 2 and "--warmup-rounds must be at least 0" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        app.main(["--config", SMOKE, "--images", "8", "--batch-size", "16"])
    assert e.value.code == 2 and "--images must be at least --batch-size" in capsys.readouterr().err
