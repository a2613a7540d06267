"""The GPU install list (`requirements-cuda.txt`) stays the CPU install with GPU builds.

`scripts/setup_env.sh --cuda` installs `requirements-cuda.txt`, then kmixvae
without its dependencies; the list must therefore name every dependency of
`pyproject.toml` (and the test extra) at the same version, with exactly two
swaps: `tensorflow-cpu` -> `tensorflow[and-cuda]` and `jax` -> `jax[cuda12]`.
"""

from __future__ import annotations

import re

import pytest

from tests.helpers.paths import REPO_ROOT


def _requirement(line: str) -> tuple[str, str, str]:
    """(name, extras, specifier) of a requirement line without its marker."""
    line = line.split(";")[0].strip()
    m = re.match(r"^([A-Za-z0-9_.-]+)(\[[^\]]*\])?\s*(.*)$", line)
    assert m, line
    return m.group(1).lower().replace("_", "-"), m.group(2) or "", m.group(3).replace(" ", "")


def test_cuda_requirements_match_pyproject():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    cpu = {}
    for line in project["dependencies"] + project["optional-dependencies"]["test"]:
        name, extras, spec = _requirement(line)
        if name == "tensorflow":  # the non-x86_64 line; x86_64 gets tensorflow-cpu
            continue
        cpu[name] = (extras, spec)
    gpu = {}
    for line in (REPO_ROOT / "requirements-cuda.txt").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, extras, spec = _requirement(line)
            gpu[name] = (extras, spec)
    expected = dict(cpu)
    expected["tensorflow"] = ("[and-cuda]", expected.pop("tensorflow-cpu")[1])
    expected["jax"] = ("[cuda12]", expected["jax"][1])
    assert gpu == expected


def test_license_is_an_spdx_expression():
    """PEP 639 form: setuptools stops building the TOML-table form after 2027-02-18."""
    tomllib = pytest.importorskip("tomllib")
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["license"] == "Apache-2.0"
    requires = pyproject["build-system"]["requires"]
    setuptools = next(r for r in requires if r.startswith("setuptools"))
    assert re.fullmatch(r"setuptools>=(\d+)", setuptools) and int(setuptools.split(">=")[1]) >= 77
