"""Runs a command in a subprocess and signals it (SIGKILL by default) once a condition holds."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pytest


def kill_when_ready(
    command: Sequence[str],
    ready: Callable[[], bool],
    *,
    log_path: Path,
    env: Mapping[str, str],
    cwd: Path,
    deadline_s: float = 400.0,
    poll_s: float = 0.05,
    signal_number: int = signal.SIGKILL,
) -> int:
    """Starts `command`, sends it `signal_number` as soon as `ready()` is true, and reaps it.

    The test fails (with the process's output) if the process exits on its
    own before `ready()` holds, or if `ready()` does not hold within
    `deadline_s` seconds. The process never outlives this call.

    Args:
        command: the command line (program and arguments).
        ready: called every `poll_s` seconds; the process is killed the first
            time it returns true.
        log_path: file that receives the process's stdout and stderr.
        env: environment of the process.
        cwd: working directory of the process.
        deadline_s: seconds to wait for `ready()` before failing the test.
        poll_s: seconds between two calls of `ready()`.
        signal_number: the signal to send (SIGKILL: a crash; SIGTERM: what a
            job scheduler sends, which the process may handle).

    Returns:
        The process's return code (`-signal.SIGKILL` when the kill landed; a
        process that handles the signal returns its own exit code).
    """
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            list(command), stdout=log, stderr=subprocess.STDOUT, env=dict(env), cwd=cwd
        )
        try:
            deadline = time.monotonic() + deadline_s
            while not ready():
                if proc.poll() is not None:
                    pytest.fail(
                        f"the process exited ({proc.returncode}) before it was ready: "
                        f"{Path(log_path).read_text(errors='replace')}"
                    )
                if time.monotonic() > deadline:
                    pytest.fail(f"the process was not ready after {deadline_s:g} s")
                time.sleep(poll_s)
            proc.send_signal(signal_number)
            proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return proc.returncode
