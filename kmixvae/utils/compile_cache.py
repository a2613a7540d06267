"""A persistent cache of JAX's compiled programs, shared by the runs of one machine.

Every JAX run compiles its training step, its test step and the small
inference functions (about 10 s on two CPU cores for `configs/film_het.json`,
a tenth of the run), and the next run of the same config would compile the
same programs again. JAX can keep them on disk (`jax_compilation_cache_dir`);
the key is the program with the compiler's version and flags, so a changed
model or another jaxlib compiles anew. `kmixvae`'s CLI turns it on for every
command on the JAX backend; TensorFlow has no such cache (its `tf.function`
traces live in one process).

Where: `$KMIXVAE_CACHE_DIR/jax` (default `~/.cache/kmixvae/jax`, beside the
generation judges); `KMIXVAE_COMPILE_CACHE=off` turns it off, and a folder
the user gave JAX itself (`JAX_COMPILATION_CACHE_DIR`) is left as it is. It
holds at most `MAX_BYTES`, least recently used entries out first (JAX locks
the folder with `filelock`; an install without `filelock` keeps it
unbounded: a `configs/film_het.json` run adds about 2 MB).

Example:

```python
from kmixvae.utils.compile_cache import use_compile_cache

folder = use_compile_cache()   # None on TensorFlow or when turned off
```
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import keras

from kmixvae.errors import ConfigError
from kmixvae.utils.files import cache_root

SWITCH = "KMIXVAE_COMPILE_CACHE"
MAX_BYTES = 1 << 30


def use_compile_cache() -> Path | None:
    """Points JAX's persistent compilation cache at `$KMIXVAE_CACHE_DIR/jax`.

    Call it before the first compile. On TensorFlow, with
    `KMIXVAE_COMPILE_CACHE=off`, or when JAX already has a cache folder, it
    changes nothing. A `KMIXVAE_CACHE_DIR` where the folder cannot be made
    is an error; the default folder that cannot be made (a read-only home)
    leaves the cache off.

    Returns:
        The cache folder in use, or None.

    Raises:
        ConfigError: `KMIXVAE_COMPILE_CACHE` is not `on` or `off`, or the
            folder under `KMIXVAE_CACHE_DIR` cannot be made.
    """
    switch = os.environ.get(SWITCH, "on").strip().lower() or "on"
    if switch not in ("on", "off"):
        raise ConfigError(f"{SWITCH}: expected on or off, got {switch!r}")
    if switch == "off" or keras.backend.backend() != "jax":
        return None
    import jax

    current = jax.config.values.get("jax_compilation_cache_dir")
    if current:
        return Path(current)
    folder = cache_root() / "jax"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK):
            raise PermissionError(f"{folder} is not writable")
    except OSError as e:
        if os.environ.get("KMIXVAE_CACHE_DIR", "").strip():
            raise ConfigError(
                f"KMIXVAE_CACHE_DIR: cannot keep compiled programs in {folder} ({e})"
            ) from None
        return None
    jax.config.update("jax_compilation_cache_dir", str(folder))
    # Every program, not only those that took over a second to compile.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    if importlib.util.find_spec("filelock") is not None:
        jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)
    return folder
