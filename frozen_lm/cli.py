"""Command-line plumbing shared by every subcommand: options made from config dataclasses, one-line
errors with exit code 2, summary tables and JSON output. No method logic lives here."""

from __future__ import annotations

import functools
import json
import logging
import random
import typing
from dataclasses import MISSING, fields

import click

from frozen_lm.errors import UserError

logger = logging.getLogger(__name__)


class CliError(click.ClickException):
    """Printed as one line 'Error: ...' with exit code 2."""

    exit_code = 2


def guarded(fn):
    """Turn UserError into a one-line message and exit code 2 (never a traceback for user mistakes)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            raise CliError(str(e)) from None

    return wrapper


def _click_type(f, hints):
    choices = f.metadata.get("choices")
    if choices:
        return click.Choice(choices)
    hint = hints.get(f.name, f.type)
    hint = hint.__name__ if isinstance(hint, type) else str(hint)
    for name, typ in (("bool", bool), ("int", int), ("float", float)):
        if hint.startswith(name):
            return typ
    return str


def options_from(cls, skip: tuple[str, ...] = ()):
    """Click options for every field of a config dataclass: --field-name, its type, default and help."""
    hints = typing.get_type_hints(cls)

    def decorate(fn):
        for f in reversed(fields(cls)):
            if f.name in skip:
                continue
            flag = "--" + f.name.replace("_", "-")
            default = None if f.default is MISSING else f.default
            typ = _click_type(f, hints)
            help_ = f.metadata.get("help", "")
            if typ is bool:
                fn = click.option(f"{flag}/--no-{flag[2:]}", f.name, default=default, show_default=True, help=help_)(fn)
            else:
                fn = click.option(flag, f.name, type=typ, default=default, show_default=default is not None,
                                  help=help_)(fn)
        return fn

    return decorate


def config_from(cls, kwargs: dict, **overrides):
    """Build a config dataclass from click kwargs (taking only its own fields)."""
    names = {f.name for f in fields(cls)}
    values = {k: v for k, v in kwargs.items() if k in names}
    values.update(overrides)
    return cls(**values)


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def print_table(rows: list[dict], title: str | None = None) -> None:
    """A plain aligned table on stdout."""
    if title:
        click.echo(title)
    if not rows:
        return
    cols = list(rows[0])
    cells = [[_fmt(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    click.echo("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths)))


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def emit_metrics(metrics: dict, as_json: bool, title: str | None = None) -> None:
    if as_json:
        click.echo(json.dumps(metrics, sort_keys=True))
    else:
        print_table([metrics], title)


json_option = click.option("--json", "as_json", is_flag=True, help="print the metrics as one JSON object (for scripts)")
seed_option = click.option("--seed", type=int, default=0, show_default=True, help="random seed; same seed, same result on CPU")
out_option = click.option("--out", type=click.Path(file_okay=False), default=None,
                          help="artifact directory to write (default: runs/<command>-<time>)")


def default_out(command: str) -> str:
    import time

    return f"runs/{command}-{time.strftime('%Y%m%d-%H%M%S')}"
