"""Ctrl-C and SIGTERM: a run stops at once, keeps its last checkpoint, and says how to resume.

SIGTERM is what a job scheduler (and `kill`) sends. Within
`signals_as_interrupt`, SIGTERM and Ctrl-C (SIGINT) raise `Interrupted`, a
`KeyboardInterrupt`, and the run folder keeps its last completed epoch for
`fit --resume`. Outside training the exception is raised at once (a write in
progress then leaves no temporary file, `kmixvae.utils.files.atomic_write`).
Training runs inside `deferred`: the signal is held back and raised by a
callback at the end of the current batch (`raise_pending`), never from
inside TensorFlow's or JAX's own code (TensorFlow turns an exception raised
there into "Exiting device scope without proper scope nesting"); a
checkpoint being written (`last.keras` with its `last.json`) is finished
first, so the two always describe the same epoch. `fit_run` adds its run
folder to the interrupt; the CLI prints one line and exits with 130 (SIGINT)
or 143 (SIGTERM), the codes a shell gives a process those signals end.

Example:

```python
with signals_as_interrupt():
    fit_run(config)    # SIGTERM -> Interrupted("SIGTERM", run_dir=...)
```
"""

from __future__ import annotations

import contextlib
import signal
import threading
from pathlib import Path

EXIT_CODES = {"SIGINT": 128 + signal.SIGINT, "SIGTERM": 128 + signal.SIGTERM}


class Interrupted(KeyboardInterrupt):
    """A run or command stopped by a signal.

    Args:
        signal_name: `"SIGINT"` (Ctrl-C) or `"SIGTERM"`.
        run_dir: the run folder that holds the last completed epoch, or None.
    """

    def __init__(self, signal_name: str = "SIGINT", run_dir: str | Path | None = None):
        super().__init__(signal_name)
        self.signal_name = signal_name
        self.run_dir = None if run_dir is None else Path(run_dir)

    @classmethod
    def of(cls, interrupt: KeyboardInterrupt, run_dir=None) -> Interrupted:
        """`interrupt` (Ctrl-C's own, or an `Interrupted`) with `run_dir` attached."""
        return cls(getattr(interrupt, "signal_name", "SIGINT"), run_dir)

    @property
    def exit_code(self) -> int:
        """130 for SIGINT, 143 for SIGTERM."""
        return EXIT_CODES[self.signal_name]

    def message(self) -> str:
        """The one line a user reads: what stopped, and how to go on."""
        what = "interrupted" if self.signal_name == "SIGINT" else "terminated (SIGTERM)"
        if self.run_dir is None:
            return f"{what}: stopped before it finished; no file was left half-written"
        return (
            f"{what}: the run folder {self.run_dir} keeps its last completed epoch; "
            f"continue it with: kmixvae fit --resume {self.run_dir}"
        )


class _State:
    deferring = 0  # depth of `deferred` blocks
    pending: str | None = None  # a signal that arrived in one


def _raise_interrupted(signum, frame):
    name = signal.Signals(signum).name
    if _State.deferring:
        _State.pending = name
        return
    raise Interrupted(name)


@contextlib.contextmanager
def signals_as_interrupt():
    """Within the block, SIGTERM and SIGINT raise `Interrupted` (installed from the main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _raise_interrupted) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _State.pending = None


def raise_pending() -> None:
    """Raises the `Interrupted` of a signal held back by `deferred`, if one arrived.

    Call it where stopping is safe (a callback at the end of a batch); the
    signal is then no longer pending.
    """
    if _State.pending is not None:
        name, _State.pending = _State.pending, None
        raise Interrupted(name)


@contextlib.contextmanager
def deferred():
    """Holds back a SIGTERM or Ctrl-C that arrives in the block; raises it when the block ends
    (or earlier, where the block calls `raise_pending`)."""
    _State.deferring += 1
    try:
        yield
    finally:
        _State.deferring -= 1
    if not _State.deferring:
        raise_pending()


__all__ = ["EXIT_CODES", "Interrupted", "deferred", "raise_pending", "signals_as_interrupt"]
