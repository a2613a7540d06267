"""Runs a command in a subprocess and SIGKILLs it once a condition holds (crash tests)."""

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
) -> int:
    """Starts `command`, SIGKILLs it as soon as `ready()` is true, and reaps it.

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

    Returns:
        The process's return code (`-signal.SIGKILL` when the kill landed).
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
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return proc.returncode
