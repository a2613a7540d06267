"""The JSON record a measuring app writes (`--json`): its folder checked before the
work, the file written whole, and one `error:` line (exit 2) when either fails."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def json_folder_error(path: str | None) -> int:
    """0 when `path` is unset or its folder exists; else prints one error line, returns 2.

    Call it before the measurement, so that a typo does not cost the run.
    """
    if path and not Path(path).resolve().parent.is_dir():
        print(f"error: --json: no folder {Path(path).parent}", file=sys.stderr)
        return 2
    return 0


def write_record(path: str, record: dict) -> int:
    """Writes `record` as indented JSON to `path` atomically: 0, or one error line and 2."""
    from kmixvae.errors import KmixvaeError
    from kmixvae.utils.files import atomic_write_text

    try:
        atomic_write_text(Path(path), json.dumps(record, indent=2))
    except (KmixvaeError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
