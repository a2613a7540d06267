"""scripts/main.sh picks its data and says so in its first line (no install, no training here).

Each test copies main.sh into a fake clone whose setup_env.sh and .venv/bin/kmixvae
are stubs (the stub prints its arguments), with or without a data folder beside it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers.paths import REPO_ROOT


def fake_clone(root: Path) -> Path:
    repo = root / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "scripts" / "main.sh", repo / "scripts" / "main.sh")
    (repo / "scripts" / "setup_env.sh").write_text(
        'echo installed > "$(dirname $0)/../installed"\n'
    )
    (repo / ".venv" / "bin").mkdir(parents=True)
    stub = repo / ".venv" / "bin" / "kmixvae"
    stub.write_text('#!/usr/bin/env bash\necho "kmixvae $*"\n')
    stub.chmod(0o755)
    return repo


def run_main(repo: Path, home: Path, **env):
    full = {"PATH": os.environ["PATH"], "HOME": str(home), **env}
    start = time.monotonic()
    proc = subprocess.run(
        ["bash", str(repo / "scripts" / "main.sh"), "--set", "training.epochs=1"],
        capture_output=True,
        text=True,
        env=full,
        timeout=60,
    )
    return proc, time.monotonic() - start


def idx_files(folder: Path, *stems: str) -> Path:
    folder.mkdir(parents=True)
    for stem in stems:
        (folder / f"{stem}-images-idx3-ubyte.gz").write_bytes(b"")
        (folder / f"{stem}-labels-idx1-ubyte.gz").write_bytes(b"")
    return folder


def online() -> bool:
    try:
        socket.create_connection(("storage.googleapis.com", 443), timeout=3).close()
    except OSError:
        return False
    return True


def test_shared_test_split_beside_the_repo(tmp_path):
    repo = fake_clone(tmp_path)
    idx_files(tmp_path / "shared" / "data" / "mnist-10k", "t10k")
    proc, _ = run_main(repo, tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == (
        "main: local MNIST files in ../shared/data/mnist-10k: "
        "training on test[:80%], validating on test[80%:]"
    )
    assert lines[-1] == (
        "kmixvae fit --config configs/film_het.json --data-dir ../shared/data/mnist-10k "
        "--set data.train_split=test[:80%] --set data.val_split=test[80%:] --set training.epochs=1"
    )


def test_data_dir_with_training_files(tmp_path):
    repo = fake_clone(tmp_path)
    full = idx_files(tmp_path / "full", "train", "t10k")
    proc, _ = run_main(repo, tmp_path, DATA_DIR=str(full))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == (
        f"main: local MNIST files in {full}: training on train, validating on test"
    )
    assert "--set data.train_split=train --set data.val_split=test" in proc.stdout


def test_data_dir_that_is_not_a_folder(tmp_path):
    repo = fake_clone(tmp_path)
    proc, _ = run_main(repo, tmp_path, DATA_DIR=str(tmp_path / "nowhere"))
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: DATA_DIR=")
    assert not (repo / "installed").exists()


def test_tfds_when_no_local_files_and_tfds_is_prepared(tmp_path):
    repo = fake_clone(tmp_path)
    (tmp_path / "tensorflow_datasets" / "mnist").mkdir(parents=True)
    proc, _ = run_main(repo, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0].startswith("main: no local MNIST files")
    assert "TFDS MNIST, training on train, validating on test" in proc.stdout.splitlines()[0]
    assert "--set data.source=tfds --set data.train_split=train --set data.val_split=test" in (
        proc.stdout
    )


def test_offline_without_local_files_fails_at_once(tmp_path):
    if online():
        pytest.skip("this machine is online: main.sh takes the TFDS path")
    repo = fake_clone(tmp_path)
    proc, seconds = run_main(repo, tmp_path)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ")
    assert "DATA_DIR=/path/to/mnist bash scripts/main.sh" in proc.stderr
    assert seconds < 10
    assert not (repo / "installed").exists()  # nothing installed before the error
