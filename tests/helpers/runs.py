"""Tiny data sets and `kmixvae fit` runs shared by the end-to-end tests.

`write_patterns` writes an `mnist.npz` of three simple patterns;
`tiny_sets` and `fit_smoke` train the smoke config on it in seconds, with
every output kept under the test's temporary folder.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from tests.helpers.cli import run_cli, set_args
from tests.helpers.paths import REPO_ROOT

SMOKE = REPO_ROOT / "configs" / "smoke.json"
N_TRAIN, N_TEST, BATCH = 96, 48, 48
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_patterns(folder: Path, n_train=N_TRAIN, n_test=N_TEST, size=28, seed=0) -> Path:
    """Writes `mnist.npz` with three simple patterns (labels 0, 1, 2) plus noise.

    Label 0 is a vertical bar, 1 a horizontal bar and 2 a filled square; each
    image has uniform noise below 30 added.

    Args:
        folder: the folder to write `mnist.npz` into; created when missing.
        n_train: the number of training images.
        n_test: the number of test images.
        size: the images' height and width, in pixels.
        seed: the seed of the noise.

    Returns:
        `folder`, ready for `--data-dir`.
    """
    rng = np.random.default_rng(seed)

    def images(n):
        y = np.arange(n) % 3
        x = np.zeros((n, size, size), np.uint8)
        a, b = size // 7, size - size // 7
        m0, m1 = size // 2 - 2, size // 2 + 2
        for i, label in enumerate(y):
            if label == 0:
                x[i, a:b, m0:m1] = 255
            elif label == 1:
                x[i, m0:m1, a:b] = 255
            else:
                x[i, a + 2 : b - 2, a + 2 : b - 2] = 200
        noise = rng.integers(0, 30, x.shape).astype(np.uint8)
        return np.maximum(x, noise), y.astype(np.int64)

    folder.mkdir(parents=True, exist_ok=True)
    x_train, y_train = images(n_train)
    x_test, y_test = images(n_test)
    np.savez(folder / "mnist.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return folder


def tiny_sets(tmp: Path, *extra: str) -> list[str]:
    """The `--set` arguments of the tiny runs.

    They train on the `train` split, validate on `test` in batches of
    `BATCH`, and write the saved model and the runs folder under `tmp`.

    Args:
        tmp: the folder the run's outputs go to.
        *extra: more `key=value` settings; a key in `extra` replaces the
            base's (each key is passed once).

    Returns:
        A list of `--set`, `key=value` pairs, flat.
    """
    return set_args(
        "data.train_split=train",
        "data.val_split=test",
        f"data.batch_size={BATCH}",
        f"output.saved_model={tmp / 'm.keras'}",
        f"output.runs_dir={tmp / 'runs'}",
        *extra,
    )


def tiny_config(tmp: Path, data_dir: Path, *extra: str):
    """The smoke config with the `tiny_sets` settings, resolved as `kmixvae fit` resolves it.

    For tests that call `fit_run` or `load_datasets` in-process.

    Args:
        tmp: the folder the run's outputs go to.
        data_dir: a folder with `mnist.npz` (see `write_patterns`).
        *extra: more `key=value` settings, replacing the base's keys.

    Returns:
        A `kmixvae.config.Config`.
    """
    from kmixvae import cli

    return cli._load(SMOKE, tiny_sets(tmp, *extra)[1::2], data_dir)


def read_history(path: Path) -> list[dict]:
    """The rows of a run's `history.csv`, each a dict of strings keyed by column."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def fit_smoke(tmp: Path, data_dir: Path, *sets: str) -> tuple[Path, str, str]:
    """Runs `kmixvae fit` of the smoke config into `tmp`.

    Args:
        tmp: the folder of the run's outputs (see `tiny_sets`).
        data_dir: a folder with `mnist.npz` (see `write_patterns`).
        *sets: more `key=value` settings, on top of `tiny_sets`'.

    Returns:
        A tuple `(run, stdout, stderr)`: the one run folder under
        `tmp / "runs"` and the command's two output streams.
    """
    _, out, err = run_cli("fit", "--config", SMOKE, "--data-dir", data_dir, *tiny_sets(tmp, *sets))
    runs = list((tmp / "runs").iterdir())
    assert len(runs) == 1, runs
    return runs[0], out, err
