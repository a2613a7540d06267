"""Tests that run in one backend pass only, because what they check does not depend on it."""

from __future__ import annotations

import os

import pytest


def once_in_tensorflow_pass(why: str):
    """Skip mark for the JAX pass of a test whose subject is backend-independent.

    `why` names where the backend-specific part is covered, e.g. "JAX's
    resume is covered by test_cli's kill test". The suite runs once per
    backend (`scripts/test.sh`); this keeps its time well under budget.
    """
    return pytest.mark.skipif(
        os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow",
        reason=f"{why}; once, in the TensorFlow pass",
    )
