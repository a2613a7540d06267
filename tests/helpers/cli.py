"""Assertions shared by the CLI and config tests."""


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
