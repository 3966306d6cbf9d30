"""The `autoprompt` command: a thin layer over the library's public API.

Each registered method (frozen_lm.methods) becomes a subcommand built from its config dataclass
(autoprompt_cli.run); `evaluate`, `models`, `label-search` and `nearest` are written out in
autoprompt_cli.commands. A user mistake (frozen_lm.UserError) prints one line and exits with 2;
Ctrl-C exits with 130 after the run saved its best-so-far state.
"""

from autoprompt_cli.group import main

__all__ = ["main"]
