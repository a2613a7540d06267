"""Bad input and faults as a careless user meets them (issue 16), through the CLI.

Duplicate JSON keys, split syntax in `config validate`, a batch larger than
the split, `training.steps_per_epoch`, corrupt `.keras` files, `reconstruct
--n`, one quiet stderr line, the TFDS hint, and resuming: kill -9 during a
checkpoint save and during the first epoch (real subprocesses), a finished
run, a NaN in the first epoch, `--set` on resume and an edited run config.

Runs on the backend in KERAS_BACKEND (tensorflow or jax); the stderr check
runs both backends in subprocesses.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from tests.helpers.cli import assert_one_error_line, run_cli
from tests.helpers.passes import once_in_tensorflow_pass
from tests.helpers.processes import kill_when_ready
from tests.helpers.runs import BATCH, N_TRAIN, SMOKE, tiny_sets, write_patterns

RESUME_LOGIC = once_in_tensorflow_pass(
    "resume decisions read run files, not the backend (JAX's resume: test_cli's kill test)"
)

STEPS = N_TRAIN // BATCH  # training steps in one pass over the data


def _fit_args(tmp: Path, data_dir: Path, *extra: str) -> list:
    return [
        "fit",
        "--config",
        SMOKE,
        "--data-dir",
        data_dir,
        *tiny_sets(
            tmp,
            "curriculum.enabled=false",
            "output.tensorboard=false",
            "output.image_every=5",
            "output.projector_samples=2000",
            *extra,
        ),
    ]


def _history(run: Path) -> list[dict]:
    with open(run / "history.csv", newline="") as f:
        return list(csv.DictReader(f))


def _snapshot(folder: Path) -> dict:
    """Every file under `folder` with its bytes and modification time."""
    return {
        str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _temp_files(run: Path) -> list[Path]:
    return sorted(run.rglob(".*.tmp*"))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return write_patterns(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def finished(tmp_path_factory, data_dir):
    """A complete one-epoch run (no curriculum, no TensorBoard)."""
    tmp = tmp_path_factory.mktemp("finished")
    run = tmp / "run"
    _, out, err = run_cli(*_fit_args(tmp, data_dir, "training.epochs=1"), "--run-dir", run)
    return {"tmp": tmp, "run": run, "out": out, "err": err}


def _copy_run(finished, tmp_path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(finished["run"], run)
    return run


# ---------------------------------------------------------------------- configs


@pytest.mark.parametrize(
    "text, key",
    [
        ('{"training": {"epochs": 3, "epochs": 1}}', "training.epochs"),
        ('{"training": {"learning_rate": 0.01}, "training": {"epochs": 1}}', "training:"),
        ('{"model": {"encoder": {"filters": [8], "filters": [8, 16]}}}', "model.encoder.filters"),
    ],
)
def test_duplicate_json_keys_are_rejected_with_their_path(tmp_path, text, key):
    path = tmp_path / "dup.json"
    path.write_text(text)
    result, out, err = run_cli("config", "validate", path, expect=None)
    assert_one_error_line(result, out, err, key, "duplicate key", "dup.json")


@pytest.mark.parametrize(
    "setting, key",
    [
        ("data.train_split=test[:200%]", "data.train_split"),
        ("data.val_split=test[80%", "data.val_split"),
        ("data.train_split=", "data.train_split"),
    ],
)
def test_config_validate_checks_split_syntax(setting, key):
    result, out, err = run_cli("config", "validate", SMOKE, "--set", setting, expect=None)
    assert_one_error_line(result, out, err, key, "split")


def test_config_validate_accepts_good_splits_and_no_validation_split():
    run_cli(
        "config",
        "validate",
        SMOKE,
        "--set",
        "data.val_split=",
        "--set",
        "data.train_split=train[10%:]+test",
    )


def test_batch_larger_than_the_training_split_is_rejected(tmp_path, data_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = _fit_args(tmp_path, data_dir, "training.epochs=1", f"data.batch_size={N_TRAIN + 1}")
    result, out, err = run_cli(*args, expect=None)
    assert result.exit_code == 2, (out, err)
    assert_one_error_line(result, "", err, "data.batch_size", f"{N_TRAIN + 1}", f"{N_TRAIN}")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "settings, key",
    [
        (("data.neighbors=" + str(N_TRAIN), "loss.neighbor.weight=1.0"), "data.neighbors"),
        (
            ("pruning.enabled=true", "pruning.check_epochs=[1]", f"pruning.neighbors={N_TRAIN}"),
            "pruning.neighbors",
        ),
    ],
)
def test_more_neighbours_than_training_images_is_rejected_before_the_run(
    tmp_path, data_dir, monkeypatch, settings, key
):
    monkeypatch.chdir(tmp_path)
    result, out, err = run_cli(*_fit_args(tmp_path, data_dir, *settings), expect=None)
    assert result.exit_code == 2, (out, err)
    assert_one_error_line(result, "", err, key, str(N_TRAIN), "data.train_split")
    assert not (tmp_path / "runs").exists()


def test_hog_graph_of_too_small_images_is_rejected_before_the_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    small = write_patterns(tmp_path / "small", size=3)
    args = _fit_args(
        tmp_path, small, "data.neighbors=4", "data.neighbor_space=hog", "loss.neighbor.weight=1.0"
    )
    result, out, err = run_cli(*args, expect=None)
    assert result.exit_code == 2, (out, err)
    assert_one_error_line(result, "", err, "data.neighbor_space", "4 x 4", "3 x 3")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("pipeline", ["auto", "arrays"])
def test_steps_per_epoch_is_honoured(tmp_path, data_dir, pipeline):
    steps = 2 * STEPS + 1  # more than one pass over the data
    run = tmp_path / "run"
    run_cli(
        *_fit_args(
            tmp_path,
            data_dir,
            "training.epochs=2",
            f"training.steps_per_epoch={steps}",
            f"data.pipeline={pipeline}",
        ),
        "--run-dir",
        run,
    )
    state = json.loads((run / "checkpoints" / "last.json").read_text())
    assert state["epochs_done"] == 2
    assert state["iterations"] == 2 * steps


# ---------------------------------------------------------------------- model files and inference


def _corrupt_files(tmp: Path, good: Path) -> dict[str, Path]:
    raw = good.read_bytes()
    files = {
        "truncated": raw[: len(raw) // 2],
        "random": np.random.default_rng(0).bytes(5000),
        "empty": b"",
    }
    for name, data in files.items():
        (tmp / f"{name}.keras").write_bytes(data)
    return {name: tmp / f"{name}.keras" for name in files}


@pytest.mark.parametrize("command", ["evaluate", "sample", "reconstruct", "encode"])
def test_corrupt_keras_file_is_reported_as_corrupt(finished, tmp_path, data_dir, command):
    files = _corrupt_files(tmp_path, finished["run"] / "model.keras")
    for path in files.values():
        out_file = {"sample": "x.png", "reconstruct": "x.png", "encode": "x.npz"}.get(command)
        args = [command, path]
        if command != "sample":
            args += ["--data-dir", data_dir]
        if out_file:
            args += ["--out", tmp_path / out_file]
        result, out, err = run_cli(*args, expect=None)
        line = assert_one_error_line(
            result,
            out,
            err,
            path.name,
            "not a valid .keras (zip) file",
            f"{path.stat().st_size} bytes",
        )
        assert "File not found" not in line


def test_reconstruct_more_images_than_the_split_is_rejected(finished, tmp_path, data_dir):
    out_png = tmp_path / "r.png"
    args = ["reconstruct", finished["run"], "--data-dir", data_dir, "--split", "test[:3]"]
    result, out, err = run_cli(*args, "--n", 64, "--out", out_png, expect=None)
    assert_one_error_line(result, out, err, "--n", "64", "3 images")
    assert not out_png.exists()
    run_cli(*args, "--n", 3, "--out", out_png)
    assert out_png.is_file()


def test_tfds_hint_names_the_option_of_the_command(finished, tmp_path):
    run = _copy_run(finished, tmp_path)
    config = json.loads((run / "config.json").read_text())
    (tmp_path / "no_tfds").mkdir()
    config["data"].update(source="tfds", dir=str(tmp_path / "no_tfds"))
    (run / "config.json").write_text(json.dumps(config))
    for command in (["evaluate", run], ["reconstruct", run, "--out", tmp_path / "r.png"]):
        result, out, err = run_cli(*command, expect=None)
        line = assert_one_error_line(result, out, err, "not prepared", "--data-dir DIR")
        assert "--set" not in line


def test_data_dir_notice_is_normal_output(finished):
    assert "--data-dir: data.source=npz" in finished["out"]
    assert "--data-dir" not in finished["err"]


def _cli_subprocess(args, backend, cwd):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_CPP", "ABSL"))}
    env["KERAS_BACKEND"] = backend
    cmd = [sys.executable, "-c", "import sys; from kmixvae.cli import main; sys.exit(main())"]
    return subprocess.run(
        cmd + [str(a) for a in args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300
    )


@once_in_tensorflow_pass("it runs a CLI subprocess on each backend itself")
@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_an_error_is_exactly_one_stderr_line(tmp_path, backend):
    """A real process, which imports TensorFlow: its start-up lines must not reach stderr."""
    proc = _cli_subprocess(["evaluate", tmp_path / "missing.keras"], backend, tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), lines
    assert "missing.keras" in lines[0]


# ---------------------------------------------------------------------- resume


def test_run_files_are_readable_like_other_user_files(finished):
    umask = os.umask(0o022)
    os.umask(umask)
    expected = 0o666 & ~umask
    files = [p for p in finished["run"].rglob("*") if p.is_file()]
    files.append(finished["tmp"] / "m.keras")
    assert len(files) >= 7
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == expected, (path, oct(path.stat().st_mode))


def test_resume_of_a_finished_run_leaves_it_untouched(finished, tmp_path):
    run = _copy_run(finished, tmp_path)
    before = _snapshot(run)
    time.sleep(0.01)
    result, out, err = run_cli("fit", "--resume", run)
    assert "is complete" in out and "all 1 epochs" in out
    assert "resolved config" not in out
    assert _snapshot(run) == before


# Early stopping that stops at the first epoch it may (the second): nothing improves by 1e9.
_EARLY_STOPPING = (
    "training.early_stopping.enabled=true",
    "training.early_stopping.patience=1",
    "training.early_stopping.min_delta=1e9",
)


@RESUME_LOGIC
def test_resume_of_an_early_stopped_run_leaves_it_untouched(tmp_path, data_dir):
    run = tmp_path / "run"
    run_cli(*_fit_args(tmp_path, data_dir, "training.epochs=3", *_EARLY_STOPPING), "--run-dir", run)
    state = json.loads((run / "checkpoints" / "last.json").read_text())
    assert state["epochs_done"] == 2
    assert state["early_stopping"] == {"stopped_early": True, "stopped_epoch": 2}
    before = _snapshot(run)
    time.sleep(0.01)
    _, out, _ = run_cli("fit", "--resume", run)
    assert "is complete (early stopping ended it after epoch 2 of 3)" in out
    assert _snapshot(run) == before
    # The advice works: with early stopping off in config.json the run trains on.
    config = json.loads((run / "config.json").read_text())
    config["training"]["early_stopping"] = {"enabled": False}
    (run / "config.json").write_text(json.dumps(config))
    _, out, _ = run_cli("fit", "--resume", run)
    assert "is complete" not in out
    assert [r["epoch"] for r in _history(run)] == ["1", "2", "3"]
    assert "early_stopping" not in json.loads((run / "checkpoints" / "last.json").read_text())


@RESUME_LOGIC
def test_a_run_early_stopping_did_not_stop_is_extended_on_resume(tmp_path, data_dir):
    run = tmp_path / "run"
    run_cli(*_fit_args(tmp_path, data_dir, "training.epochs=1", *_EARLY_STOPPING), "--run-dir", run)
    state = json.loads((run / "checkpoints" / "last.json").read_text())
    assert state["early_stopping"] == {"stopped_early": False, "stopped_epoch": None}
    _, out, _ = run_cli("fit", "--resume", run, "--set", "training.epochs=2")
    assert "is complete" not in out
    assert [r["epoch"] for r in _history(run)] == ["1", "2"]
    assert json.loads((run / "checkpoints" / "last.json").read_text())["epochs_done"] == 2


def test_resume_takes_the_documented_overrides_and_records_them(finished, tmp_path):
    run = _copy_run(finished, tmp_path)
    before = _snapshot(run)
    result, out, err = run_cli("fit", "--resume", run, "--set", "model.latent.dim=4", expect=None)
    assert_one_error_line(
        result, out, err, "model.latent.dim", "training.learning_rate", "training.clipnorm"
    )
    assert _snapshot(run) == before

    run_cli(
        "fit",
        "--resume",
        run,
        "--set",
        "training.epochs=2",
        "--set",
        "training.learning_rate=0.0003",
        "--set",
        "training.clipnorm=1.0",
    )
    config = json.loads((run / "config.json").read_text())
    assert config["training"]["epochs"] == 2
    assert config["training"]["learning_rate"] == 0.0003
    assert config["training"]["clipnorm"] == 1.0
    (entry,) = json.loads((run / "resume_overrides.json").read_text())
    assert entry["after_epoch"] == 1
    assert entry["set"] == [
        "training.epochs=2",
        "training.learning_rate=0.0003",
        "training.clipnorm=1.0",
    ]
    rows = _history(run)
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert float(rows[1]["learning_rate"]) == pytest.approx(0.0003)


def test_an_edited_run_config_is_what_trains_on_resume(finished, tmp_path):
    """The schedule and clipnorm come from config.json; the optimizer's moments and step count
    come from the checkpoint."""
    run = _copy_run(finished, tmp_path)
    path = run / "config.json"
    config = json.loads(path.read_text())
    old_lr = config["training"]["learning_rate"]
    config["training"].update(epochs=2, learning_rate=old_lr / 4, clipnorm=0.5)
    path.write_text(json.dumps(config))
    run_cli("fit", "--resume", run)
    rows = _history(run)
    assert float(rows[0]["learning_rate"]) == pytest.approx(old_lr)
    assert float(rows[1]["learning_rate"]) == pytest.approx(old_lr / 4)
    state = json.loads((run / "checkpoints" / "last.json").read_text())
    assert state["iterations"] == 2 * STEPS  # the step count went on

    from kmixvae.runs import load_model_file

    assert load_model_file(run / "checkpoints" / "last.keras").optimizer.clipnorm == 0.5


def test_rebuilt_optimizer_keeps_the_moments(finished):
    from kmixvae import config as config_lib
    from kmixvae.runs import load_model_file
    from kmixvae.training.resume import rebuild_optimizer

    model = load_model_file(finished["run"] / "checkpoints" / "last.keras")
    before = {
        v.path.split("/", 1)[1]: keras.ops.convert_to_numpy(v.value)
        for v in model.optimizer.variables
    }
    assert int(before["iteration"]) == STEPS
    config = config_lib.load_config(
        finished["run"] / "config.json",
        ["training.learning_rate=0.0001", "training.lr_schedule=cosine"],
    )
    rebuild_optimizer(model, config, STEPS)
    after = {
        v.path.split("/", 1)[1]: keras.ops.convert_to_numpy(v.value)
        for v in model.optimizer.variables
    }
    moments = [k for k in before if k.endswith(("_momentum", "_velocity"))]
    assert moments and any(np.abs(before[k]).max() > 0 for k in moments)
    for key in moments + ["iteration"]:
        np.testing.assert_array_equal(after[key], before[key])
    assert model.optimizer.get_config()["learning_rate"]["class_name"] == "CosineDecay"


def test_nan_in_the_first_epoch_names_no_missing_checkpoint(tmp_path, data_dir):
    run = tmp_path / "run"
    args = _fit_args(tmp_path, data_dir, "training.epochs=2", "training.learning_rate=1e30")
    result, out, err = run_cli(*args, "--run-dir", run, expect=None)
    line = assert_one_error_line(result, "", err, "loss became")
    assert "no checkpoint was written" in line
    assert "last.keras" not in line
    assert not (run / "checkpoints" / "last.keras").exists()
    # The advice works: resuming with a lower learning rate starts the run again.
    assert f"--resume {run} --set training.learning_rate=" in line
    advice = line.split("kmixvae fit ", 1)[1].split(" (or")[0].split()
    assert advice[-1].startswith("training.learning_rate=")
    _, out, _ = run_cli("fit", *advice[:-1], "training.learning_rate=0.001")
    assert "starting it again from scratch" in out
    assert [r["epoch"] for r in _history(run)] == ["1", "2"]


def test_nan_advice_names_the_existing_checkpoint(finished):
    from kmixvae import config as config_lib
    from kmixvae.training.resume import nan_failure_message

    config = config_lib.load_config(finished["run"] / "config.json")
    message = nan_failure_message("loss became nan at batch 1 of epoch 2", finished["run"], config)
    checkpoint = finished["run"] / "checkpoints" / "last.keras"
    assert f"the last good checkpoint is {checkpoint} (epoch 1)" in message
    assert checkpoint.is_file()
    assert f"--resume {finished['run']} --set training.learning_rate=0.0001" in message


# Kills the fit process while `checkpoints/last.keras` is being written for the N-th time:
# the temporary file is complete but not yet renamed.
_SLOW_SAVE = """
import os, sys, time
import keras
from kmixvae.cli import main

save = keras.Model.save
count = [0]

def save_then_hang(self, filepath, *args, **kwargs):
    save(self, filepath, *args, **kwargs)
    if os.path.basename(str(filepath)).startswith(".last.keras."):
        count[0] += 1
        if count[0] == int(os.environ["HANG_AT_SAVE"]):
            open(os.environ["HANG_FLAG"], "w").close()
            time.sleep(600)

keras.Model.save = save_then_hang
sys.exit(main())
"""


def _kill_during_save(tmp: Path, data_dir: Path, save_number: int) -> Path:
    run = tmp / "run"
    flag = tmp / "hanging"
    args = [str(a) for a in _fit_args(tmp, data_dir, "training.epochs=2")]
    env = {
        **os.environ,
        "KERAS_BACKEND": keras.backend.backend(),
        "HANG_AT_SAVE": str(save_number),
        "HANG_FLAG": str(flag),
    }
    returncode = kill_when_ready(
        [sys.executable, "-c", _SLOW_SAVE, *args, "--run-dir", str(run)],
        flag.exists,
        log_path=tmp / "killed.log",
        env=env,
        cwd=tmp,
    )
    assert returncode == -signal.SIGKILL
    return run


@RESUME_LOGIC
def test_kill_during_a_checkpoint_save_then_resume(tmp_path, data_dir):
    run = _kill_during_save(tmp_path, data_dir, save_number=2)
    leftovers = _temp_files(run)
    assert [p.parent.name for p in leftovers] == ["checkpoints"], leftovers
    assert json.loads((run / "checkpoints" / "last.json").read_text())["epochs_done"] == 1
    _, out, _ = run_cli("fit", "--resume", run)
    assert f"removed {leftovers[0]}" in out
    assert _temp_files(run) == []
    assert [r["epoch"] for r in _history(run)] == ["1", "2"]
    state = json.loads((run / "checkpoints" / "last.json").read_text())
    assert state["epochs_done"] == 2 and state["iterations"] == 2 * STEPS


@RESUME_LOGIC
def test_run_killed_in_its_first_epoch_restarts_on_resume(tmp_path, data_dir):
    run = _kill_during_save(tmp_path, data_dir, save_number=1)
    assert not (run / "checkpoints" / "last.json").exists()
    assert _temp_files(run)
    _, out, _ = run_cli("fit", "--resume", run)
    assert "no completed epoch; starting it again from scratch" in out
    assert _temp_files(run) == []
    assert [r["epoch"] for r in _history(run)] == ["1", "2"]
    assert json.loads((run / "checkpoints" / "last.json").read_text())["iterations"] == 2 * STEPS
    assert (run / "model.keras").is_file()


# ---------------------------------------------------------------------- second probe (issue 23)


@pytest.mark.parametrize(
    "name",
    ["../../x", "/tmp/abs", "a/b", "a\\b", "", ".", "..", "a\x00b", "line\nbreak", "tab\there"],
)
def test_config_name_must_be_one_safe_path_component(tmp_path, name):
    path = tmp_path / "named.json"
    path.write_text(json.dumps({"name": name}))
    result, out, err = run_cli("config", "validate", path, expect=None)
    assert_one_error_line(result, out, err, "name:", "not a safe file name")


def test_a_name_that_escapes_its_folder_writes_nothing(tmp_path, data_dir, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    config = json.loads(SMOKE.read_text())
    config["name"] = "../escaped"
    (tmp_path / "escape.json").write_text(json.dumps(config))
    args = _fit_args(tmp_path, data_dir, "training.epochs=1")
    args[2] = tmp_path / "escape.json"
    result, out, err = run_cli(*args, expect=None)
    assert_one_error_line(result, "", err, "name:", "../escaped")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["escape.json", "work"]
    assert list(work.iterdir()) == []


def test_a_name_with_dots_and_dashes_is_fine(tmp_path):
    path = tmp_path / "named.json"
    path.write_text(json.dumps({"name": "film_het-v2.1"}))
    run_cli("config", "validate", path)


def test_resume_keeps_the_run_data(finished, tmp_path, data_dir):
    run = _copy_run(finished, tmp_path)
    other = write_patterns(tmp_path / "other", seed=1)
    before = _snapshot(run)
    args = ["fit", "--resume", run, "--set", "training.epochs=2"]
    result, out, err = run_cli(*args, "--data-dir", other, expect=None)
    assert_one_error_line(result, out, err, "--data-dir", str(other), "trained on", str(data_dir))
    assert _snapshot(run) == before
    # The run's own folder, spelled another way, is accepted.
    spelled = data_dir.parent / "." / data_dir.name
    _, out, _ = run_cli("fit", "--resume", run, "--data-dir", spelled)
    assert "is complete" in out and _snapshot(run) == before


def test_a_run_folder_under_a_regular_file_fails_before_training(tmp_path, data_dir):
    (tmp_path / "plain.txt").write_text("x")
    target = tmp_path / "plain.txt" / "run"
    args = _fit_args(tmp_path, data_dir, "training.epochs=1")
    result, out, err = run_cli(*args, "--run-dir", target, expect=None)
    assert_one_error_line(result, "", err, "cannot write", str(target), "Not a directory")
    assert "epoch" not in out
    assert not (tmp_path / "m.keras").exists()


def test_a_saved_model_under_a_regular_file_fails_before_training(tmp_path, data_dir):
    (tmp_path / "plain.txt").write_text("x")
    saved = tmp_path / "plain.txt" / "m.keras"
    args = _fit_args(tmp_path, data_dir, "training.epochs=1", f"output.saved_model={saved}")
    result, out, err = run_cli(*args, expect=None)
    assert_one_error_line(result, "", err, "cannot write", str(saved), "is a file, not a folder")
    assert "epoch" not in out
    assert not (tmp_path / "runs").exists()


def test_a_full_disk_during_training_is_one_line(tmp_path, data_dir, monkeypatch):
    """A forced ENOSPC while the first checkpoint is saved: one line, no partial file."""
    save = keras.Model.save

    def save_on_a_full_disk(self, filepath, *args, **kwargs):
        save(self, filepath, *args, **kwargs)
        with open(filepath, "r+b") as f:
            f.truncate(100)  # what reached the disk
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(keras.Model, "save", save_on_a_full_disk)
    run = tmp_path / "run"
    args = _fit_args(tmp_path, data_dir, "training.epochs=1")
    result, out, err = run_cli(*args, "--run-dir", run, expect=None)
    last = run / "checkpoints" / "last.keras"
    assert_one_error_line(result, "", err, "cannot write", str(last), "No space left on device")
    assert not last.exists() and _temp_files(run) == []


def test_no_permission_is_one_line_naming_the_file(finished, tmp_path, monkeypatch):
    """As root a read-only folder still takes writes: the refusal is forced."""
    import tempfile

    from kmixvae.utils import files

    def refuse(*args, dir=None, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), dir)

    monkeypatch.setattr(files.tempfile, "mkstemp", refuse)
    out_png = tmp_path / "locked" / "x.png"
    result, out, err = run_cli("sample", finished["run"], "--out", out_png, expect=None)
    monkeypatch.setattr(files.tempfile, "mkstemp", tempfile.mkstemp)
    assert_one_error_line(result, out, err, "cannot write", str(out_png), "Permission denied")
    assert not out_png.exists()


def test_an_os_error_outside_the_atomic_writes_is_one_line(finished, tmp_path, data_dir):
    (tmp_path / "plain.txt").write_text("x")
    target = tmp_path / "plain.txt" / "proj"
    args = ["export-projector", finished["run"], "--data-dir", data_dir, "--out", target]
    result, out, err = run_cli(*args, "--max-samples", 8, expect=None)
    assert_one_error_line(result, out, err, str(target), "Not a directory")


@pytest.mark.parametrize(
    "setting, needle",
    [("seed=4294967296", "above the maximum"), ("seed=-1", "below the minimum")],
)
def test_seed_must_fit_the_random_generators(setting, needle):
    result, out, err = run_cli("config", "validate", SMOKE, "--set", setting, expect=None)
    assert_one_error_line(result, out, err, "seed", needle)


def test_the_largest_seed_is_valid():
    run_cli("config", "validate", SMOKE, "--set", "seed=4294967295")


def test_sample_seed_out_of_range_is_one_line(finished, tmp_path):
    out_png = tmp_path / "x.png"
    for seed in ("-1", "4294967296"):
        args = ["sample", finished["run"], "--seed", seed, "--out", out_png]
        result, out, err = run_cli(*args, expect=None)
        assert_one_error_line(result, out, err, "--seed", seed)
    assert not out_png.exists()


def test_a_deeply_nested_config_is_one_line(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text('{"model": ' + "[" * 100_000 + "]" * 100_000 + "}")
    result, out, err = run_cli("config", "validate", path, expect=None)
    assert_one_error_line(result, out, err, "deep.json", "nested too deeply")
    value = "[" * 100_000 + "]" * 100_000
    result, out, err = run_cli("config", "validate", SMOKE, "--set", f"seed={value}", expect=None)
    assert_one_error_line(result, out, err, "--set seed", "nested too deeply")


def test_set_the_same_key_twice_is_refused(tmp_path, data_dir):
    sets = ["--set", "training.epochs=2", "--set", "training.epochs=3"]
    result, out, err = run_cli("config", "validate", SMOKE, *sets, expect=None)
    assert_one_error_line(result, out, err, "--set training.epochs", "given twice")
    result, out, err = run_cli("fit", "--config", SMOKE, *sets, expect=None)
    assert_one_error_line(result, out, err, "--set training.epochs", "given twice")
    assert not (tmp_path / "runs").exists()


def test_a_run_folder_name_taken_in_the_same_second_gets_a_suffix(tmp_path, data_dir, monkeypatch):
    """Another fit claimed the clock's name first: this one takes the next, not its folder."""
    from kmixvae.runs import folder

    monkeypatch.setattr(folder, "run_stamp", lambda: "20261202_101500")
    taken = tmp_path / "runs" / "smoke__20261202_101500"
    taken.mkdir(parents=True)
    (taken / "config.json").write_text("{}")
    run_cli(*_fit_args(tmp_path, data_dir, "training.epochs=1"))
    assert (taken / "config.json").read_text() == "{}"
    assert (tmp_path / "runs" / "smoke__20261202_101500_2" / "model.keras").is_file()


def _test_only_data(folder: Path) -> Path:
    """An mnist.npz with a test split only, like ../shared/data/mnist-10k's IDX files."""
    write_patterns(folder)
    with np.load(folder / "mnist.npz") as f:
        x, y = f["x_train"], f["y_train"]
    np.savez(folder / "mnist.npz", x_test=x, y_test=y)
    return folder


@pytest.fixture(scope="module")
def test_split_model(tmp_path_factory):
    """A model trained on `test[:50%]` of data with no `train` split (as the main job trains)."""
    tmp = tmp_path_factory.mktemp("test_split")
    data = _test_only_data(tmp / "data")
    splits = ("data.train_split=test[:50%]", "data.val_split=test[50%:]", "training.epochs=1")
    run_cli(*_fit_args(tmp, data, *splits))
    return {"tmp": tmp, "data": data, "model": tmp / "m.keras"}


def test_a_saved_model_judges_with_its_own_training_split(test_split_model, tmp_path):
    model, data = test_split_model["model"], test_split_model["data"]
    out_json = tmp_path / "e.json"
    args = ["evaluate", model, "--data-dir", data, "--split", "test[50%:]", "--out", out_json]
    _, out, _ = run_cli(*args, "--iwae-samples", 1, "--samples-per-channel", 20)
    metrics = json.loads(out_json.read_text())
    assert metrics["generation"]["judge"]["source"] == "test[:50%]"
    assert "sample consistency" in out
    from kmixvae.runs import read_training_data

    assert read_training_data(model)["train_split"] == "test[:50%]"
    # Without --split, a model file is evaluated on its own validation split.
    run_cli("evaluate", model, "--data-dir", data, "--iwae-samples", 1, "--out", out_json)
    assert json.loads(out_json.read_text())["split"] == "test[50%:]"


def test_an_old_model_file_without_a_judge_split_still_evaluates(test_split_model, tmp_path):
    """A model saved before files carried their training data, on data with no `train` split."""
    old = tmp_path / "old.keras"
    keras.models.load_model(test_split_model["model"]).save(old)  # no training-data entry
    out_json = tmp_path / "e.json"
    args = ["evaluate", old, "--data-dir", test_split_model["data"], "--split", "test[50%:]"]
    result, out, err = run_cli(*args, "--iwae-samples", 1, "--out", out_json)
    skipped = [line for line in out.splitlines() if "generation scores skipped" in line]
    assert len(skipped) == 1 and "'train'" in skipped[0] and "--judge-split" in skipped[0]
    assert err == ""
    metrics = json.loads(out_json.read_text())
    assert "generation" not in metrics and metrics["generation_skipped"] == skipped[0]
    assert 0.0 <= metrics["accuracy"] <= 1.0 and "Clustering" in out
    # An explicit judge split still scores generation.
    run_cli(*args, "--iwae-samples", 1, "--judge-split", "test[:50%]", "--out", out_json)
    assert json.loads(out_json.read_text())["generation"]["judge"]["source"] == "test[:50%]"


# A fit that runs until SIGTERM (what a job scheduler sends) after its first epoch; on each
# backend, since where the signal lands (TensorFlow's or JAX's own code) is theirs.
def test_sigterm_keeps_the_checkpoint_and_says_how_to_resume(tmp_path, data_dir):
    run = tmp_path / "run"
    args = [str(a) for a in _fit_args(tmp_path, data_dir, "training.epochs=200")]
    cmd = [sys.executable, "-c", "import sys; from kmixvae.cli import main; sys.exit(main())"]
    env = {**os.environ, "KERAS_BACKEND": keras.backend.backend(), "TF_CPP_MIN_LOG_LEVEL": "2"}
    log = tmp_path / "terminated.log"
    returncode = kill_when_ready(
        [*cmd, *args, "--run-dir", str(run)],
        (run / "checkpoints" / "last.json").is_file,
        log_path=log,
        env=env,
        cwd=tmp_path,
        signal_number=signal.SIGTERM,
    )
    assert returncode == 143, log.read_text()
    last_line = log.read_text().strip().splitlines()[-1]
    assert last_line.startswith("terminated (SIGTERM):"), last_line
    assert f"continue it with: kmixvae fit --resume {run}" in last_line
    state = json.loads((run / "checkpoints" / "last.json").read_text())
    assert 1 <= state["epochs_done"] < 200
    assert _temp_files(run) == []
    # The advice works: the run continues from its checkpoint.
    done = state["epochs_done"]
    run_cli("fit", "--resume", run, "--set", f"training.epochs={done + 1}")
    assert [int(r["epoch"]) for r in _history(run)] == list(range(1, done + 2))
