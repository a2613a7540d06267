"""Tests of the shell scripts in `scripts/` and of the install files."""
