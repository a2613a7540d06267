"""What each installed backend sees, and how fast the default config trains there (`scripts/gpu_check.sh`).

Three steps, each in its own subprocess with a time limit, every step logged:

1. the devices each installed Keras backend (TensorFlow, JAX) sees;
2. per installed backend, a short training run of the default config
   (`configs/film_het.json`) on local IDX files with
   `distribution.strategy=auto`, through kmixvae's own input pipeline
   (neighbour pairs included): the first step (trace + compile) is timed,
   then `--steps` steps with all 10 channels active (k=10) and with one
   (k=1). The time of one epoch over 70,000 images is *extrapolated* from the
   measured seconds per step (`ceil(70000 / batch) * step_s`; no 70,000-image
   epoch is run). Peak accelerator memory is the device's own statistic.
   With `--cli-fit` it also runs `kmixvae fit` itself for two epochs of
   `test[:80%]` (the second one with the neighbour refresh, the optimizer
   restart and self-labelling that start at epoch 11 of the full run).
3. `apps/benchmark.py --quick` of the same config on the installed backends
   (synthetic data; with the `--set` overrides).

Everything goes into one JSON (`--out DIR` / `gpu_check.json`; beside it the
benchmark's and the timing worker's own JSON; scratch files under `--work-dir`). Without an
accelerator it says so and stops after step 1, exiting 0, unless `--on-cpu`
asks for the measurements anyway.

Usage:

    python apps/gpu_check.py --out gpu_check_out [--data-dir DIR] [--steps 50] [--on-cpu]
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

APPS_DIR = str(Path(__file__).resolve().parent)
if APPS_DIR not in sys.path:  # loaded from a file, not run as a script: find apps/machine.py
    sys.path.append(APPS_DIR)
from machine import installed_backends, package_version, peak_accelerator_mb  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO_ROOT / "configs" / "film_het.json"
EPOCH_IMAGES = 70_000
DATA_CANDIDATES = (
    REPO_ROOT.parent / "shared" / "data" / "mnist-10k",
    REPO_ROOT / "shared" / "data" / "mnist-10k",
    REPO_ROOT / ".device" / "mnist-10k",
)
IDX_FILES = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def log(message: str) -> None:
    print(f"[gpu_check {time.strftime('%H:%M:%S')}] {message}", flush=True)


def machine_info() -> dict:
    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cores": os.cpu_count(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "versions": {
            d: package_version(d)
            for d in (
                "keras",
                "tensorflow",
                "tensorflow-cpu",
                "jax",
                "jaxlib",
                "jax-cuda12-plugin",
                "jax-cuda13-plugin",
                "numpy",
            )
            if package_version(d)
        },
        "nvidia_smi": None,
    }
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(
                [
                    "nvidia-smi",
                    "--query-gpu=name,memory.total,driver_version",
                    "--format=csv,noheader",
                ],
                capture_output=True,
                text=True,
                timeout=30,
            )
            info["nvidia_smi"] = out.stdout.strip() or None
        except (OSError, subprocess.SubprocessError):
            pass
    return info


# --------------------------------------------------------------------------- workers

DEVICES_CODE = """
import json, os
backend = os.environ["KERAS_BACKEND"]
if backend == "jax":
    import jax
    devices = [f"{d.platform}:{d.id}:{getattr(d, 'device_kind', d.platform)}" for d in jax.devices()]
else:
    import tensorflow as tf
    devices = [f"{d.device_type.lower()}:{d.name}" for d in tf.config.list_physical_devices()]
print("DEVICES " + json.dumps(devices))
"""


def _run(cmd, backend, timeout, env_extra=None) -> tuple[int, str, float]:
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    env.update(env_extra or {})
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd,
            env=env,
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
        )
        rc, out = proc.returncode, proc.stdout
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        rc, out = 124, out + f"\n(timed out after {timeout:.0f} s)"
    return rc, out, time.perf_counter() - t0


def backend_devices(backend: str, timeout: float) -> dict:
    rc, out, _ = _run([sys.executable, "-c", DEVICES_CODE], backend, timeout)
    for line in out.splitlines():
        if line.startswith("DEVICES "):
            return {"devices": json.loads(line[len("DEVICES ") :]), "error": None}
    return {"devices": [], "error": (out.strip().splitlines() or [f"exit {rc}"])[-1][:300]}


def is_accelerator(device: str) -> bool:
    kind = device.split(":")[0].lower()
    return kind not in ("cpu",)


def with_user_overrides(defaults: list[str], user: list[str]) -> list[str]:
    """`defaults` then `user`, dropping each default whose key the user sets.

    `kmixvae` refuses a key given twice (the last would silently win), so the
    check's own settings give way to the user's `--set` for the same key.
    """
    user_keys = {item.partition("=")[0].strip() for item in user}
    kept = [item for item in defaults if item.partition("=")[0].strip() not in user_keys]
    return kept + list(user)


def fit_worker(args) -> int:
    """Runs in a subprocess with KERAS_BACKEND set: times the default config's training step."""
    import keras
    import numpy as np

    from kmixvae.config import load_config
    from kmixvae.data import load_datasets
    from kmixvae.data.neighbors import mutual_neighbors, pixel_neighbors
    from kmixvae.data.pipeline import neighbor_dataset, resolve_pipeline
    from kmixvae.models.factory import build_model
    from kmixvae.training.distribution import configure_distribution
    from kmixvae.training.optimizers import make_optimizer

    overrides = with_user_overrides(
        [
            "data.source=idx",
            f"data.dir={args.data_dir}",
            "data.train_split=test",
            "data.val_split=",
            "distribution.strategy=auto",
        ],
        args.set,
    )
    config = load_config(args.config, overrides=overrides)
    dist = configure_distribution(config)
    keras.utils.set_random_seed(config.seed)
    keras.mixed_precision.set_dtype_policy(config.precision)
    data = load_datasets(config)
    dist.check_batch_size(config.data.batch_size)
    batch = config.data.batch_size
    pipeline = resolve_pipeline(config.data.pipeline)
    t0 = time.perf_counter()
    if config.data.neighbors > 0:
        nbr = pixel_neighbors(data.train_images, config.data.neighbors)
        if config.data.neighbor_mutual:
            nbr = mutual_neighbors(nbr)
        ds = neighbor_dataset(
            data.train_images,
            nbr,
            batch,
            seed=config.seed,
            drop_remainder=True,
            repeat=True,
            pipeline=config.data.pipeline,
        )
    elif pipeline == "arrays":
        from kmixvae.data.array_dataset import ImageBatches

        ds = ImageBatches(
            data.train_images,
            batch_size=batch,
            shuffle=True,
            seed=config.seed,
            drop_remainder=True,
            repeat=True,
        )
    else:
        ds = data.train_dataset(drop_remainder=True).repeat()
    neighbours_s = time.perf_counter() - t0
    with dist.scope():
        model = build_model(config, data.image_shape)
        model.compile(optimizer=make_optimizer(config, data.steps_per_epoch()))

    class Timer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.ends = []

        def on_train_begin(self, logs=None):
            self.ends = [time.perf_counter()]

        def on_epoch_end(self, epoch, logs=None):
            for value in (logs or {}).values():  # wait for the device (async dispatch)
                np.asarray(value)
            self.ends.append(time.perf_counter())

    result = {
        "backend": keras.backend.backend(),
        "config": str(Path(args.config).relative_to(REPO_ROOT))
        if Path(args.config).is_relative_to(REPO_ROOT)
        else str(args.config),
        "overrides": overrides,
        "data_dir": str(args.data_dir),
        "train_images": data.num_train,
        "batch_size": batch,
        "input_pipeline": pipeline,
        "distribution": dist.description,
        "devices": dist.devices,
        "neighbour_graph_s": neighbours_s,
        "precision": config.precision,
        "stages": {},
    }
    epochs = max(2, args.epochs)
    steps = max(1, args.steps)
    for k in (config.model.num_channels, 1):
        model.set_active_channels(list(range(k)))
        t0 = time.perf_counter()
        h = model.fit(ds, epochs=1, steps_per_epoch=1, verbose=0, shuffle=False)
        np.asarray(h.history["loss"][-1])
        compile_s = time.perf_counter() - t0
        timer = Timer()
        model.fit(
            ds, epochs=epochs, steps_per_epoch=steps, verbose=0, shuffle=False, callbacks=[timer]
        )
        per_epoch = np.diff(timer.ends)[1:]  # the first epoch is a warm-up
        step_s = float(per_epoch.sum()) / (len(per_epoch) * steps)
        stage = {
            "k_active": k,
            "compile_s": compile_s,
            "timed_steps": int(len(per_epoch) * steps),
            "step_ms": 1e3 * step_s,
            "train_images_per_s": batch / step_s,
            "epoch_70000_s_extrapolated": math.ceil(EPOCH_IMAGES / batch) * step_s,
            "epoch_70000_note": f"ceil(70000 / {batch}) steps x the measured seconds per step "
            "(no 70,000-image epoch was run)",
        }
        result["stages"][f"k={k}"] = stage
        log(
            f"[{result['backend']}] k={k}: compile {compile_s:.1f} s, {stage['step_ms']:.2f} ms/step, "
            f"{stage['train_images_per_s']:.0f} img/s, 70,000-image epoch "
            f"{stage['epoch_70000_s_extrapolated']:.2f} s (extrapolated from "
            f"{stage['timed_steps']} steps)"
        )
    result["peak_accelerator_mb"] = peak_accelerator_mb()
    Path(args.worker_out).write_text(json.dumps(result, indent=2))
    return 0


# --------------------------------------------------------------------------- data


def find_idx_dir(explicit: str | None) -> Path | None:
    candidates = [Path(explicit)] if explicit else list(DATA_CANDIDATES)
    for folder in candidates:
        if all(
            (folder / name).is_file() or (folder / (name + ".gz")).is_file() for name in IDX_FILES
        ):
            return folder
    return None


def write_synthetic_idx(folder: Path, n: int = 10_000, seed: int = 0) -> Path:
    """IDX files of `n` random 28x28 blobs (labels 0-9) when no MNIST is at hand."""
    import numpy as np

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:28, 0:28].astype("float32")
    labels = rng.integers(0, 10, n).astype(np.uint8)
    cy = (6 + labels * 1.6)[:, None, None] + rng.normal(0, 1, (n, 1, 1))
    cx = rng.uniform(6, 22, (n, 1, 1))
    images = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 18.0)
    images = (np.clip(images + 0.1 * rng.random((n, 28, 28)), 0, 1) * 255).astype(np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    header = np.array([0x00000803, n, 28, 28], dtype=">i4").tobytes()
    with gzip.open(folder / "t10k-images-idx3-ubyte.gz", "wb") as f:
        f.write(header + images.tobytes())
    with gzip.open(folder / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write(np.array([0x00000801, n], dtype=">i4").tobytes() + labels.tobytes())
    return folder


# --------------------------------------------------------------------------- main


def _config_value(args, path: tuple[str, ...], default):
    """A value of the checked config (with its `--set` overrides), by key path."""
    with open(args.config) as f:
        value = json.load(f)
    for key in path:
        value = value.get(key, {}) if isinstance(value, dict) else {}
    value = default if value == {} else value
    for override in args.set:
        key, _, text = override.partition("=")
        if key.strip() == ".".join(path):
            value = json.loads(text)
    return value


def _self_labelling_on(args) -> bool:
    """Whether the checked config (with its overrides) trains the self-labelling term."""
    return float(_config_value(args, ("loss", "self_label", "weight"), 0.0)) != 0.0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="gpu_check_out", help="folder of gpu_check.json")
    parser.add_argument("--data-dir", default=None, help="folder of the MNIST t10k IDX files")
    parser.add_argument("--config", default=str(DEFAULT_CONFIG))
    parser.add_argument("--steps", type=int, default=50, help="timed steps per epoch")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of --steps (first untimed)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--work-dir", default=None, help="scratch files (synthetic data, the fit's run) [OUT/work]"
    )
    parser.add_argument("--on-cpu", action="store_true", help="measure even without a GPU")
    parser.add_argument("--skip-benchmark", action="store_true")
    parser.add_argument("--cli-fit", action="store_true", help="also run `kmixvae fit`, 2 epochs")
    parser.add_argument("--step-timeout", type=float, default=300.0, help="seconds per step")
    parser.add_argument(
        "--deadline",
        type=float,
        default=None,
        help="seconds for everything (steps get what is left)",
    )
    parser.add_argument("--fit-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.fit_worker:
        return fit_worker(args)

    t_start = time.perf_counter()

    def timeout() -> float:
        if args.deadline is None:
            return args.step_timeout
        left = args.deadline - (time.perf_counter() - t_start)
        return max(1.0, min(args.step_timeout, left))

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    work_dir = Path(args.work_dir) if args.work_dir else out_dir / "work"
    report: dict = {"machine": machine_info(), "command": " ".join(sys.argv), "backends": {}}
    backends = installed_backends()
    log(f"installed backends: {', '.join(backends) or 'none'}")
    if report["machine"]["nvidia_smi"]:
        log(f"nvidia-smi: {report['machine']['nvidia_smi']}")
    accelerator = False
    for backend in backends:
        seen = backend_devices(backend, timeout())
        report["backends"][backend] = {"devices": seen["devices"], "device_error": seen["error"]}
        log(f"[{backend}] devices: {', '.join(seen['devices']) or '-'}")
        if seen["error"]:
            log(f"[{backend}] could not list devices: {seen['error']}")
        accelerator |= any(is_accelerator(d) for d in seen["devices"])
    report["accelerator_found"] = accelerator
    if not accelerator:
        log("no accelerator was found (only CPUs)")
    result_file = out_dir / "gpu_check.json"

    def save():
        result_file.write_text(json.dumps(report, indent=2) + "\n")

    save()
    if not backends:
        log("neither TensorFlow nor JAX is installed: nothing to measure")
        return 0
    if not accelerator and not args.on_cpu:
        log(f"skipping the measurements (--on-cpu runs them anyway); wrote {result_file}")
        return 0

    data_dir = find_idx_dir(args.data_dir)
    if data_dir is None:
        if args.data_dir:
            log(f"no t10k IDX files in {args.data_dir}; using synthetic IDX files instead")
        data_dir = write_synthetic_idx(work_dir / "synthetic_idx")
        report["data"] = f"synthetic IDX files (10,000 random blobs) in {data_dir}: no MNIST found"
    else:
        report["data"] = f"MNIST t10k IDX files in {data_dir}"
    log(f"data: {report['data']}")
    for backend in backends:
        worker_out = out_dir / f"fit_{backend}.json"
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--fit-worker",
            "--worker-out",
            str(worker_out),
            "--data-dir",
            str(data_dir),
            "--config",
            args.config,
            "--steps",
            str(args.steps),
            "--epochs",
            str(args.epochs),
        ]
        for override in args.set:
            cmd += ["--set", override]
        log(f"[{backend}] timing the training step of {Path(args.config).name} ...")
        rc, out, wall = _run(cmd, backend, timeout())
        print(out, flush=True)
        log(f"[{backend}] fit timing exit {rc} after {wall:.0f} s")
        entry = report["backends"][backend]
        entry["fit_timing"] = (
            json.loads(worker_out.read_text())
            if rc == 0 and worker_out.is_file()
            else {"exit": rc, "tail": out[-2000:]}
        )
        entry["fit_timing_wall_s"] = wall
        save()
    if not args.skip_benchmark:
        bench_json = out_dir / "benchmark_quick.json"
        log(f"apps/benchmark.py --quick --backends {','.join(backends)}")
        rc, out, wall = _run(
            [
                sys.executable,
                str(REPO_ROOT / "apps" / "benchmark.py"),
                "--quick",
                "--backends",
                ",".join(backends),
                "--configs",
                args.config,
                "--json",
                str(bench_json),
                *[item for override in args.set for item in ("--set", override)],
            ],
            backends[0],
            timeout(),
        )
        print(out, flush=True)
        log(f"benchmark exit {rc} after {wall:.0f} s")
        report["benchmark_quick"] = {"exit": rc, "wall_s": wall}
        if bench_json.is_file():
            bench = json.loads(bench_json.read_text())
            report["benchmark_quick"]["records"] = [
                {
                    key: r.get(key)
                    for key in (
                        "backend",
                        "config",
                        "k_active",
                        "train_images_per_s",
                        "train_step_ms",
                        "compile_s",
                        "encode_images_per_s",
                        "reconstruct_images_per_s",
                        "peak_accelerator_mb",
                        "input_pipeline",
                        "device",
                    )
                }
                for r in bench.get("records", [])
            ]
        save()

    for backend in backends if args.cli_fit else ():
        entry = report["backends"][backend]
        run_dir = work_dir / f"cli_fit_{backend}"
        cli = [
            sys.executable,
            "-m",
            "kmixvae.cli",
            "fit",
            "--config",
            args.config,
            "--data-dir",
            str(data_dir),
            "--run-dir",
            str(run_dir),
        ]
        check_sets = [
            "data.train_split=test[:80%]",
            "data.val_split=test[80%:]",
            "distribution.strategy=auto",
            "training.epochs=2",
            # the second epoch starts with what epoch 11 of the full run does
            "data.neighbor_refresh_epoch=1",
            "training.restart_epoch=1",
            f"output.saved_model={work_dir / f'cli_fit_{backend}.keras'}",
        ]
        if _self_labelling_on(args):  # a switched-off section's keys are errors
            check_sets.append("loss.self_label.start_epoch=1")
        if _config_value(args, ("model", "encoder", "heads"), 1) > 1:
            check_sets.append("model.encoder.head_selection_epoch=1")
        for override in with_user_overrides(check_sets, args.set):
            cli += ["--set", override]
        log(f"[{backend}] kmixvae fit, 2 epochs (refresh, restart, self-labelling at epoch 2) ...")
        rc, out, wall = _run(cli, backend, timeout())
        print(out[-4000:], flush=True)
        log(f"[{backend}] kmixvae fit exit {rc} after {wall:.0f} s")
        entry["cli_fit"] = {"exit": rc, "wall_s": wall, "tail": out[-4000:]}
        history = run_dir / "history.csv"
        if history.is_file():
            entry["cli_fit"]["history_csv"] = history.read_text()
        save()
    log(f"wrote {result_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
