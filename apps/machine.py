"""Facts about this machine that the measuring apps record (`benchmark.py`, `gpu_check.py`).

Nothing heavy is imported at module level: the apps' parent processes call
`installed_backends` and `package_version` before any backend is chosen, and
`peak_accelerator_mb` imports Keras (and its backend) only when called.

The apps import this module as `machine`, from their own folder: run as
scripts (`python apps/benchmark.py`) that folder is `sys.path[0]`; loaded
from a file (`tests/helpers/apps.py`) they add it themselves.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util

BACKENDS = ("tensorflow", "jax")


def package_version(dist: str) -> str | None:
    """The installed version of a distribution.

    Args:
        dist: the distribution's name, e.g. `"keras"` or `"tensorflow-cpu"`.

    Returns:
        Its version string, or `None` when it is not installed.
    """
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def installed_backends(names=BACKENDS) -> list[str]:
    """The Keras backends among `names` whose package can be imported here.

    Only looks the packages up (`importlib.util.find_spec`); imports none.

    Args:
        names: backend names, among `"tensorflow"`, `"jax"` and `"torch"`.

    Returns:
        The installed ones, in the order of `names`.
    """
    module = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}
    found = []
    for name in names:
        try:
            if importlib.util.find_spec(module.get(name, name)) is not None:
                found.append(name)
        except (ImportError, ValueError):
            pass
    return found


def peak_accelerator_mb() -> float | None:
    """Peak memory in use on the first accelerator of the current Keras backend.

    Returns:
        The device's own peak statistic in MB (2**20 bytes), or `None` on a
        CPU, on a backend other than JAX and TensorFlow, or where the device
        keeps no memory statistics.
    """
    import keras

    try:
        if keras.backend.backend() == "jax":
            import jax

            device = jax.devices()[0]
            if device.platform == "cpu":
                return None
            stats = device.memory_stats() or {}
            peak = stats.get("peak_bytes_in_use")
            return None if peak is None else peak / 2**20
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            if not tf.config.list_physical_devices("GPU"):
                return None
            return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
    except Exception:  # a backend without memory statistics
        return None
    return None
