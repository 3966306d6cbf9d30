"""Library messages in the command line's words: config fields (`GCGConfig.search_width`,
`PromptTask.label_map`, or a field in backquotes where its class is not known) become the command's
flags (`--search-width`, `--label-map`), and the run's arguments (`out=`, `resume=`,
`overwrite=True`, `train=`, ..., `report_to`) its options."""

from __future__ import annotations

import re

import click

FIELD = re.compile(r"\b[A-Z][A-Za-z0-9]*\.([a-z][a-z0-9_]*)\b")
QUOTED = re.compile(r"`([a-z][a-z0-9_]*)`")  # a field named without its class, as `num_virtual_tokens`
ARGUMENT = re.compile(r"\b(out|resume|train|dev|test|data|prompt|models)=(\S?)")
OPTION_OF = {"models": "model"}  # API arguments whose option has another name (--model a,b gives models=)
NAMED = re.compile(r"\b(report_to|tracking_dir)\b")  # API arguments named without '=', as "report_to 'x' ..."


def flag_names(params) -> dict[str, str]:
    """{parameter name: its first flag} of a command's options."""
    return {p.name: p.opts[0] for p in params if isinstance(p, click.Option) and p.opts}


def to_flags(message: str, params) -> str:
    """The message with each config field the command has as a flag written as that flag."""
    flags = flag_names(params)
    message = FIELD.sub(lambda m: flags.get(m.group(1), m.group(0)), message)
    message = QUOTED.sub(lambda m: flags.get(m.group(1), m.group(0)), message)
    message = message.replace("overwrite=True", "--overwrite")
    message = NAMED.sub(lambda m: flags.get(m.group(1), m.group(0)), message)

    def argument(m: re.Match) -> str:
        name = OPTION_OF.get(m.group(1), m.group(1))
        flag = flags.get(name, f"--{name}")
        follow = m.group(2)
        return f"{flag} {follow}" if follow and follow not in ",;.)" else f"{flag}{follow}"

    return ARGUMENT.sub(argument, message)
