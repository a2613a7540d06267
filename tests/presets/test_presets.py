"""Presets: shipped models loaded by name, in Python and by every command that takes a model.

The mechanism is tested with a tiny model in a temporary presets folder (the
package's folder patched), on the backend in KERAS_BACKEND (the suite runs
once per backend); the package's own presets are checked to be listed,
loadable and declared as package data.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import kmixvae
from kmixvae import presets
from kmixvae.errors import ModelFileError
from tests.helpers.cli import run_cli
from tests.helpers.paths import REPO_ROOT
from tests.helpers.runs import PNG_MAGIC, write_patterns


@pytest.fixture()
def tiny_presets(tmp_path, monkeypatch, tiny_model):
    """A presets folder holding `tiny_digits` (a saved tiny model) and a listed-but-missing one."""
    from kmixvae.runs import save_for_inference

    folder = tmp_path / "presets"
    folder.mkdir()
    save_for_inference(tiny_model(), folder / "tiny_digits.keras")
    (folder / "tiny_digits.md").write_text("# tiny_digits.keras\n")
    presets.write_entry(folder, "tiny_digits", "tiny_digits.keras", "tiny_digits.md", "a tiny one")
    presets.write_entry(folder, "not_shipped", "not_shipped.keras", None, "file missing")
    monkeypatch.setattr(presets, "PRESETS_DIR", folder)
    return folder


def test_list_load_and_paths(tiny_presets):
    assert kmixvae.list_presets() == {"tiny_digits": "a tiny one"}  # not_shipped: no file
    assert presets.preset_path("tiny_digits") == tiny_presets / "tiny_digits.keras"
    assert presets.card_path("tiny_digits") == tiny_presets / "tiny_digits.md"
    model = kmixvae.load_preset("tiny_digits")
    assert model.num_channels == 3 and getattr(model, "optimizer", None) is None
    out = model.encode(np.random.default_rng(0).random((4, 28, 28, 1)).astype("float32"))
    assert np.asarray(out["q"]).shape == (4, 3)
    for bad in ("nope", "not_shipped"):
        with pytest.raises(ModelFileError, match=r"presets: tiny_digits;"):
            kmixvae.load_preset(bad)


def test_an_existing_path_wins_over_a_preset_name(tiny_presets, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert presets.resolve_model_path("tiny_digits") == str(tiny_presets / "tiny_digits.keras")
    (tmp_path / "tiny_digits").mkdir()  # a folder of that name here: the path, as given
    assert presets.resolve_model_path("tiny_digits") == "tiny_digits"
    # Paths (a folder part or a suffix) are never read as names: the loader says "does not exist".
    assert presets.resolve_model_path("runs/x") == "runs/x"
    assert presets.resolve_model_path("x.keras") == "x.keras"


def test_cli_lists_presets_and_takes_their_names(tiny_presets, tmp_path):
    _, out, _ = run_cli("presets")
    assert out.splitlines() == ["tiny_digits  a tiny one"]
    png = tmp_path / "s.png"
    run_cli("sample", "tiny_digits", "--channel", 1, "--n", 4, "--out", png)
    assert png.read_bytes()[:8] == PNG_MAGIC
    data = write_patterns(tmp_path / "data")
    npz = tmp_path / "e.npz"
    run_cli("encode", "tiny_digits", "--data-dir", data, "--split", "test[:8]", "--out", npz)
    assert np.load(npz)["q"].shape == (8, 3)
    run_cli("reconstruct", "tiny_digits", "--data-dir", data, "--split", "test[:8]",
            "--n", 4, "--out", tmp_path / "r.png")  # fmt: skip
    _, out, _ = run_cli("evaluate", "tiny_digits", "--data-dir", data, "--split", "test",
                        "--iwae-samples", 1, "--samples-per-channel", 0)  # fmt: skip
    assert "accuracy (1-to-1)" in out


@pytest.mark.parametrize(
    "command",
    [
        ["sample", "--out", "x.png"],
        ["encode", "--out", "x.npz"],
        ["evaluate"],
        ["visualize", "--out", "figs"],
        ["report", "--out", "x.html"],
        ["export-projector", "--out", "tb"],
        ["reconstruct", "--out", "x.png"],
    ],
)
def test_an_unknown_name_is_one_error_line_listing_the_presets(tiny_presets, tmp_path, command):
    result, out, err = run_cli(command[0], "mnist_film", *command[1:], expect=2)
    assert err.startswith("error: 'mnist_film' is neither a model file, a run folder nor a preset")
    assert "(presets: tiny_digits;" in err and len(err.splitlines()) == 1
    assert not any(Path(p).exists() for p in ("x.png", "x.npz", "figs", "x.html", "tb"))


def test_no_presets_installed_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(presets, "PRESETS_DIR", tmp_path)
    _, out, _ = run_cli("presets")
    assert out.startswith("no presets installed")
    with pytest.raises(ModelFileError, match="none are installed"):
        presets.preset_path("mnist_film_het")


def test_the_package_ships_mnist_film_het_as_package_data():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    listed = kmixvae.list_presets()
    assert "mnist_film_het" in listed and listed["mnist_film_het"].startswith("MNIST, 10 channels")
    index = json.loads((REPO_ROOT / "kmixvae" / "presets" / "presets.json").read_text())
    for entry in index.values():  # every listed file and card is there
        assert (REPO_ROOT / "kmixvae" / "presets" / entry["file"]).is_file()
        assert (
            entry["card"] is None or (REPO_ROOT / "kmixvae" / "presets" / entry["card"]).is_file()
        )
    package_data = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["kmixvae.presets"]
    assert {"*.keras", "*.json", "*.md"} <= set(package_data)
    _, out, _ = run_cli("presets")
    rows = {line.split()[0]: line for line in out.splitlines()}
    assert set(rows) == set(listed)  # one line per preset, each with its description
    assert rows["mnist_film_het"].split(None, 1)[1] == listed["mnist_film_het"]
