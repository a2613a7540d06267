"""Several processes training one model (JAX): who writes the run folder, and where the others write.

Every process runs the same `fit` (each step, evaluation and callback is a
collective over all of them), so every process also runs the code that
writes files. Process 0 writes the run folder and the saved model; each
other process writes the same files into a private temporary folder,
removed when it exits, so that the code path (and every collective in it)
is the same in all processes. A resumed run is copied there first, so that
the other processes restore the same checkpoint.

The judge of the end-of-run generation scores is trained, not read from
the on-disk cache, in every process: one process finding a cached judge
while another trains one would leave the training collective waiting.

Example:

```python
dist = configure_distribution(config)
if not dist.is_chief:
    config, run_dir, resume, log = private_outputs(config, dist, run_dir, resume)
```
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the root config composes this part's section: no import at run time
    from kmixvae.config import Config

import atexit
import dataclasses
import os
import shutil
import tempfile
from pathlib import Path


def private_outputs(config: Config, dist, run_dir, resume):
    """Where a process other than 0 writes: a private copy of every output path.

    Args:
        config: the run's config.
        dist: the `Distribution` (its `process_index`).
        run_dir: the new run's folder, or None.
        resume: the folder of the run being resumed, or None.

    Returns:
        `(config, run_dir, resume, log)`: the config with `output.runs_dir`
        and `output.saved_model` in the private folder, the private run or
        resume folder, and a `log` that prints nothing (process 0 speaks).
    """
    private = Path(tempfile.mkdtemp(prefix=f"kmixvae-process{dist.process_index}-"))
    atexit.register(shutil.rmtree, private, True)
    output = dataclasses.replace(
        config.output, runs_dir=str(private / "runs"), saved_model=str(private / "model.keras")
    )
    config = dataclasses.replace(config, output=output)
    if resume is not None:
        copy = private / "run"
        shutil.copytree(resume, copy, ignore=shutil.ignore_patterns(".*.tmp*"))
        return config, None, str(copy), _quiet
    return config, (None if run_dir is None else str(private / "run")), None, _quiet


def train_judges_here(dist) -> None:
    """Over several processes, every process trains its judge (no shared cache)."""
    if dist.process_count > 1:
        private = tempfile.mkdtemp(prefix=f"kmixvae-judges{dist.process_index}-")
        atexit.register(shutil.rmtree, private, True)
        os.environ["KMIXVAE_CACHE_DIR"] = private


def _quiet(*args, **kwargs) -> None:
    return None
