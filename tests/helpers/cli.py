"""Running the `kmixvae` command line in-process, and assertions on its output."""

from __future__ import annotations

from click.testing import CliRunner, Result

from kmixvae.cli import main


def cli_runner() -> CliRunner:
    """A `CliRunner` that keeps stderr apart from stdout, on every click version.

    click < 8.2 mixes the two unless `mix_stderr=False`; click >= 8.2 dropped
    that argument and always keeps them apart.

    Returns:
        A `click.testing.CliRunner`.
    """
    try:
        return CliRunner(mix_stderr=False)  # click < 8.2
    except TypeError:
        return CliRunner()  # click >= 8.2 keeps stderr apart


def run_cli(*args, expect: int | None = 0) -> tuple[Result, str, str]:
    """Runs `kmixvae` with `args` in-process and checks its exit code.

    Args:
        *args: the command-line arguments; each is passed as `str(arg)`, so
            paths and numbers may be given as they are.
        expect: the exit code the run must end with; `None` checks nothing.

    Returns:
        A tuple `(result, stdout, stderr)`: the click `Result` and its two
        output streams.
    """
    result = cli_runner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    out, err = result.stdout, result.stderr
    if expect is not None:
        assert result.exit_code == expect, (
            f"exit {result.exit_code}\nstdout:\n{out}\nstderr:\n{err}"
        )
    return result, out, err


def assert_one_error_line(result, out, err, *needles):
    """Exit code 2 and exactly one output line, `error: ...`, containing every needle."""
    assert result.exit_code == 2, (result.exit_code, out, err)
    lines = [line for line in (out + err).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("error:"), lines
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def set_args(*sets: str) -> list[str]:
    """`--set` arguments, each key once: a later `key=value` replaces an earlier one's."""
    merged = {s.split("=", 1)[0]: s for s in sets}
    return [arg for s in merged.values() for arg in ("--set", s)]
