"""Subprocess environments in which `import tensorflow` fails, as on a JAX-only GPU machine.

`tests/helpers/no_tensorflow/sitecustomize.py` makes importing `tensorflow`
(and `tensorflow_datasets`) raise `ModuleNotFoundError` in any process whose
`PYTHONPATH` starts with that folder.
"""

from __future__ import annotations

import os

from tests.helpers.paths import REPO_ROOT

BLOCKER = REPO_ROOT / "tests" / "helpers" / "no_tensorflow"


def no_tf_pythonpath() -> str:
    """A `PYTHONPATH`: the blocker first, then the repository (for `tests.helpers`)."""
    return os.pathsep.join([str(BLOCKER), str(REPO_ROOT)])


def no_tf_env(backend: str = "jax") -> dict:
    """This process's environment with TensorFlow blocked, `backend` chosen and unbuffered output."""
    env = dict(os.environ)
    env["PYTHONPATH"] = no_tf_pythonpath()
    env["KERAS_BACKEND"] = backend
    env["PYTHONUNBUFFERED"] = "1"
    return env
