"""The JAX backend without TensorFlow: every command works where `import tensorflow` fails.

Each test runs a subprocess whose `PYTHONPATH` starts with
`tests/helpers/no_tensorflow`, whose `sitecustomize` makes importing
`tensorflow` (and `tensorflow_datasets`) raise `ModuleNotFoundError`, as on a
JAX-only GPU machine. Data come from a local `mnist.npz`; the training
pipeline is then the in-memory `keras.utils.PyDataset` one, neighbour pairs
and their refresh included, and TensorBoard event files are written by the
`tensorboard` package alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.paths import REPO_ROOT
from tests.helpers.runs import write_patterns
from tests.helpers.without_tensorflow import no_tf_env

# The subprocesses choose their own backend (JAX): run them in the suite's JAX pass only.
ONCE = pytest.mark.skipif(
    os.environ.get("KERAS_BACKEND", "tensorflow") != "jax",
    reason="runs JAX in a subprocess whatever the backend; once, in the JAX pass",
)


def run_no_tf(args, cwd=REPO_ROOT, timeout=900, expect=0):
    proc = subprocess.run(
        [sys.executable, *[str(a) for a in args]],
        env=no_tf_env(),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if expect is not None:
        assert proc.returncode == expect, (
            f"{args}: exit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\n"
            f"stderr:\n{proc.stderr[-3000:]}"
        )
    return proc


def test_blocker_makes_tensorflow_unimportable():
    proc = run_no_tf(["-c", "import tensorflow"], expect=None)
    assert proc.returncode != 0
    assert "No module named 'tensorflow'" in proc.stderr
    proc = run_no_tf(["-c", "import tensorflow_datasets"], expect=None)
    assert proc.returncode != 0


def test_splits_pipeline_choice_and_arrays_without_tensorflow():
    code = """
import numpy as np
from kmixvae.data.splits import resolve_split
from kmixvae.data.pipeline import resolve_pipeline, tensorflow_available
from kmixvae.data.array_dataset import ImageBatches
from kmixvae.errors import ConfigError
assert resolve_split("test[:80%]", {"test": 10000}) == [("test", 0, 8000)]
assert not tensorflow_available()
assert resolve_pipeline("auto") == "arrays"
try:
    resolve_pipeline("tf_data")
except ConfigError as e:
    assert "needs TensorFlow" in str(e), e
else:
    raise AssertionError("tf_data accepted without TensorFlow")
x = np.arange(10 * 4, dtype=np.uint8).reshape(10, 2, 2, 1)
(b,) = ImageBatches(x, batch_size=4)[2]
assert b.shape == (2, 2, 2, 1) and b.dtype == np.float32
print("ok")
"""
    proc = run_no_tf(["-c", code])
    assert proc.stdout.strip().endswith("ok")


def _event_tags(folder: Path) -> set[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = set()
    for sub in [folder, *[p for p in folder.rglob("*") if p.is_dir()]]:
        if not any(f.name.startswith("events.out.tfevents") for f in sub.iterdir()):
            continue
        acc = EventAccumulator(str(sub))
        acc.Reload()
        found = acc.Tags()
        tags |= {f"{sub.relative_to(folder)}/{t}" for t in found["scalars"] + found["images"]}
    return tags


COMMANDS_CODE = """
import json, sys
from kmixvae.cli import main
from tests.helpers.cli import cli_runner

results = []
for args in json.loads(sys.argv[1]):
    r = cli_runner().invoke(main, args, catch_exceptions=True)
    results.append({"args": args, "exit": r.exit_code, "out": r.stdout + r.stderr,
                    "exception": repr(r.exception) if r.exit_code else None})
    if r.exit_code:
        break
print("RESULTS " + json.dumps(results))
"""


@ONCE
@pytest.mark.slow
def test_fit_evaluate_sample_reconstruct_encode_without_tensorflow(tmp_path):
    # One subprocess runs all the commands (each start of Python + JAX costs seconds).
    data = write_patterns(tmp_path / "data")
    run, model = tmp_path / "run", tmp_path / "run" / "model.keras"
    overrides = {
        "data.train_split": "train",
        "data.val_split": "test",
        "data.batch_size": "48",
        "curriculum.enabled": "false",
        "training.epochs": "2",
        "data.neighbors": "4",
        "loss.neighbor.weight": "1",
        "data.neighbor_refresh_epoch": "1",
        "output.saved_model": str(tmp_path / "m.keras"),
    }
    fit = ["fit", "--config", str(REPO_ROOT / "configs" / "smoke.json"), "--data-dir", str(data)]
    fit += ["--run-dir", str(run)]
    for key, value in overrides.items():
        fit += ["--set", f"{key}={value}"]
    subset = ["--data-dir", str(data), "--split", "test[:8]"]
    commands = [
        fit,
        ["evaluate", str(run), "--iwae-samples", "2"],
        ["sample", str(model), "--n", "4", "--out", str(tmp_path / "s.png")],
        ["reconstruct", str(model), *subset, "--n", "8", "--out", str(tmp_path / "r.png")],
        ["encode", str(model), *subset, "--out", str(tmp_path / "e.npz")],
    ]
    proc = run_no_tf(["-c", COMMANDS_CODE, json.dumps(commands)])
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULTS ")][-1]
    results = json.loads(line[len("RESULTS ") :])
    for r in results:
        assert r["exit"] == 0, (r["args"][0], r["exception"], r["out"][-3000:])
    assert len(results) == len(commands)
    out = results[0]["out"]
    assert "in-memory arrays (keras.utils.PyDataset)" in out
    assert "refreshed at epoch 2" in out
    assert (run / "neighbors_refreshed.npy").is_file()
    assert model.is_file()
    history = (run / "history.csv").read_text().splitlines()
    assert len(history) == 3  # header + 2 epochs
    tags = _event_tags(run / "tensorboard")
    assert "train/epoch_loss" in tags and "validation/epoch_loss" in tags, tags
    assert any(t.startswith("images/") for t in tags), tags
    assert json.loads((run / "eval_metrics.json").read_text())
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
    with np.load(tmp_path / "e.npz") as f:
        assert len(f[f.files[0]]) == 8


@ONCE
@pytest.mark.slow
def test_benchmark_without_tensorflow(tmp_path):
    code = f"""
import json, sys
sys.path.insert(0, "apps")
import benchmark
assert benchmark.installed_backends() == ["jax"], benchmark.installed_backends()
settings = benchmark.Settings(
    batch_size=16, warmup_steps=0, steps_per_epoch=2, epochs=2, infer_images=32,
    infer_batch=16, infer_repeats=1, gemm_size=64, gemm_repeats=1, xla_cost="none",
)
records = benchmark.run_worker(
    ["configs/smoke.json"], settings, k_values=(2,),
    overrides=["data.neighbors=3", "loss.neighbor.weight=1"], log=print,
)
json.dump(records, open({str(tmp_path / "r.json")!r}, "w"))
"""
    run_no_tf(["-c", code])
    (record,) = json.loads((tmp_path / "r.json").read_text())
    assert record["backend"] == "jax"
    assert record["input_pipeline"] == "arrays"
    assert record["train_images_per_s"] > 0
    # --backends naming a backend that is not installed: one error line, exit 2
    proc = run_no_tf(["apps/benchmark.py", "--backends", "tensorflow"], expect=2)
    assert proc.stderr.strip() == "error: --backends: tensorflow not installed here"


@ONCE
def test_hparams_trials_and_presets_without_tensorflow(tmp_path):
    """A study's HParams folder is written, and a preset loads by name, with TensorFlow absent."""
    code = (
        "import sys, kmixvae\n"
        "from kmixvae.viz.tensorboard_hparams import Trial, write_hparams_trials\n"
        f"write_hparams_trials({str(tmp_path / 'hp')!r}, "
        "[Trial('a', {'variant': 'a', 'lr': 0.1}, {'eval/accuracy': 0.5})], "
        "{'eval/accuracy': 'acc'})\n"
        "m = kmixvae.load_preset('mnist_film_het')\n"
        "assert 'tensorflow' not in sys.modules\n"
        "print(m.num_channels)\n"
    )
    proc = run_no_tf(["-c", code], timeout=300)
    assert proc.stdout.strip().endswith("10")
    assert list((tmp_path / "hp" / "a").glob("events.out.tfevents.*"))
