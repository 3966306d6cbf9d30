"""Printing: aligned tables, JSON lines, and artifact folder names."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click


def print_table(rows: list[dict], title: str | None = None) -> None:
    """A plain aligned table on stdout."""
    if title:
        click.echo(title)
    if not rows:
        return
    cols = list(dict.fromkeys(c for r in rows for c in r))
    cells = [[_fmt(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    click.echo("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths)))


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def emit(metrics: dict, as_json: bool, title: str | None = None) -> None:
    if as_json:
        click.echo(json.dumps(metrics, sort_keys=True, default=str))
    else:
        print_table([metrics], title)


def default_out(command: str) -> str:
    """runs/<command>-<time>, with -2, -3, ... when a run started in the same second has it."""
    base = Path("runs") / f"{command}-{time.strftime('%Y%m%d-%H%M%S')}"
    base.parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, 10_000):
        path = base if n == 1 else base.with_name(f"{base.name}-{n}")
        try:
            path.mkdir()
            return str(path)
        except FileExistsError:
            continue
    raise click.ClickException(f"no free folder name next to {base}")
