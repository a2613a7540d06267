"""Distribution strategies on simulated CPU devices, invalid combinations, mixed precision."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from kmixvae.config import from_dict
from kmixvae.errors import ConfigError
from kmixvae.training.distribution import Distribution, configure_distribution
from tests.helpers.paths import REPO_ROOT

BACKEND = keras.backend.backend()
WORKER = REPO_ROOT / "tests" / "helpers" / "distribution_worker.py"


def _run_worker(strategy: str, devices: int, precision: str = "float32") -> dict:
    env = dict(os.environ, KERAS_BACKEND=BACKEND, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(
        [sys.executable, str(WORKER), strategy, str(devices), precision],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-2000:] + proc.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT ") :])


def test_two_replicas_give_the_one_replica_loss():
    """data_parallel (JAX) / mirrored (TF) on 2 devices: same first-step loss as 1 device."""
    strategy = "data_parallel" if BACKEND == "jax" else "mirrored"
    one = _run_worker("none", 1)
    two = _run_worker(strategy, 2)
    assert one["replicas"] == 1 and two["replicas"] == 2
    # Every term, the batch-level usage entropy included, matches.
    assert two["first_loss"] == pytest.approx(one["first_loss"], rel=1e-5)
    assert two["first_usage_entropy"] == pytest.approx(one["first_usage_entropy"], rel=1e-5)
    assert math.isfinite(two["epoch_loss"])


@pytest.mark.parametrize("precision", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_trains_without_nan(precision):
    result = _run_worker("none", 1, precision)
    assert math.isfinite(result["first_loss"]) and math.isfinite(result["epoch_loss"])


def test_strategy_of_the_other_backend_is_rejected_naming_the_backend():
    other = "mirrored" if BACKEND == "jax" else None
    if other is None:
        pytest.skip("every strategy name exists on TensorFlow; see the TPU and batch tests")
    with pytest.raises(
        ConfigError, match=r"'mirrored' is not available on the jax backend.*data_parallel"
    ):
        configure_distribution(from_dict({"distribution": {"strategy": other}}))


@pytest.mark.skipif(BACKEND != "tensorflow", reason="tpu is a TensorFlow strategy")
def test_tpu_without_a_tpu_fails_cleanly():
    with pytest.raises(ConfigError, match="no TPU"):
        configure_distribution(from_dict({"distribution": {"strategy": "tpu"}}))


def test_global_batch_must_divide_over_replicas():
    dist = Distribution("mirrored", ["cpu:0", "cpu:1"], replicas=2)
    dist.check_batch_size(64)
    with pytest.raises(
        ConfigError, match=r"data.batch_size: 65 does not divide evenly over 2 replicas"
    ):
        dist.check_batch_size(65)


def test_auto_on_one_cpu_is_a_single_device():
    dist = configure_distribution(from_dict({}))
    assert dist.replicas == 1
    assert np.asarray(dist.devices).size == 1


@pytest.mark.slow
@pytest.mark.skipif(BACKEND != "jax", reason="several processes: the JAX backend (its own pass)")
def test_two_processes_train_what_one_process_with_two_devices_trains(tmp_path):
    """scripts/multiprocess_check.sh: 2 JAX processes (one CPU device each) train the
    smoke config to the weights and history of 1 process with 2 devices, and only
    process 0 writes the run folder and the saved model."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KERAS_DISTRIBUTION_")}
    env["PYTHON"] = sys.executable
    proc = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "multiprocess_check.sh"), "--work-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert last.startswith("multiprocess check: OK") and "largest difference" in last
    assert (tmp_path / "two_processes" / "checkpoints" / "last.keras").is_file()
    assert (
        "2 processes, this is process 0"
        in (tmp_path / "two_processes" / "model_summary.txt").read_text()
    )


def test_several_processes_need_keras_variables_and_a_parallel_strategy(monkeypatch):
    monkeypatch.setenv("KERAS_DISTRIBUTION_NUM_PROCESSES", "2")
    for name in ("KERAS_DISTRIBUTION_JOB_ADDRESSES", "KERAS_DISTRIBUTION_PROCESS_ID"):
        monkeypatch.delenv(name, raising=False)
    if BACKEND == "tensorflow":
        with pytest.raises(ConfigError, match=r"keras-team/keras#20585.*JAX"):
            configure_distribution(from_dict({}))
        with pytest.raises(ConfigError, match=r"'multi_worker_mirrored'.*keras#20585"):
            configure_distribution(
                from_dict({"distribution": {"strategy": "multi_worker_mirrored"}})
            )
        return
    with pytest.raises(ConfigError, match=r"'none' trains in one process"):
        configure_distribution(from_dict({"distribution": {"strategy": "none"}}))
    with pytest.raises(ConfigError, match="KERAS_DISTRIBUTION_JOB_ADDRESSES: not set"):
        configure_distribution(from_dict({"distribution": {"strategy": "data_parallel"}}))
    monkeypatch.setenv("KERAS_DISTRIBUTION_NUM_PROCESSES", "two")
    with pytest.raises(ConfigError, match="not a process count"):
        configure_distribution(from_dict({}))


def test_a_last_batch_that_does_not_split_over_the_processes_is_rejected():
    dist = Distribution("data_parallel", ["cpu:0", "cpu:1"], replicas=2, process_count=2)
    dist.check_split_batches("data.train_split", 256, 64)
    with pytest.raises(ConfigError, match=r"data.val_split: its 129 images leave a last batch"):
        dist.check_split_batches("data.val_split", 129, 64)
    with pytest.raises(ConfigError, match=r"data.train_split: its 129 .*data.drop_remainder=true"):
        dist.check_split_batches("data.train_split", 129, 64, way_out="data.drop_remainder=true")
    Distribution("data_parallel", ["cpu:0", "cpu:1"], replicas=2).check_split_batches(
        "data.val_split", 129, 64
    )  # one process: Keras splits the last batch itself
