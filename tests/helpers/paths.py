"""Where the repository is, for tests that read its files or run its scripts."""

from __future__ import annotations

from pathlib import Path

# tests/helpers/paths.py -> the repository root, wherever the test module using it lives.
REPO_ROOT = Path(__file__).resolve().parents[2]
