"""Two JAX processes train what one process with two devices trains (`scripts/multiprocess_check.sh`).

Writes a small three-pattern `mnist.npz` (256 training, 128 validation
images: every batch of 64 splits over two replicas), then trains
`configs/smoke.json` on it twice with `distribution.strategy=data_parallel`,
each run with a time limit:

1. one process with two simulated CPU devices
   (`XLA_FLAGS=--xla_force_host_platform_device_count=2`);
2. two processes with one CPU device each, joined by Keras' variables
   (`KERAS_DISTRIBUTION_JOB_ADDRESSES=127.0.0.1:<free port>`,
   `KERAS_DISTRIBUTION_NUM_PROCESSES=2`, `KERAS_DISTRIBUTION_PROCESS_ID`),
   the same `kmixvae fit` command in both.

It checks that only process 0 wrote the run folder and the saved model,
then compares the two runs' `history.csv` values and every weight of their
`model.keras`. Exits 0 only when all agree within `--rtol` / `--atol`; the
last line says so, with the largest difference.

Usage:

    python apps/multiprocess_check.py [--work-dir DIR] [--timeout 300]
"""

from __future__ import annotations

import argparse
import csv
import os
import socket
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "configs" / "smoke.json"
N_TRAIN, N_VAL, BATCH = 256, 128, 64


def write_patterns(folder: Path, seed: int = 0) -> Path:
    """`mnist.npz` of three noisy patterns (a bar, a stripe, a square), labels 0-2."""
    rng = np.random.default_rng(seed)

    def images(n):
        y = np.arange(n) % 3
        x = np.zeros((n, 28, 28), np.uint8)
        for i, label in enumerate(y):
            if label == 0:
                x[i, 4:24, 12:16] = 255
            elif label == 1:
                x[i, 12:16, 4:24] = 255
            else:
                x[i, 6:22, 6:22] = 200
        return np.maximum(x, rng.integers(0, 30, x.shape).astype(np.uint8)), y.astype(np.int64)

    folder.mkdir(parents=True, exist_ok=True)
    (x_train, y_train), (x_test, y_test) = images(N_TRAIN), images(N_VAL)
    np.savez(folder / "mnist.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fit_command(work: Path, data: Path, run: Path) -> list[str]:
    sets = [
        "data.train_split=train",
        "data.val_split=test",
        f"data.batch_size={BATCH}",
        "distribution.strategy=data_parallel",
        "training.epochs=1",
        "output.report=false",
        "output.image_every=2",
        f"output.runs_dir={work / 'runs'}",
        f"output.saved_model={run.parent / (run.name + '_saved.keras')}",
    ]
    args = ["fit", "--config", str(SMOKE), "--data-dir", str(data), "--run-dir", str(run)]
    for item in sets:
        args += ["--set", item]
    return [
        sys.executable,
        "-c",
        "import sys; from kmixvae.cli import main; sys.exit(main())",
    ] + args


def base_env(devices: int) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KERAS_DISTRIBUTION_")}
    env.update(
        KERAS_BACKEND="jax",
        JAX_PLATFORMS="cpu",
        TF_CPP_MIN_LOG_LEVEL="3",
        PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
        XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
        # The same convolution kernels on both sides: with 2 CPU devices in one
        # process kmixvae keeps YNNPACK's (kmixvae.utils.xla_cpu_flags).
        KMIXVAE_XLA_CPU_CONVOLUTIONS="ynn",
    )
    return env


def run_both(work: Path, data: Path, timeout: float) -> tuple[Path, Path]:
    """Runs the 1-process, 2-device fit and the 2-process fit side by side; their folders."""
    one, two = work / "one_process", work / "two_processes"
    port = free_port()
    jobs = [("one_process", fit_command(work, data, one), base_env(2))]
    for pid in range(2):
        env = base_env(1)
        env.update(
            KERAS_DISTRIBUTION_JOB_ADDRESSES=f"127.0.0.1:{port}",
            KERAS_DISTRIBUTION_NUM_PROCESSES="2",
            KERAS_DISTRIBUTION_PROCESS_ID=str(pid),
        )
        jobs.append((f"process{pid}", fit_command(work, data, two), env))
    procs = []
    for name, cmd, env in jobs:
        log = open(work / f"{name}.log", "w")
        proc = subprocess.Popen(cmd, env=env, cwd=work, stdout=log, stderr=subprocess.STDOUT)
        procs.append((name, proc, log))
    failed = []
    for name, proc, log in procs:
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            for _, other, _ in procs:
                other.kill()
            code = f"no result in {timeout:g} s"
        log.close()
        if code != 0:
            failed.append(f"{name}: exit {code}, log {work / (name + '.log')}")
    if failed:
        raise RuntimeError("; ".join(failed))
    return one, two


def history(run: Path) -> dict[str, np.ndarray]:
    with open(run / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    keys = [k for k in rows[0] if k != "epoch" and "seconds" not in k]  # timings differ
    out = {}
    for k in keys:
        try:
            out[k] = np.array([float(r[k]) for r in rows])
        except ValueError:
            continue
    return out


def weights(model_file: Path) -> dict[str, np.ndarray]:
    """Every array in a `.keras` file's `model.weights.h5`, by its path in the file."""
    import h5py

    with zipfile.ZipFile(model_file) as z, tempfile.TemporaryDirectory() as tmp:
        z.extract("model.weights.h5", tmp)
        out = {}
        with h5py.File(Path(tmp) / "model.weights.h5", "r") as h5:
            h5.visititems(
                lambda name, obj: (
                    out.__setitem__(name, np.asarray(obj))
                    if isinstance(obj, h5py.Dataset)
                    else None
                )
            )
    return out


def largest_difference(a: dict, b: dict, rtol: float, atol: float, what: str):
    """`(largest |a - b|, problems)` over the arrays both dicts name."""
    problems = [f"{what}: {k} only in one run" for k in sorted(set(a) ^ set(b))]
    worst = 0.0
    for k in sorted(set(a) & set(b)):
        x, y = np.asarray(a[k], "float64"), np.asarray(b[k], "float64")
        if x.shape != y.shape:
            problems.append(f"{what}: {k} shapes {x.shape} and {y.shape}")
            continue
        if x.size:
            diff = np.abs(x - y)
            finite = np.isfinite(x) & np.isfinite(y)
            worst = max(worst, float(diff[finite].max(initial=0.0)))
            if not np.allclose(x, y, rtol=rtol, atol=atol, equal_nan=True):
                problems.append(f"{what}: {k} differs by up to {float(diff[finite].max()):.3g}")
    return worst, problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", default=None, help="scratch folder (default: a temp dir)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per run")
    parser.add_argument("--rtol", type=float, default=1e-4)
    parser.add_argument("--atol", type=float, default=1e-5)
    args = parser.parse_args(argv)
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="kmixvae-multiprocess-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    print(f"multiprocess check: scratch folder {work}", flush=True)
    data = write_patterns(work / "data")
    try:
        one, two = run_both(work, data, args.timeout)
        print("multiprocess check: 1 process x 2 devices and 2 processes x 1 device trained")
    except (OSError, RuntimeError) as e:
        print(f"multiprocess check: FAILED: {e}")
        return 1
    problems = []
    for needed in ("model.keras", "history.csv", "checkpoints/last.keras", "tensorboard"):
        if not (two / needed).exists():
            problems.append(f"process 0 did not write {two / needed}")
    if not (work / "two_processes_saved.keras").is_file():
        problems.append("process 0 did not write the saved model")
    if any(work.glob("runs/*")):
        problems.append(f"a process wrote a run under {work / 'runs'}")
    if problems:
        print("multiprocess check: FAILED: " + "; ".join(problems))
        return 1
    h_worst, h_problems = largest_difference(
        history(one), history(two), args.rtol, args.atol, "history"
    )
    w_worst, w_problems = largest_difference(
        weights(one / "model.keras"), weights(two / "model.keras"), args.rtol, args.atol, "weight"
    )
    problems = h_problems + w_problems
    worst = max(h_worst, w_worst)
    for line in problems[:20]:
        print(f"multiprocess check: {line}")
    if problems:
        print(
            f"multiprocess check: FAILED: 2 processes differ from 1 process x 2 devices "
            f"(largest difference {worst:.3g}, rtol {args.rtol:g}, atol {args.atol:g})"
        )
        return 1
    print(
        f"multiprocess check: OK: 2 processes x 1 device = 1 process x 2 devices "
        f"(largest difference {worst:.3g} over the weights and history.csv; "
        f"rtol {args.rtol:g}, atol {args.atol:g})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
