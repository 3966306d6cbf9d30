"""`--config FILE` on every command: option values from a YAML, TOML or JSON file, as defaults that the
flags typed on the command line override (click's default_map).

Keys are the command's options (`search_width` or `search-width`); a nested option group may be a
mapping (`probe_sampling: {ratio: 8}`) or its options written flat. A key the command does not
have is one line naming it and the valid ones. A run's own config.json is a valid FILE too: its
method, config, seed, task, model and data sources become the command's options, so

    autoprompt search --config runs/x/config.json --out runs/y

repeats run x (the same tensors), and `--iters 40` on that line changes just that.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from frozen_lm.configs import read_mapping
from frozen_lm.errors import UserError

BASE = "autoprompt.config_base"  # ctx.meta: the method config read from a run's config.json
NOT_OPTIONS = ("help", "config_file", "version")
RUN_ONLY = ("format", "module", "versions", "method", "config", "seed", "task", "model", "data")


def config_option() -> click.Option:
    """The --config option (eager: its file fills the defaults before the other options are read)."""
    return click.Option(["--config", "config_file"], type=click.Path(exists=True, dir_okay=False), is_eager=True,
                        expose_value=False, callback=apply_config,
                        help="option values from a YAML, TOML or JSON file (flags typed here override them); a run's "
                             "config.json repeats that run")


def read_file(path) -> dict:
    """The mapping a .yaml/.yml, .toml or .json file holds; UserError (one line) for anything wrong."""
    values = read_mapping(path, f"--config {path}")
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise UserError(f"--config {path}: must be a mapping of option names to values, not a {type(values).__name__}")
    return values


def method_in(path) -> str | None:
    """The method a config file names (a run's config.json: its registry name), else None."""
    try:
        values = read_file(path)
    except (UserError, OSError):
        return None  # the command reports what is wrong with the file
    name = values.get("method")
    if is_run_config(values):
        from frozen_lm.methods import for_artifact

        try:
            return for_artifact(name, values["config"], values.get("module") or None).name
        except UserError:
            return None
    return name if isinstance(name, str) else None


def is_run_config(values: dict) -> bool:
    """Whether a file is an artifact's config.json (a run's method, config and task)."""
    return isinstance(values.get("method"), str) and isinstance(values.get("config"), dict) \
        and isinstance(values.get("task"), dict)


def apply_config(ctx: click.Context, param, value):
    """The --config callback: the file's values become the command's defaults."""
    if value is None or ctx.resilient_parsing:
        return value
    values = read_file(value)
    if is_run_config(values):
        options, base = from_run(values, ctx, value)
        ctx.meta[BASE] = base
    else:
        options = from_plain(values, ctx, value)
    params = {p.name: p for p in ctx.command.params}
    for name, v in list(options.items()):
        if isinstance(params[name].type, click.types.StringParamType) and not getattr(params[name], "multiple", False):
            if isinstance(v, dict) or (isinstance(v, list) and name == "label_map"):
                options[name] = json.dumps(v)  # a label map written as a mapping: the JSON the option reads
            elif isinstance(v, list):
                options[name] = ",".join(map(str, v))  # a list written as a list: 'a,b' as the option reads
    ctx.default_map = {**(ctx.default_map or {}), **options}
    return value


def _names(ctx: click.Context) -> dict[str, str]:
    """{key a file may use: the parameter's name}: the flag without dashes (json for --json) and the
    parameter's own name (as_json)."""
    out = {}
    for p in ctx.command.params:
        if p.name in NOT_OPTIONS or not p.expose_value:
            continue
        for opt in (*p.opts, p.name):
            out.setdefault(opt.lstrip("-").replace("-", "_"), p.name)
    return out


def _shown(ctx: click.Context) -> list[str]:
    """The keys a file may use, as the unknown-key message lists them (one per option: its flag)."""
    return sorted({(p.opts[0] if isinstance(p, click.Option) else p.name).lstrip("-").replace("-", "_")
                   for p in ctx.command.params if p.name not in NOT_OPTIONS and p.expose_value})


def _command(ctx: click.Context) -> str:
    method = getattr(ctx.command, "method", None)
    chose = f" --method {method.name}" if method is not None and "method" in _names(ctx) else ""
    return f"`{ctx.command_path}{chose}`"


def from_plain(values: dict, ctx: click.Context, where) -> dict:
    """{option name: value} of a file of options (groups flattened); UserError for an unknown key."""
    names = _names(ctx)
    groups = getattr(ctx.command, "option_groups", {})
    out = {}
    for key, value in values.items():
        name = str(key).replace("-", "_")
        if name in groups and isinstance(value, dict):
            out.update(from_plain(value, ctx, where))
        elif name == "method" and "method" not in names and getattr(ctx.command, "method", None) is not None:
            if value != ctx.command.method.name:
                raise UserError(f"--config {where}: method {value!r} is not run by {_command(ctx)}")
        elif name in names:
            if value is not None:
                out[names[name]] = value
        else:
            valid = sorted({*_shown(ctx), *groups})
            raise UserError(f"--config {where}: {key!r} is not an option of {_command(ctx)}; valid: {', '.join(valid)}")
    return out


def from_run(meta: dict, ctx: click.Context, where) -> tuple[dict, dict]:
    """({option name: value}, the method config) of a run's config.json: its method, config (groups
    flattened), seed, task, model and train/dev sources (the ones this command has)."""
    from frozen_lm import configs
    from frozen_lm.artifact import upgrade_meta
    from frozen_lm.methods import for_artifact

    chosen = getattr(ctx.command, "method", None)
    meta = upgrade_meta(meta)
    method = for_artifact(meta["method"], meta["config"], meta.get("module") or None, f"--config {where}")
    if chosen is None:
        name = method.command.name if method.command is not None else method.name
        raise UserError(f"--config {where} is a run's config.json: repeat the run with `autoprompt {name} --config "
                        f"{where}`, or score it with `autoprompt evaluate {Path(where).parent}`")
    if method.name != chosen.name:
        same = method.command is not None and chosen.command is not None and method.command.name == chosen.command.name
        how = "leave out --method" if same else f"repeat it with `autoprompt {method.command.name if method.command else '?'}`"
        raise UserError(f"--config {where} holds a {method.name!r} run, not a {chosen.name!r} run; {how}")
    upgrade = getattr(method.config, "upgrade", None)
    saved = dict(meta["config"])
    values = {**(upgrade(saved) if upgrade else saved), "seed": meta.get("seed", saved.get("seed", 0))}
    base = configs.to_dict(configs.from_dict(method.config, values, strict=False))
    names = _names(ctx)
    options = {}
    for key, value in base.items():
        if isinstance(value, dict):
            options.update(value)  # a nested option group: its flattened options
        else:
            options[key] = value
    options.update(meta["task"])
    options["model"] = (meta.get("model") or {}).get("name")
    options["dtype"] = (meta.get("model") or {}).get("dtype")
    for split in ("train", "dev"):
        options[split] = _source(meta, split, where)
    if "method" in names:
        options["method"] = method.name
    return {names[k]: v for k, v in options.items() if k in names and v is not None}, base


def _source(meta: dict, split: str, where):
    """A saved split's source; for one held in memory, a default that asks for the flag (called by
    click only when the flag is not typed)."""
    source = ((meta.get("data") or {}).get(split) or {}).get("source")
    if source is None or not str(source).startswith("<"):
        return source
    if meta["task"].get("target") is not None and source == "<list of 1 rows>":
        return None  # a fixed target with no data: the task makes its one example

    def ask():
        raise UserError(f"--config {where}: the run's {split} split was in memory ({source}); give --{split}")

    return ask
