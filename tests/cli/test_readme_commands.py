"""Every `kmixvae fit --config ...` command the README shows is a config kmixvae accepts.

The README is what a user copies. Each such command (continuation lines
joined) is parsed as a shell line; its config file and `--set` overrides
must give a valid config (nothing is trained). A stale example, e.g. a
`--set` that leaves a key set that only another setting uses, fails here.
"""

from __future__ import annotations

import re
import shlex

import pytest

from kmixvae import config as config_lib
from tests.helpers.paths import REPO_ROOT


def _fit_commands() -> list[str]:
    text = (REPO_ROOT / "README.md").read_text().replace("\\\n", " ")
    commands = []
    for line in text.splitlines():
        found = re.search(r"kmixvae fit (--config \S+.*)", line)
        if found and "..." not in line:
            commands.append(found.group(1).split("  #")[0].split(" # ")[0].strip())
    return commands


COMMANDS = _fit_commands()


def test_the_readme_shows_fit_commands_with_overrides():
    assert len(COMMANDS) >= 4
    assert any("--set" in c for c in COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_fit_command_is_a_valid_config(command):
    args = shlex.split(command)
    config = args[args.index("--config") + 1]
    sets = [args[i + 1] for i, a in enumerate(args) if a == "--set"]
    raw = config_lib.read_json(REPO_ROOT / config)
    config_lib.from_dict(config_lib.apply_overrides(raw, sets))
