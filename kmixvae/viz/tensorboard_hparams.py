"""TensorBoard HParams trials without TensorFlow: one session per run, its hyperparameters and metrics.

A study (`apps/study.py`) is a grid of runs; this writes it as the log
folder TensorBoard's HParams dashboard reads: the experiment (every
hyperparameter with the values it takes, every metric) in an event file at
the folder's top, and each run as a subfolder (a trial, TensorBoard's
"session") holding its session start (its hyperparameter values), its final
metrics as scalars and its session end. The summaries are the `tensorboard`
package's own hparams protos (`tensorboard.plugins.hparams.summary_v2`,
`api_pb2`, `plugin_data_pb2`), written by its pure-Python
`EventFileWriter` (`kmixvae.viz.tensorboard_events.EventWriter`).

Example:

```python
write_hparams_trials(
    "study_runs/g/hparams",
    [Trial("a__seed0", {"variant": "a", "seed": 0}, {"eval/accuracy": 0.9})],
    metrics={"eval/accuracy": "clustering acc"},
)
# tensorboard --logdir study_runs/g  -> the HParams tab: a table row per trial
```
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from kmixvae.viz.tensorboard_events import EventWriter

MARKER = ".kmixvae_hparams"  # a log folder this module wrote (and may clear before rewriting)


@dataclass
class Trial:
    """One run of a grid as an HParams session.

    Args:
        name: its subfolder (the session's name in TensorBoard).
        hparams: hyperparameter name -> value (bool, int, float or str;
            anything else is written as its JSON text).
        metrics: metric tag -> final value (None or non-finite values are left out).
        start_time: seconds since the epoch (default: now).
        end_time: seconds since the epoch (default: now).
    """

    name: str
    hparams: dict
    metrics: dict
    start_time: float | None = None
    end_time: float | None = None
    extra: dict = field(default_factory=dict)


def _common_values(trials: list[Trial]) -> dict[str, list]:
    """Each hyperparameter's values over the trials, as one type per hyperparameter.

    Numbers stay numbers and booleans booleans when every trial's value has
    that type; otherwise (mixed types, None, lists, objects) every value of
    that hyperparameter becomes text, JSON for what is not a string.
    """
    names = sorted({k for t in trials for k in t.hparams})
    out = {}
    for name in names:
        values = [t.hparams.get(name) for t in trials]
        if all(isinstance(v, bool) for v in values):
            out[name] = values
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            out[name] = [
                float(v) if any(isinstance(x, float) for x in values) else v for v in values
            ]
        else:
            out[name] = [v if isinstance(v, str) else json.dumps(v) for v in values]
    return out


def _session_end(end_time: float):
    from tensorboard.compat.proto import summary_pb2
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    data = plugin_data_pb2.HParamsPluginData(
        session_end_info=plugin_data_pb2.SessionEndInfo(
            status=api_pb2.STATUS_SUCCESS, end_time_secs=end_time
        )
    )
    summary = summary_pb2.Summary()
    summary.value.add(
        tag=metadata.SESSION_END_INFO_TAG,
        metadata=metadata.create_summary_metadata(data),
        tensor=metadata.NULL_TENSOR,
    )
    return summary


def write_hparams_trials(
    log_dir: str | Path, trials: list[Trial], metrics: dict[str, str]
) -> list[Path]:
    """Writes `trials` as an HParams experiment in `log_dir` (replacing what it wrote before).

    Args:
        log_dir: the folder (created; one this function wrote before is cleared first,
            any other non-empty folder is refused).
        trials: the runs, each with its hyperparameters and final metrics.
        metrics: metric tag -> display name, in the table's order.

    Returns:
        The folders written: `log_dir` and one per trial.

    Raises:
        FileExistsError: `log_dir` is a non-empty folder this function did not write.
    """
    from tensorboard.plugins.hparams import summary_v2 as hp

    log_dir = Path(log_dir)
    if log_dir.exists():
        if (log_dir / MARKER).is_file():
            shutil.rmtree(log_dir)
        elif any(log_dir.iterdir()):
            raise FileExistsError(f"{log_dir}: not empty and not an HParams folder kmixvae wrote")
    log_dir.mkdir(parents=True, exist_ok=True)
    (log_dir / MARKER).write_text("written by kmixvae.viz.tensorboard_hparams\n")
    values = _common_values(trials)
    domains = {name: hp.HParam(name, hp.Discrete(sorted(set(v)))) for name, v in values.items()}
    now = time.time()
    with EventWriter(log_dir) as writer:
        writer.add_summary(
            hp.hparams_config_pb(
                hparams=list(domains.values()),
                metrics=[hp.Metric(tag, display_name=label) for tag, label in metrics.items()],
                time_created_secs=now,
            ),
            step=0,
        )
    written = [log_dir]
    for i, trial in enumerate(trials):
        folder = log_dir / trial.name
        chosen = {domains[name]: values[name][i] for name in values if name in trial.hparams}
        with EventWriter(folder) as writer:
            writer.add_summary(
                hp.hparams_pb(chosen, trial_id=trial.name, start_time_secs=trial.start_time or now),
                step=0,
            )
            for tag in metrics:
                value = trial.metrics.get(tag)
                if isinstance(value, (int, float)) and math.isfinite(value):
                    writer.scalar(tag, float(value), step=0)
            writer.add_summary(_session_end(trial.end_time or now), step=0)
        written.append(folder)
    return written


__all__ = ["MARKER", "Trial", "write_hparams_trials"]
