"""Tests of the scripts in `apps/`."""
