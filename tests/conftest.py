"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.paths import REPO_ROOT
from tests.helpers.tiny import tiny_model as build_tiny_model

# The real MNIST test split (IDX files), shared by the projects on this machine.
MNIST10K_DIR = REPO_ROOT.parent / "shared" / "data" / "mnist-10k"


@pytest.fixture
def mnist10k_dir() -> Path:
    """Folder of the real MNIST test split (t10k-*-ubyte.gz); skips when absent."""
    needed = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
    if not all((MNIST10K_DIR / name).is_file() for name in needed):
        pytest.skip(f"real MNIST not found at {MNIST10K_DIR} (needs {', '.join(needed)})")
    return MNIST10K_DIR


@pytest.fixture
def tiny_model():
    """Builds the shared tiny `MixtureVAE`: `tiny_model(image_shape, model={...}, loss={...})`."""
    return build_tiny_model


@pytest.fixture(autouse=True, scope="session")
def _judge_cache_in_tmp(tmp_path_factory):
    """Generation judges trained by the tests are cached in a temporary folder, not in ~/.cache."""
    import os

    old = os.environ.get("KMIXVAE_CACHE_DIR")
    os.environ["KMIXVAE_CACHE_DIR"] = str(tmp_path_factory.mktemp("kmixvae_cache"))
    yield
    if old is None:
        os.environ.pop("KMIXVAE_CACHE_DIR", None)
    else:
        os.environ["KMIXVAE_CACHE_DIR"] = old
