"""MkDocs hook: the table of registered methods, generated from the registry (frozen_lm.methods).

The marker `<!-- generated: methods -->` on a page (docs/reference/methods.md) is replaced by one
table row per registered method (name, command, what it trains, template kind, default search
space, summary) and, per method, a table of its config dataclass's fields (type, default, help:
the field metadata the command line builds its flags from). A plug-in method installed in the
environment that builds the site is listed too; a plug-in that fails to load is a build warning
(so `--strict` fails).
"""

from __future__ import annotations

import dataclasses
import logging
import typing

MARKER = "<!-- generated: methods -->"
log = logging.getLogger("mkdocs.hooks.methods")


def cell(text) -> str:
    """Text safe inside a Markdown table cell (no links, emphasis, HTML or column breaks)."""
    text = str(text)
    for ch in "\\`*_[]|":
        text = text.replace(ch, "\\" + ch)
    return text.replace("<", "&lt;").replace("\n", " ")


def code(text) -> str:
    """Text as a code span inside a table cell (Python-Markdown's tables keep a code span's pipes)."""
    return "`" + str(text).replace("`", "'") + "`"


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


def registry() -> dict:
    """Every registered method; a plug-in that failed to load becomes a build warning."""
    collect = _Collect()
    logger = logging.getLogger("frozen_lm")
    logger.addHandler(collect)
    try:
        from frozen_lm.methods import methods

        found = methods()
    finally:
        logger.removeHandler(collect)
    for record in collect.records:
        log.warning("method registry: %s", record.getMessage())
    return found


def command_of(method) -> str:
    if method.command is None:
        return "(no command)"
    flag = "" if method.command.default else f" --method {method.name}"
    return code(f"autoprompt {method.command.name}{flag}")


def space_of(method) -> str:
    if not method.space:
        return "none" if method.comparable else "none (a measurement; not in comparisons)"
    return "<br>".join(code(f"{k}: {v}") for k, v in method.space.items())


def default_of(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        return code(repr(f.default))
    if f.default_factory is not dataclasses.MISSING:
        return code(repr(f.default_factory()))
    return "(required)"


def fields_table(config: type, prefix: str = "") -> list[str]:
    """Rows for a config dataclass's fields; nested option groups (dataclass fields) flattened as
    group.field."""
    try:
        hints = typing.get_type_hints(config)
    except Exception:  # an annotation that does not resolve here: show it as written
        hints = {}
    rows = []
    for f in dataclasses.fields(config):
        if not f.init:
            continue
        hint = hints.get(f.name, f.type)
        name = prefix + f.name
        nested = [a for a in (typing.get_args(hint) or (hint,)) if dataclasses.is_dataclass(a) and isinstance(a, type)]
        type_name = hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")
        rows.append(f"| {code(name)} | {code(type_name)} | {default_of(f)} | {cell(f.metadata.get('help', ''))} |")
        if nested:
            rows += fields_table(nested[0], prefix=name + ".")
    return rows


def render() -> str:
    found = registry()
    lines = [f"{len(found)} methods are registered in the environment that built this page.\n",
             "| method | command | trains | template | default search space | summary |",
             "|---|---|---|---|---|---|"]
    for m in found.values():
        lines.append(f"| [{m.name}](#{m.name}) | {command_of(m)} | {m.trains} | {m.template} | "
                     f"{space_of(m)} | {cell(m.summary)} |")
    lines.append("")
    for m in found.values():
        config = m.config
        aliases = ", ".join(code(old) for old, _ in m.aliases)
        lines += [f"## {m.name}\n",
                  f"{cell(m.summary)}\n",
                  f"- config: `{config.__module__}.{config.__qualname__}`; result: "
                  f"`{m.result.__module__}.{m.result.__qualname__}`; package: `{m.module}`",
                  f"- command: {command_of(m)}; trains: {m.trains}; template: {m.template}; "
                  f"needs a dev split: {'yes' if m.needs_dev else 'no'}; resumable: "
                  + ("no" if m.resumable is None else "yes" + (" (may change: " + ", ".join(code(r) for r in
                                                                                          m.resumable) + ")"
                                                               if m.resumable else "")),
                  f"- default search space: {space_of(m)}"
                  + (f"; grid defaults: {code(m.grid_defaults)}" if m.grid_defaults else ""),
                  *([f"- reads artifacts of earlier versions named: {aliases}"] if aliases else []),
                  "",
                  "| field | type | default | help |", "|---|---|---|---|", *fields_table(config), ""]
    return "\n".join(lines)


def on_page_markdown(markdown, page, config, files):
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, render())
