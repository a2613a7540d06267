"""`scripts/gpu_check.sh` on a machine without a GPU.

Without an accelerator it lists what each backend sees, says that no
accelerator was found, writes its JSON and exits 0; with `--on-cpu` it runs
its measurements anyway (here on a tiny config, JAX without TensorFlow, as on
the GPU machines), so the code the GPU run relies on is exercised on CPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.helpers.paths import REPO_ROOT
from tests.helpers.without_tensorflow import no_tf_env

# The subprocesses choose their own backend (JAX): run them in the suite's JAX pass only.
ONCE = pytest.mark.skipif(
    os.environ.get("KERAS_BACKEND", "tensorflow") != "jax",
    reason="runs JAX in a subprocess whatever the backend; once, in the JAX pass",
)
SCRIPT = REPO_ROOT / "scripts" / "gpu_check.sh"


def _has_gpu() -> bool:
    import keras

    if keras.backend.backend() == "jax":
        import jax

        return any(d.platform != "cpu" for d in jax.devices())
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def run_script(args, env, timeout=900):
    env = dict(env, PYTHON=sys.executable)
    return subprocess.run(
        ["bash", str(SCRIPT), *[str(a) for a in args]],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@ONCE
def test_without_accelerator_says_so_and_exits_0(tmp_path):
    if _has_gpu():
        pytest.skip("this machine has a GPU")
    proc = run_script([tmp_path / "out"], dict(os.environ))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "no accelerator was found" in out
    report = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert report["accelerator_found"] is False
    assert set(report["backends"]) == {"tensorflow", "jax"}
    for backend, entry in report["backends"].items():
        assert entry["devices"] and all(d.startswith("cpu") for d in entry["devices"]), entry
        assert f"[{backend}] devices: cpu" in out
    assert "fit_timing" not in report["backends"]["jax"]


@ONCE
@pytest.mark.slow
def test_on_cpu_measures_the_training_step_without_tensorflow(tmp_path):
    if _has_gpu():
        pytest.skip("this machine has a GPU")
    out = tmp_path / "out"
    args = [
        out,
        "--on-cpu",
        "--skip-benchmark",
        "--cli-fit",
        "--data-dir",
        tmp_path / "absent",
        "--work-dir",
        tmp_path / "work",
        "--config",
        REPO_ROOT / "configs" / "smoke.json",
        "--steps",
        "2",
        "--epochs",
        "2",
        "--deadline",
        "1600",
        "--step-timeout",
        "1500",
    ]
    for override in (
        "data.batch_size=32",
        "data.neighbors=3",
        "loss.neighbor.weight=1",
        "curriculum.enabled=false",
        "data.train_split=test[:256]",
        "data.val_split=test[256:320]",
        "output.projector=false",
    ):
        args += ["--set", override]
    proc = run_script(args, no_tf_env("jax"), timeout=1800)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-4000:]
    assert "no accelerator was found" in text
    report = json.loads((out / "gpu_check.json").read_text())
    assert list(report["backends"]) == ["jax"]
    assert "synthetic IDX" in report["data"]
    timing = report["backends"]["jax"]["fit_timing"]
    assert "stages" in timing, timing.get("tail")
    assert timing["input_pipeline"] == "arrays"
    assert timing["distribution"].startswith("none")
    assert set(timing["stages"]) == {"k=3", "k=1"}
    for stage in timing["stages"].values():
        assert stage["train_images_per_s"] > 0 and stage["compile_s"] > 0
        steps = -(-70000 // 32)
        assert stage["epoch_70000_s_extrapolated"] == pytest.approx(steps * stage["step_ms"] / 1e3)
    assert timing["peak_accelerator_mb"] is None  # CPU: no accelerator memory
    cli = report["backends"]["jax"]["cli_fit"]
    assert cli["exit"] == 0, cli["tail"]
    assert len(cli["history_csv"].strip().splitlines()) == 3  # header + 2 epochs
    assert (tmp_path / "work" / "cli_fit_jax" / "neighbors_refreshed.npy").is_file()
    assert sorted(p.name for p in out.iterdir()) == ["fit_jax.json", "gpu_check.json"]
