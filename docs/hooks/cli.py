"""MkDocs hook: the command-line reference, generated from the click commands at build time.

The marker `<!-- generated: cli -->` on a page (docs/reference/cli.md) is replaced by the `--help`
text of `autoprompt` and of every one of its commands, as `autoprompt COMMAND --help` prints it.
A command that several registered methods share (e.g. `search`: autoprompt and gcg) builds its
options for the chosen method, so it is rendered once per method, as
`autoprompt search --method gcg --help` prints it. A plug-in method installed in the environment
that builds the site gets its section too.

Only click's API and the public registry (frozen_lm.methods) are used: the group's own
`list_commands`/`get_command`, and `resolve_command` with `--method NAME` for each method.
A command whose help fails raises, so the build fails.
"""

from __future__ import annotations

import logging

from mkdocs.exceptions import PluginError

MARKER = "<!-- generated: cli -->"
WIDTH = 100  # help text columns
log = logging.getLogger("mkdocs.hooks.cli")


def help_text(command, prog_name: str) -> str:
    """What `prog_name --help` prints."""
    from click.testing import CliRunner

    result = CliRunner().invoke(command, ["--help"], prog_name=prog_name, terminal_width=WIDTH)
    if result.exit_code != 0:
        raise PluginError(f"`{prog_name} --help` failed (exit {result.exit_code}): {result.output}"
                          f"{result.exception!r}")
    return result.output.rstrip()


def block(text: str) -> str:
    """A fenced text block that no backtick run in `text` can close."""
    fence = "`" * max(3, max((len(run) for run in text.split("\n") if set(run) == {"`"}), default=0) + 1)
    return f"{fence}text\n{text}\n{fence}\n"


def families() -> dict[str, list]:
    """{command name: [(method name, is default)]} for commands that registered methods share."""
    from frozen_lm.methods import methods

    out: dict[str, list] = {}
    for m in methods().values():
        if m.command is not None:
            out.setdefault(m.command.name, []).append((m.name, m.command.default))
    return {name: found for name, found in out.items() if len(found) > 1}


def render() -> str:
    import click

    from autoprompt_cli.app import main

    ctx = click.Context(main, info_name="autoprompt", terminal_width=WIDTH)
    shared = families()
    parts = ["## autoprompt\n", block(help_text(main, "autoprompt"))]
    for name in main.list_commands(ctx):
        parts.append(f"## autoprompt {name}\n")
        if name not in shared:
            parts.append(block(help_text(main.get_command(ctx, name), f"autoprompt {name}")))
            continue
        methods = sorted(shared[name], key=lambda m: not m[1])  # the default first
        parts.append(f"`{name}` runs one of {len(methods)} methods, chosen with `--method`; each has its own "
                     f"options, so each is shown as `autoprompt {name} --method NAME --help` prints it.\n")
        for method, default in methods:
            parts.append(f"### autoprompt {name} --method {method}" + (" (default)" if default else "") + "\n")
            _, command, _ = main.resolve_command(ctx, [name, "--method", method])
            parts.append(block(help_text(command, f"autoprompt {name}")))
    return "\n".join(parts)


def on_page_markdown(markdown, page, config, files):
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, render())
