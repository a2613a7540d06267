"""XLA:CPU runs kmixvae's convolutions with Eigen's kernels, not YNNPACK's."""

from __future__ import annotations

import os
import subprocess
import sys

import keras
import pytest

from kmixvae.errors import ConfigError
from kmixvae.utils import xla_cpu_flags
from kmixvae.utils.xla_cpu_flags import FLAG, convolution_switch, prefer_eigen_convolutions
from tests.helpers.cli import assert_one_error_line, run_cli
from tests.helpers.paths import REPO_ROOT

WANTED = f"{FLAG}=individual_dot,reduce"


def test_the_flag_is_added_after_the_users_other_flags():
    env = {"XLA_FLAGS": "--xla_cpu_enable_fast_math=false"}
    assert prefer_eigen_convolutions(env)
    assert env["XLA_FLAGS"] == f"--xla_cpu_enable_fast_math=false {WANTED}"
    empty = {}
    assert prefer_eigen_convolutions(empty)
    assert empty["XLA_FLAGS"] == WANTED


def test_several_cpu_devices_in_one_process_keep_jaxlibs_default():
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    assert not prefer_eigen_convolutions(env)
    assert env["XLA_FLAGS"] == "--xla_force_host_platform_device_count=2"
    one = {"XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    assert prefer_eigen_convolutions(one)


def test_a_users_own_ynn_setting_is_kept_as_given():
    env = {"XLA_FLAGS": f"{FLAG}=individual_convolution"}
    assert not prefer_eigen_convolutions(env)
    assert env["XLA_FLAGS"] == f"{FLAG}=individual_convolution"


def test_the_switch_keeps_jaxlibs_default_and_rejects_other_values_by_name():
    env = {"KMIXVAE_XLA_CPU_CONVOLUTIONS": "ynn"}
    assert not prefer_eigen_convolutions(env)
    assert "XLA_FLAGS" not in env
    bad = {"KMIXVAE_XLA_CPU_CONVOLUTIONS": "fast"}
    assert not prefer_eigen_convolutions(bad)  # never raises: `import kmixvae` calls it
    assert "XLA_FLAGS" not in bad
    with pytest.raises(ConfigError, match="KMIXVAE_XLA_CPU_CONVOLUTIONS.*eigen or ynn"):
        convolution_switch(bad)
    assert convolution_switch({}) == "eigen"


def test_another_jaxlib_gets_no_flag_it_may_not_know(monkeypatch):
    monkeypatch.setattr(xla_cpu_flags, "_jaxlib_version", lambda: "0.11.0")
    env = {}
    assert not prefer_eigen_convolutions(env)
    assert env == {}
    monkeypatch.setattr(xla_cpu_flags, "_jaxlib_version", lambda: None)
    assert not prefer_eigen_convolutions(env)


def test_the_cli_rejects_an_unknown_switch_with_one_error_line(monkeypatch):
    monkeypatch.setenv("KMIXVAE_XLA_CPU_CONVOLUTIONS", "fast")
    result, out, err = run_cli("presets", expect=None)
    assert_one_error_line(result, out, err, "KMIXVAE_XLA_CPU_CONVOLUTIONS", "fast")


# A fresh process: import kmixvae before JAX starts, compile a convolution the
# size of the encoder's second one, and say which kind of thunk it became.
CONVOLUTION_KIND = """
import kmixvae, jax, jax.numpy as jnp
x = jnp.ones((16, 14, 14, 32)); k = jnp.ones((3, 3, 32, 64))
conv = lambda x, k: jax.lax.conv_general_dilated(x, k, (2, 2), "SAME",
    dimension_numbers=("NHWC", "HWIO", "NHWC"))
text = jax.jit(conv).lower(x, k).compile().as_text()
print("ynn" if "__ynn_fusion" in text else "eigen")
"""


def _last_line_of_fresh_process(script, backend, switch=None):
    """Runs `script` in a fresh `backend` process with no XLA_FLAGS of ours; its last line."""
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("XLA_FLAGS", None)
    env.pop("KMIXVAE_XLA_CPU_CONVOLUTIONS", None)
    if switch is not None:
        env["KMIXVAE_XLA_CPU_CONVOLUTIONS"] = switch
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip().splitlines()[-1]


def _convolution_kind(switch=None):
    return _last_line_of_fresh_process(CONVOLUTION_KIND, "jax", switch)


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="XLA:CPU's flag (JAX backend)")
def test_importing_kmixvae_gives_xla_cpu_convolutions_to_eigen():
    assert _convolution_kind() == "eigen"
    assert _convolution_kind("ynn") == "ynn"


# TensorFlow reads XLA_FLAGS too (its own XLA, for `jit_compile`): a flag its
# XLA did not know would stop it. A fresh process that imported kmixvae.
TENSORFLOW_XLA = """
import os, kmixvae, tensorflow as tf
assert "--xla_cpu_experimental_ynn_fusion_type" in os.environ["XLA_FLAGS"]
conv = tf.function(lambda x: tf.nn.conv2d(x, tf.ones((3, 3, 1, 4)), 2, "SAME"), jit_compile=True)
print(tuple(conv(tf.ones((2, 28, 28, 1))).shape))
"""


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow's XLA")
def test_tensorflows_xla_compiles_with_the_flag():
    assert _last_line_of_fresh_process(TENSORFLOW_XLA, "tensorflow") == "(2, 14, 14, 4)"
