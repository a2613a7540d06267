"""Distribution strategies on simulated CPU devices, invalid combinations, mixed precision."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from kmixvae.config import from_dict
from kmixvae.errors import ConfigError
from kmixvae.training.distribution import Distribution, configure_distribution

BACKEND = keras.backend.backend()
WORKER = Path(__file__).parent / "helpers" / "distribution_worker.py"


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
