"""The whole `autoprompt` command: the group with its method commands (autoprompt_cli.group) and the
commands that are not one method's run (evaluate, models, label-search, nearest, compare)."""

from __future__ import annotations

from autoprompt_cli.commands import evaluate, label_search, models, nearest
from autoprompt_cli.compare import compare_command
from autoprompt_cli.group import main

for command in (evaluate, label_search, models, nearest, compare_command):
    main.add_command(command)

__all__ = ["main"]
