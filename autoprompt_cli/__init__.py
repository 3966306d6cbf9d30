"""The `autoprompt` command: a thin layer over the library's public API.

Each registered method (frozen_lm.methods) becomes a command built from its config dataclass
(autoprompt_cli.run; methods that share a command name are chosen with --method); `evaluate`,
`models`, `label-search`, `nearest` and `compare` are written out in autoprompt_cli.commands and
autoprompt_cli.compare. A user mistake (frozen_lm.UserError) prints one line in the command's words
and exits with 2; Ctrl-C exits with 130 after the run saved its best-so-far state.

`autoprompt_cli.main` is the click group (imported on first use, so that the console script,
autoprompt_cli.entry, can catch a Ctrl-C while torch imports).
"""


def __getattr__(name: str):
    if name == "main":
        from autoprompt_cli.app import main

        return main
    raise AttributeError(f"module 'autoprompt_cli' has no attribute {name!r}")


__all__ = ["main"]
