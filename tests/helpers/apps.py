"""Loads an `apps/` script as a module for its tests."""

from __future__ import annotations

import importlib.util
import sys

from tests.helpers.paths import REPO_ROOT

APPS = REPO_ROOT / "apps"


def load_app(name: str):
    """A fresh module of `apps/<name>.py` (registered in `sys.modules`: dataclasses need it)."""
    spec = importlib.util.spec_from_file_location(name, APPS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
