"""The whole `autoprompt` command: the group with its method commands (autoprompt_cli.group) and the
commands that are not one method's run (evaluate, models, label-search, nearest, compare); every
command but `models` takes --config FILE (autoprompt_cli.config_file)."""

from __future__ import annotations

from autoprompt_cli.commands import evaluate, label_search, models, nearest
from autoprompt_cli.compare import compare_command
from autoprompt_cli.config_file import config_option
from autoprompt_cli.group import main

for command in (evaluate, label_search, models, nearest, compare_command):
    if command is not models:  # (no options)
        command.params.insert(0, config_option())
    main.add_command(command)

__all__ = ["main"]
