"""Tests of kmixvae.runs: claiming run folders, model files with their training data, the
history CSV, write errors and interrupts (the CLI's side of each: test_reliability.py).

Runs on the backend in KERAS_BACKEND (tensorflow or jax).
"""

from __future__ import annotations

import errno
import signal
import threading
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest

from kmixvae import config as config_lib
from kmixvae.errors import ConfigError, DataError, ModelFileError, WriteError
from kmixvae.runs import (
    RUN_MARKER,
    TRAINING_DATA_ENTRY,
    Interrupted,
    check_run_dir,
    check_writable,
    claim_run_dir,
    describe_training_data,
    folder_data,
    history_columns,
    load_model_file,
    read_history_csv,
    read_training_data,
    release_run_dir,
    rows_to_csv,
    save_for_inference,
    save_model_atomic,
    signals_as_interrupt,
)
from kmixvae.runs import folder as folder_lib
from kmixvae.runs.interrupts import deferred
from kmixvae.utils.files import atomic_write_text
from tests.helpers.paths import REPO_ROOT


def _config(tmp_path: Path, name="probe") -> config_lib.Config:
    return config_lib.from_dict({"name": name, "output": {"runs_dir": str(tmp_path / "runs")}})


# ---------------------------------------------------------------------- the run folder


def test_one_of_many_simultaneous_claims_of_a_folder_wins(tmp_path):
    """Eight threads claim one --run-dir at the same instant: exactly one gets it."""
    target = tmp_path / "run"
    barrier = threading.Barrier(8)
    won, refused = [], []

    def claim():
        barrier.wait()
        try:
            won.append(claim_run_dir(_config(tmp_path), target))
        except ConfigError as e:
            refused.append(str(e))

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert won == [target] and len(refused) == 7
    assert all("already exists" in message for message in refused)
    assert (target / RUN_MARKER).is_file()


def test_a_clock_name_taken_in_the_same_second_gets_a_suffix(tmp_path, monkeypatch):
    monkeypatch.setattr(folder_lib, "run_stamp", lambda: "20261202_101500")
    first = claim_run_dir(_config(tmp_path))
    second = claim_run_dir(_config(tmp_path))
    assert first.name == "probe__20261202_101500"
    assert second.name == "probe__20261202_101500_2"
    assert (first / RUN_MARKER).is_file() and (second / RUN_MARKER).is_file()


def test_an_empty_given_folder_is_claimed_and_a_full_one_refused(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert claim_run_dir(_config(tmp_path), empty) == empty
    full = tmp_path / "full"
    full.mkdir()
    (full / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="already exists and is not empty"):
        claim_run_dir(_config(tmp_path), full)
    assert sorted(p.name for p in full.iterdir()) == ["notes.txt"]


def test_release_removes_only_what_the_claim_made(tmp_path):
    path = claim_run_dir(_config(tmp_path))
    release_run_dir(path)
    assert not path.exists()
    given = tmp_path / "given"
    claim_run_dir(_config(tmp_path), given)
    release_run_dir(given, remove_folder=False)
    assert given.is_dir() and not any(given.iterdir())


def test_a_claim_under_a_regular_file_is_one_write_error(tmp_path):
    (tmp_path / "plain.txt").write_text("x")
    with pytest.raises(WriteError, match="plain.txt/run") as info:
        claim_run_dir(_config(tmp_path), tmp_path / "plain.txt" / "run")
    assert "\n" not in str(info.value)


def test_check_writable_finds_a_file_on_the_way(tmp_path):
    (tmp_path / "plain.txt").write_text("x")
    with pytest.raises(WriteError, match="is a file, not a folder"):
        check_writable(tmp_path / "plain.txt" / "a" / "m.keras")
    with pytest.raises(WriteError, match="is a folder"):
        check_writable(tmp_path)
    assert check_writable(tmp_path / "new" / "deeper" / "m.keras")
    assert not (tmp_path / "new").exists()  # nothing was written


def test_check_run_dir_needs_the_marker(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        check_run_dir(tmp_path / "none")
    with pytest.raises(ModelFileError, match="not a kmixvae run folder"):
        check_run_dir(tmp_path)
    (tmp_path / RUN_MARKER).write_text("{}")
    assert check_run_dir(tmp_path) == tmp_path


def test_an_os_error_during_a_write_is_one_line_and_leaves_nothing(tmp_path):
    def full_disk(tmp):
        Path(tmp).write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device")

    from kmixvae.utils import files

    with pytest.raises(WriteError) as info:
        files.atomic_write(tmp_path / "out.txt", full_disk)
    assert str(info.value) == f"cannot write {str(tmp_path / 'out.txt')!r}: No space left on device"
    assert isinstance(info.value, OSError)  # a cache that tolerates failed writes still does
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------- model files


@pytest.fixture(scope="module")
def model():
    from tests.helpers.tiny import tiny_model

    return tiny_model()


def test_a_model_file_carries_its_training_data(model, tmp_path):
    data = config_lib.DataConfig(
        source="idx",
        dir="../shared/data/mnist-10k",
        train_split="test[:80%]",
        val_split="test[80%:]",
    )
    described = describe_training_data(data)
    path = tmp_path / "m.keras"
    save_model_atomic(model, path, training_data=described)
    assert read_training_data(path) == {
        "name": "mnist",
        "source": "idx",
        "dir": "../shared/data/mnist-10k",
        "train_split": "test[:80%]",
        "val_split": "test[80%:]",
    }
    # Keras itself loads the file (the entry is ignored), and so does kmixvae.
    assert isinstance(keras.models.load_model(path), type(model))
    assert load_model_file(path).num_channels == model.num_channels
    # The inference copy carries it too.
    save_for_inference(model, tmp_path / "small.keras", training_data=described)
    assert read_training_data(tmp_path / "small.keras") == described


def test_a_model_file_without_training_data_reads_as_none(model, tmp_path):
    model.save(tmp_path / "old.keras")
    assert read_training_data(tmp_path / "old.keras") is None
    with zipfile.ZipFile(tmp_path / "odd.keras", "w") as archive:
        archive.writestr(TRAINING_DATA_ENTRY, "[1, 2]")
    assert read_training_data(tmp_path / "odd.keras") is None
    assert read_training_data(tmp_path / "missing.keras") is None


# ---------------------------------------------------------------------- history


def test_history_csv_round_trip(tmp_path):
    rows = [{"epoch": 1, "loss": 2.5}, {"epoch": 2, "loss": 2.0, "val_loss": 2.25}]
    atomic_write_text(tmp_path / "history.csv", rows_to_csv(rows))
    back = read_history_csv(tmp_path / "history.csv")
    assert back == rows and isinstance(back[0]["epoch"], int)
    columns = history_columns(back)
    assert columns["loss"] == [2.5, 2.0]
    assert columns["epoch"] == [1, 2]
    assert history_columns([]) is None


# ---------------------------------------------------------------------- interrupts


def test_sigterm_raises_interrupted_and_restores_the_handler():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted) as info:
        with signals_as_interrupt():
            signal.raise_signal(signal.SIGTERM)
    assert info.value.signal_name == "SIGTERM" and info.value.exit_code == 143
    assert isinstance(info.value, KeyboardInterrupt)
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_signal_during_a_checkpoint_write_waits_for_it():
    written = []
    with pytest.raises(Interrupted):
        with signals_as_interrupt():
            with deferred():
                signal.raise_signal(signal.SIGTERM)
                written.append("last.keras")
                written.append("last.json")
    assert written == ["last.keras", "last.json"]


def test_a_held_back_signal_is_raised_where_training_checks_for_it():
    """What `StopOnSignal` does at the end of a batch inside `fit_run`'s deferred training."""
    from kmixvae.runs.interrupts import raise_pending

    batches = []
    with pytest.raises(Interrupted) as info:
        with signals_as_interrupt():
            with deferred():
                for batch in range(5):
                    batches.append(batch)
                    if batch == 1:
                        signal.raise_signal(signal.SIGINT)
                    raise_pending()
    assert batches == [0, 1] and info.value.exit_code == 130
    raise_pending()  # raised once only: nothing is pending any more


def test_the_interrupt_line_names_the_resume_command(tmp_path):
    line = Interrupted("SIGTERM", run_dir=tmp_path).message()
    assert line.startswith("terminated (SIGTERM):")
    assert f"kmixvae fit --resume {tmp_path}" in line
    assert Interrupted("SIGINT").exit_code == 130
    assert "\n" not in Interrupted().message()


def test_a_missing_history_value_reads_as_nan(tmp_path):
    path = tmp_path / "h.csv"
    path.write_text("epoch,loss\n1,0.5\n2,\n")
    assert read_history_csv(path) == [{"epoch": 1, "loss": 0.5}, {"epoch": 2}]
    assert np.isnan(history_columns(read_history_csv(path))["loss"][1])


# ---------------------------------------------------------------------- import layering


def _part_imports() -> dict[str, set[str]]:
    """kmixvae's top-level part -> the parts it imports at run time (inside functions counted).

    Imports under `if TYPE_CHECKING:` are for annotations only and never run.
    """
    import ast

    def runtime_nodes(tree):
        stack = [tree]
        while stack:
            node = stack.pop()
            if isinstance(node, ast.If) and ast.unparse(node.test) in (
                "TYPE_CHECKING",
                "typing.TYPE_CHECKING",
            ):
                stack.extend(node.orelse)
                continue
            yield node
            stack.extend(ast.iter_child_nodes(node))

    root = REPO_ROOT / "kmixvae"
    edges: dict[str, set[str]] = {}
    for path in root.rglob("*.py"):
        part = path.relative_to(root).parts[0].removesuffix(".py")
        for node in runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("kmixvae"):
                names = node.module.split(".")[1:2] or [a.name for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name.split(".")[1] for a in node.names if a.name.startswith("kmixvae.")]
            else:
                continue
            edges.setdefault(part, set()).update(n for n in names if n != part)
    return edges


def test_run_folders_models_training_and_viz_import_no_cycle():
    edges = _part_imports()

    def reaches(a, b, seen=()):
        return any(
            n == b or (n not in seen and reaches(n, b, (*seen, n))) for n in edges.get(a, ())
        )

    on_cycles = {tuple(sorted((a, b))) for a in edges for b in edges[a] if reaches(b, a)}
    assert edges["runs"] >= {"models", "config"} and "runs" in edges["training"]
    assert "training" not in edges["models"] and "viz" not in edges["runs"]
    assert on_cycles == set(), on_cycles


def test_folder_data_reads_a_split_of_what_the_folder_holds(tmp_path):
    """The apps' `load_split(folder_data(DIR), split)`: the source is what DIR holds, every
    other field the defaults, and a folder with no data is a DataError naming --data-dir."""
    from kmixvae.data.sources import load_split

    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (10, 28, 28), dtype=np.uint8)
    np.savez(tmp_path / "mnist.npz", x_train=x, y_train=np.arange(10) % 3)
    data = folder_data(tmp_path)
    defaults = config_lib.DataConfig()
    assert (data.source, data.dir) == ("npz", str(tmp_path))
    assert {k: v for k, v in vars(data).items() if k not in ("source", "dir")} == {
        k: v for k, v in vars(defaults).items() if k not in ("source", "dir")
    }
    images, labels = load_split(data, "train[:4]")
    np.testing.assert_array_equal(images[..., 0], x[:4])
    np.testing.assert_array_equal(labels, np.arange(4) % 3)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="--data-dir"):
        folder_data(tmp_path / "empty")
