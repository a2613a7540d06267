"""Resuming a run folder: what `fit --resume` may change, and how it picks up.

A run folder's `config.json` is what trains, on resume too. `--resume` takes
`--set` for the keys of `RESUME_OVERRIDES` only (the learning rates, the
gradient clipping and the number of epochs: what rescues a diverging run or
extends a finished one); every other key would change what the run is. The
overrides are written into `config.json` and logged, one entry per resume,
in `resume_overrides.json`.

On resume:

- the temporary files of writes that a kill interrupted are removed;
- a run with no completed epoch starts again from scratch (saying so);
- a run that is complete (all its epochs, or ended by early stopping, as its
  `last.json` records) is left untouched;
- the optimizer keeps its checkpointed moments and step count, while its
  learning-rate schedule and clipping are rebuilt from the config.

Example:

```python
check_resume_overrides(["training.learning_rate=1e-4"])
state = resume_state(run_dir, log=print)     # None: start from scratch
rebuild_optimizer(model, config, steps_per_epoch=32)
```
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the root config composes this part's section: no import at run time
    from kmixvae.config import Config

import json
import time
from pathlib import Path

import keras

from kmixvae.errors import ConfigError
from kmixvae.training.optimizers import make_optimizer, prepare_optimizer
from kmixvae.utils.files import atomic_write_text, remove_temp_files

RESUME_OVERRIDES = (
    "training.epochs",
    "training.learning_rate",
    "training.restart_learning_rate",
    "training.lr_final",
    "training.clipnorm",
)
OVERRIDES_FILE = "resume_overrides.json"


def check_resume_overrides(overrides) -> None:
    """Raises `ConfigError` for a `--set key=value` that `--resume` does not take."""
    for item in overrides:
        key = item.split("=", 1)[0].strip()
        if key not in RESUME_OVERRIDES:
            raise ConfigError(
                f"--set {key}: --resume keeps the run's config; it only takes --set for "
                f"{', '.join(RESUME_OVERRIDES)}"
            )


def check_resume_data_dir(run_dir: str | Path, data_dir) -> None:
    """Raises `ConfigError` when `--data-dir` names other data than the run trained on.

    A resumed run trains on its own data. `--data-dir` may repeat the run's
    `data.dir` (the same folder, however it is spelled); a different folder,
    or one given to a run that read TFDS, would train the rest of the run on
    other images.
    """
    if data_dir is None:
        return
    run_config = Path(run_dir) / "config.json"
    try:
        data = json.loads(run_config.read_text(encoding="utf-8")).get("data", {})
        own = data.get("dir") if isinstance(data, dict) else None
    except (OSError, ValueError, AttributeError):
        return  # loading the config reports what is wrong with it
    if own is not None and _same_folder(own, data_dir):
        return
    trained_on = f"data.dir {own!r}" if own is not None else "TFDS (no data.dir)"
    raise ConfigError(
        f"--data-dir {str(data_dir)!r}: the run {str(run_dir)!r} trained on {trained_on}; "
        "a resumed run keeps its data (drop --data-dir, or start a new run)"
    )


def _same_folder(a, b) -> bool:
    a, b = Path(a).expanduser(), Path(b).expanduser()
    try:
        return a.samefile(b)
    except OSError:
        return a.resolve() == b.resolve()


def record_resume_overrides(run_dir: str | Path, overrides) -> None:
    """Appends this resume's `--set` overrides to the run's `resume_overrides.json`."""
    if not overrides:
        return
    path = Path(run_dir) / OVERRIDES_FILE
    entries = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []
    state = _read_state(Path(run_dir))
    entries.append(
        {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "after_epoch": state["epochs_done"] if state else 0,
            "set": list(overrides),
        }
    )
    atomic_write_text(path, json.dumps(entries, indent=2) + "\n")


def _read_state(run_dir: Path) -> dict | None:
    state_file = run_dir / "checkpoints" / "last.json"
    if not (state_file.is_file() and (run_dir / "checkpoints" / "last.keras").is_file()):
        return None
    return json.loads(state_file.read_text(encoding="utf-8"))


def completion_message(run_dir: str | Path, config: Config) -> str | None:
    """Why the run needs no more training, or None when `--resume` has work to do.

    A run is complete when its final files were written after its last
    completed epoch (`metrics.json` counts that epoch) and that epoch is its
    last one (`training.epochs`), or early stopping ended it there: its
    `checkpoints/last.json` says `stopped_early` (under `early_stopping`) and
    the config still has early stopping on (turning it off in `config.json`
    trains the run on). A `last.json` written before that flag existed
    counts as early-stopped when early stopping is on and epochs remain.
    """
    run_dir = Path(run_dir)
    state = _read_state(run_dir)
    metrics_file = run_dir / "metrics.json"
    if state is None or not metrics_file.is_file() or not (run_dir / "model.keras").is_file():
        return None
    done = int(state["epochs_done"])
    if json.loads(metrics_file.read_text(encoding="utf-8")).get("epochs") != done:
        return None
    epochs = config.training.epochs
    if done >= epochs:
        return (
            f"run {str(run_dir)!r} is complete (all {done} epochs trained); nothing was changed. "
            f"To train it further, resume with --set training.epochs=N (N above {done})."
        )
    if not (config.training.early_stopping.enabled and _stopped_early(state)):
        return None
    return (
        f"run {str(run_dir)!r} is complete (early stopping ended it after epoch {done} of "
        f"{epochs}); nothing was changed. To train it further, set "
        "training.early_stopping.enabled to false in its config.json and resume."
    )


def _stopped_early(state: dict) -> bool:
    """Whether `last.json` says early stopping ended the run (True for one without the flag)."""
    if "early_stopping" not in state:  # written before runs recorded it
        return True
    return bool(state["early_stopping"].get("stopped_early"))


def resume_state(run_dir: str | Path, log=print) -> dict | None:
    """Cleans the run folder after a kill and reads the state of its last completed epoch.

    Removes the temporary files of interrupted writes. Returns the contents
    of `checkpoints/last.json`, or None (after saying so through `log`) when
    no epoch completed: the run then starts again from scratch.
    """
    run_dir = Path(run_dir)
    for path in remove_temp_files(run_dir):
        log(f"resume: removed {path} (a write interrupted by the kill)")
    state = _read_state(run_dir)
    if state is None:
        log(f"resume: run {str(run_dir)!r} has no completed epoch; starting it again from scratch")
    return state


def rebuild_optimizer(model, config: Config, steps_per_epoch: int) -> None:
    """Recompiles `model` with the optimizer the config describes, keeping its trained state.

    The checkpointed optimizer carries the learning-rate schedule and the
    clipping it was built with; an edited config would be ignored. This
    builds a new optimizer from `config` (schedule, clipnorm) and copies
    every variable of the old one that it also has (step count, moments),
    matched by name. Call it inside the distribution scope.
    """

    old = model.optimizer
    old_values = {_variable_key(v): v for v in old.variables}
    model.compile(
        optimizer=make_optimizer(config, steps_per_epoch),
        steps_per_execution=config.training.steps_per_execution,
    )
    new = model.optimizer
    prepare_optimizer(model)
    for variable in new.variables:
        key = _variable_key(variable)
        if key != "learning_rate" and key in old_values:
            source = old_values[key]
            if tuple(source.shape) == tuple(variable.shape):
                variable.assign(keras.ops.convert_to_numpy(source.value))


def _variable_key(variable) -> str:
    """An optimizer variable's path without the optimizer's own (uniquified) name."""
    return variable.path.split("/", 1)[-1]


def nan_failure_message(failure: str, run_dir: str | Path, config: Config) -> str:
    """The one-line error of a run stopped by a non-finite loss, with advice that works."""
    run_dir = Path(run_dir)
    state = _read_state(run_dir)
    t = config.training
    restarted = (
        t.restart_epoch > 0 and state is not None and state["epochs_done"] >= t.restart_epoch
    )
    key = "training.restart_learning_rate" if restarted else "training.learning_rate"
    lr = (t.restart_learning_rate or t.learning_rate) if restarted else t.learning_rate
    advice = (
        f"kmixvae fit --resume {run_dir} --set {key}={lr / 10:g} (or --set training.clipnorm=1.0)"
    )
    if state is None:
        return (
            f"training stopped: {failure}; no checkpoint was written (no epoch completed). "
            f"Start it again with a lower learning rate: {advice}"
        )
    checkpoint = run_dir / "checkpoints" / "last.keras"
    return (
        f"training stopped: {failure}; the last good checkpoint is {checkpoint} "
        f"(epoch {state['epochs_done']}). Resume from it with a lower learning rate: {advice}"
    )
