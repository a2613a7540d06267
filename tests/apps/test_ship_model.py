"""apps/ship_model.py: ships a finished run as an inference-only model plus its model card."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.helpers.apps import load_app
from tests.helpers.cli import run_cli
from tests.helpers.runs import SMOKE, tiny_sets, write_patterns


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ship")
    data = write_patterns(tmp / "data")
    run = tmp / "run"
    run_cli(
        "fit",
        "--config",
        SMOKE,
        "--data-dir",
        data,
        "--run-dir",
        run,
        *tiny_sets(tmp, "training.epochs=1", "curriculum.enabled=false", "output.report=false"),
    )
    out = tmp / "models" / "tiny.keras"
    ship = load_app("ship_model")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp)
        code = ship.main(
            [
                "--run",
                str(run),
                "--command",
                "kmixvae fit --tiny",
                "--out",
                str(out),
                "--iwae-samples",
                "2",
            ]
        )
    assert code == 0
    return {"run": run, "out": out, "card": out.with_suffix(".md")}


def test_model_is_inference_only_and_smaller_than_the_checkpoint(shipped):
    from kmixvae.runs import load_model_file

    assert shipped["out"].stat().st_size < (shipped["run"] / "model.keras").stat().st_size
    model = load_model_file(shipped["out"])
    assert getattr(model, "optimizer", None) is None
    assert model.active_channels == (0, 1, 2)


def test_card_holds_data_command_config_versions_and_metrics(shipped):
    card = shipped["card"].read_text()
    assert "- training: `train` (96 images" in card
    assert "- validation: `test` (48 images" in card
    assert "- command: `kmixvae fit --tiny`" in card
    assert "keras 3." in card and "backend " in card and "- date: " in card
    for kind, label in (
        ("clustering", "accuracy (1-to-1)"),
        ("clustering", "specialised channels"),
        ("likelihood", "reconstruction MSE"),
        ("likelihood", "IWAE log p(x) (nats)"),
        ("likelihood", "negative ELBO (nats)"),
        ("generation", "judge accuracy on these images"),
    ):
        assert f"| {kind} | {label} | " in card
    assert "48 images of `test`" in card
    assert "| channel | status | images | usage | purity |" in card  # what each channel holds
    assert len([line for line in card.splitlines() if line.startswith("| 1 | ")]) == 1
    config = json.loads(card.split("```json\n", 1)[1].split("```", 1)[0])
    assert config["name"] == "smoke" and config["training"]["epochs"] == 1


def test_card_lists_each_figure_once(shipped):
    """evaluate reports the judge's accuracy, the sample consistency and the reconstruction
    MSE at the top level and again under `generation`: the card shows each once."""
    card = shipped["card"].read_text()
    table = card.split("| kind | metric | value |", 1)[1].split("\n\n", 1)[0]
    rows = [line.split(" | ")[1] for line in table.splitlines()[2:]]
    assert rows and len(rows) == len(set(rows)), rows
    for figure in ("judge accuracy on these images", "sample consistency", "reconstruction MSE"):
        assert rows.count(figure) == 1, figure
    for repeated in ("generation.judge_accuracy", "generation.sample_consistency", "elbo_log_px"):
        assert repeated not in card, repeated
    assert "Evaluation on" not in card  # evaluate's printout repeats every figure: not copied


def test_metric_rows_show_an_unknown_number_once_under_its_key():
    ship = load_app("ship_model")
    metrics = {"accuracy": 0.5, "new_score": 1.25, "seed": 3, "generation": {"extra": 2.0}}
    rows = ship.metric_rows(metrics)
    assert rows == [
        "| clustering | accuracy (1-to-1) | 50.00% |",
        "| other | new_score | 1.25 |",
        "| other | generation.extra | 2 |",
    ]


def test_bad_arguments_are_one_line_errors(tmp_path, capsys):
    ship = load_app("ship_model")
    assert ship.main(["--run", str(tmp_path), "--out", str(tmp_path / "m.keras")]) == 2
    assert capsys.readouterr().err.startswith("error: --run needs --command")
    assert ship.main(["--run", str(tmp_path), "--command", "x", "--out", "m.h5"]) == 2
    assert (
        ship.main(
            ["--run", str(tmp_path / "none"), "--command", "x", "--out", str(tmp_path / "m.keras")]
        )
        == 2
    )
    assert "error:" in capsys.readouterr().err
    assert not (tmp_path / "m.keras").exists()


def _git(repo, *args):
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=repo,
        check=True,
        capture_output=True,
    )


def test_git_line_names_the_changed_paths(tmp_path):
    ship = load_app("ship_model")
    repo = tmp_path / "repo"
    (repo / "docs").mkdir(parents=True)
    (repo / "saved_models").mkdir()
    (repo / ".gitignore").write_text("runs/\n")
    (repo / "docs" / "x.md").write_text("a\n")
    (repo / "saved_models" / "README.md").write_text("card\n")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "first")
    commit = ship._git(repo, "rev-parse", "--short", "HEAD")[0]
    # Ignored files and the shipped files themselves leave the line clean.
    (repo / "runs").mkdir()
    (repo / "runs" / "log.txt").write_text("x\n")
    (repo / "saved_models" / "README.md").write_text("new card\n")
    assert ship.git_line(repo) == commit
    (repo / "docs" / "x.md").write_text("b\n")
    assert ship.git_line(repo) == f"{commit} (uncommitted changes in: docs/x.md)"
    (repo / "new.py").write_text("\n")
    (repo / "docs" / "y.md").write_text("\n")
    _git(repo, "add", "docs/y.md")  # staged counts too
    assert ship.git_line(repo, max_paths=1) == (
        f"{commit} (uncommitted changes in: docs/x.md and 1 more; untracked: new.py)"
    )
    assert ship.git_line(tmp_path / "missing") is None  # no such folder: no git line


def test_fashion_preset_trains_on_its_splits_and_ships_as_a_preset(shipped, tmp_path, monkeypatch):
    """The Fashion-MNIST preset's command and, on the tiny run, its card and presets entry."""
    from kmixvae import presets

    ship = load_app("ship_model")
    monkeypatch.delenv("DATA_DIR", raising=False)
    argv = ship.train_argv("fashion_mnist_film_het", tmp_path / "run")
    assert argv[1:3] == ["-m", "kmixvae.cli"] and argv[3] == "fit"
    for needed in (
        "configs/film_het.json",
        "../shared/data/fashion-mnist-train",
        "data.train_split=train[:8000]",
        "data.val_split=train[50000:52000]",
        "data.name=fashion_mnist",
    ):
        assert needed in argv, needed
    assert argv[-2:] == ["--run-dir", str(tmp_path / "run")]
    monkeypatch.setenv("DATA_DIR", "/data/fm")
    assert "/data/fm" in ship.train_argv("fashion_mnist_film_het", tmp_path / "run")
    assert ship.train_argv("mnist_film_het", tmp_path / "r")[:2] == ["bash", "scripts/main.sh"]

    folder = tmp_path / "presets"
    out = folder / "fashion_mnist_film_het.keras"
    code = ship.main(
        ["--preset", "fashion_mnist_film_het", "--run", str(shipped["run"]), "--command",
         "kmixvae fit --fashion", "--out", str(out), "--iwae-samples", "2"]
    )  # fmt: skip
    assert code == 0
    card = out.with_suffix(".md").read_text()
    assert "trained without labels on Fashion-MNIST by `kmixvae fit --fashion`" in card
    assert "    kmixvae sample fashion_mnist_film_het --channel 3" in card
    assert "kmixvae.load_preset('fashion_mnist_film_het')" in card
    listed = presets.list_presets(folder)
    assert list(listed) == ["fashion_mnist_film_het"]
    assert listed["fashion_mnist_film_het"].startswith("Fashion-MNIST, 3 channels with")
    assert "clustering accuracy on test)" in listed["fashion_mnist_film_het"]
    model = presets.load_preset("fashion_mnist_film_het", folder)
    assert model.active_channels == (0, 1, 2)


def test_default_out_is_the_preset_location():
    ship = load_app("ship_model")
    assert ship.PRESETS_DIR == "kmixvae/presets" and ship.DEFAULT_PRESET == "mnist_film_het"
    assert set(ship.PRESETS) == {"mnist_film_het", "fashion_mnist_film_het"}
