"""JAX's persistent compilation cache: on for the CLI's runs, in kmixvae's cache folder."""

from __future__ import annotations

import os
import subprocess
import sys

import keras
import pytest

from tests.helpers.cli import assert_one_error_line, run_cli
from tests.helpers.paths import REPO_ROOT

# A fresh process (JAX decides on its cache at the first compile): turn the
# cache on as the CLI does, compile one function, print the folder.
COMPILE_ONE = """
import keras
from kmixvae.utils.compile_cache import use_compile_cache
folder = use_compile_cache()
keras.ops.convert_to_numpy(keras.ops.sum(keras.ops.ones((3, 4)) * 2.0))
import jax
jax.jit(lambda x: (x @ x.T).sum())(keras.ops.ones((8, 8))).block_until_ready()
print(folder)
"""


def _run_jax(cache_dir, *args, switch=None):
    """`python -c ARGS` in a fresh JAX process with kmixvae's cache under `cache_dir`."""
    env = {**os.environ, "KMIXVAE_CACHE_DIR": str(cache_dir), "KERAS_BACKEND": "jax"}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    env.pop("KMIXVAE_COMPILE_CACHE", None)
    if switch is not None:
        env["KMIXVAE_COMPILE_CACHE"] = switch
    return subprocess.run(
        [sys.executable, "-c", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _compile_one(cache_dir, switch=None):
    proc = _run_jax(cache_dir, COMPILE_ONE, switch=switch)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip().splitlines()[-1]


def _entries(folder):
    return sorted(p.name for p in folder.glob("*") if not p.name.startswith("."))


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="a JAX cache (TensorFlow has none)")
def test_compiled_programs_are_kept_in_the_cache_folder_and_read_again(tmp_path):
    folder = tmp_path / "jax"
    assert _compile_one(tmp_path) == str(folder)
    first = _entries(folder)
    assert any(name.endswith("-cache") for name in first), first
    # A second process compiles the same programs: it reads them, adds nothing.
    _compile_one(tmp_path)
    assert _entries(folder) == first


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="a JAX cache (TensorFlow has none)")
def test_the_cache_can_be_turned_off(tmp_path):
    assert _compile_one(tmp_path, switch="off") == "None"
    assert not (tmp_path / "jax").exists()


def test_a_bad_switch_is_one_error_line(monkeypatch):
    monkeypatch.setenv("KMIXVAE_COMPILE_CACHE", "sometimes")
    result, out, err = run_cli("presets", expect=None)
    assert_one_error_line(result, out, err, "KMIXVAE_COMPILE_CACHE", "on or off")


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="a JAX cache (TensorFlow has none)")
def test_a_cache_folder_that_cannot_be_made_is_one_error_line(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    proc = _run_jax(blocker, "from kmixvae.cli import main; main()", "presets")
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, (proc.returncode, lines)
    assert lines[0].startswith("error: KMIXVAE_CACHE_DIR") and "a_file" in lines[0], lines
