"""`autoprompt compare`: a grid of methods x tasks x seeds under one protocol (prompt_compare.compare).

The library names its API arguments and spec keys in messages; this command writes them as its
flags (`defaults.steps` given here -> `--steps`, another default -> `--set KEY`, `workers` ->
`--workers`, `sweep.lora.lr` given here -> `--sweep lora.lr`, `models` -> `--models`)."""

from __future__ import annotations

import json
import re

import click

from autoprompt_cli.options import IntList
from autoprompt_cli.run import Command
from frozen_lm.errors import UserError
from frozen_lm.registry import DEFAULT_MODEL

TASK_FLAGS = ("template", "trigger_template", "label_map", "label_field", "text_fields", "train", "dev", "test",
              "task_name")
DEFAULT_METHODS = "manual,autoprompt,prompt,prefix,lora"
DEFAULT_FLAGS = {"steps": "--steps", "iters": "--iters", "batch_size": "--batch-size"}  # defaults with flags of their own
ARGUMENTS = {"workers": "--workers", "ray_address": "--ray-address", "threads": "--threads",
             "report_to": "--report-to", "tracking_dir": "--tracking-dir"}


class RegistryHelp(click.Option):
    """An option whose help names registered methods: `help_of(methods)` gives it, read from the
    registry when the help is shown (methods: the ones a grid can name, by name)."""

    def __init__(self, *args, help_of, **kwargs):
        super().__init__(*args, **kwargs)
        self.help_of = help_of

    def get_help_record(self, ctx):
        from prompt_compare import comparable_methods

        self.help = self.help_of(comparable_methods())
        return super().get_help_record(ctx)


def _methods_help(methods: dict) -> str:
    return (f"comma-separated methods (default {DEFAULT_METHODS}; with --spec: replaces the file's); registered: "
            f"{', '.join(methods)}")


def _trigger_help(methods: dict) -> str:
    slots = ", ".join(name for name, m in methods.items() if m.template == "trigger")
    return f"the template with [T] slots for the methods that fill slots ({slots}; default: 3 slots before [P])"


@click.command("compare", cls=Command)
@click.option("--spec", type=click.Path(dir_okay=False), default=None,
              help="grid file (.yaml, .toml or .json): tasks (template, label_map, train/dev/test, {seed} in paths), "
                   "methods, seeds, defaults; see `prompt_compare.spec`")
@click.option("--methods", cls=RegistryHelp, help_of=_methods_help, default=None)
@click.option("--template", default=None, help="the hand-written template, no [T] slots, e.g. '{sentence} It was [P] .'")
@click.option("--trigger-template", cls=RegistryHelp, help_of=_trigger_help, default=None)
@click.option("--label-map", default=None, help="label words, e.g. '0=terrible,1=great' (omit for facts)")
@click.option("--label-field", default=None, help="data column holding the label (default: label)")
@click.option("--text-fields", default=None, help="map template fields to data columns: 'sentence=text'")
@click.option("--train", default=None, help="training split; {seed} is replaced by each seed")
@click.option("--dev", default=None, help="the split every method selects on (best checkpoint or prompt)")
@click.option("--test", default=None, help="the split the table reports, never used for selection")
@click.option("--task-name", default=None, help="the task's name in the table (default: task)")
@click.option("--seeds", type=IntList(), default=None, help="seeds, e.g. 13,21,42 (default 13,21,42; with --spec: "
              "replaces the file's)")
@click.option("--model", default=None, help=f"model alias, folder or hub name (default: the spec's, else {DEFAULT_MODEL})")
@click.option("--models", default=None, help="several models, comma-separated (replaces the spec's model(s)): every "
              "method runs on each, and every discrete result (methods that train tokens or nothing) is also scored "
              "on the others: transfer.md, transfer.csv, plots/transfer.png")
@click.option("--device", default=None, help="cpu, cuda, cuda:N or auto (default: the spec's, else auto)")
@click.option("--dtype", default=None, help="float32, bfloat16 or float16 (default: the spec's, else auto = float32)")
@click.option("--steps", type=int, default=None, help="optimizer steps of every training method (equal steps)")
@click.option("--iters", type=int, default=None, help="iterations of every discrete search (autoprompt, gcg)")
@click.option("--batch-size", type=int, default=None, help="batch size of every method that has one")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="any other option for every method that has it, e.g. --set eval_every=10 (repeatable)")
@click.option("--tune", is_flag=True, help="every method tries its default search space (its learning rates; a "
              "search's iterations and candidates) and each seed keeps the setting best on dev; the table shows "
              "the choice and counts the whole sweep in the costs. A value you set (--steps, --set, the spec) is "
              "not swept")
@click.option("--sweep", "sweeps", multiple=True, metavar="METHOD.KEY=V1,V2,...",
              help="a space of your own, e.g. --sweep lora.lr=1e-4,3e-4,1e-3 (repeatable; several keys of a "
                   "method: their product; replaces the spec's sweep)")
@click.option("--keep-sweep-weights", is_flag=True, help="keep every setting's weights (default: only the chosen "
              "setting's; a full fine-tuning setting is 513 MiB on smollm2-135m)")
@click.option("--workers", type=int, default=1, show_default=True,
              help="cells run at a time; above 1 on a local Ray (torch threads: cores / workers); 1 runs here "
                   "without Ray, with the same numbers")
@click.option("--threads", type=int, default=None, help="torch threads per Ray worker (default: cores / workers)")
@click.option("--ray-address", default=None, help="run the cells on an existing Ray cluster (e.g. ray://host:10001 "
              "or auto); its nodes need the data paths and torch/transformers/peft")
@click.option("--out", type=click.Path(file_okay=False), required=True,
              help="the grid's folder: results.jsonl, table.md, table.csv, plots/, cells/<id>/; rerunning with "
                   "the same folder skips finished cells")
@click.option("--json", "as_json", is_flag=True, help="print the table as JSON rows")
@click.option("--report-to", default=None, metavar="TRACKERS",
              help="log every cell to experiment trackers: tensorboard, mlflow, wandb (comma-separated), one "
                   "run per cell grouped under the grid (an MLflow parent run, a W&B group; TensorBoard: "
                   "OUT/cells/<id>/tensorboard)")
@click.option("--tracking-dir", type=click.Path(file_okay=False), default=None,
              help="where the trackers keep their local files (default: TensorBoard in each cell's folder, "
                   "./mlruns, ./wandb)")
@click.pass_context
def compare_command(ctx, spec, methods, seeds, model, models, device, dtype, steps, iters, batch_size, settings, tune,
                    sweeps, keep_sweep_weights, workers, threads, ray_address, out, as_json, **task) -> None:
    """Compare prompts and fine-tuning on the same tasks, one protocol: every method trains on train,
    selects on dev, and is scored on test by the shared evaluator; each cell also records trainable
    values, bytes stored, forward/backward tokens, wall time and peak memory. Writes results.jsonl
    (one line per cell), table.md and table.csv (mean ± sd over seeds), one artifact per cell
    (`autoprompt evaluate OUT/cells/ID`) and three plots. A failing cell is retried once, then
    recorded with its error; Ctrl-C keeps the finished cells, and rerunning continues. --tune and
    --sweep train every setting of a space and keep the best on dev, per method and seed; --models
    runs every method on each model and scores the discrete results across models. The table marks
    each method not significantly worse than the best (a paired test over the test examples of all
    seeds) and gives its p against the manual template.

    \b
    Examples:
      autoprompt compare --spec grid.yaml --workers 2 --out runs/grid
      autoprompt compare --spec grid.yaml --tune --sweep lora.lr=1e-4,3e-4,1e-3,3e-3 --out runs/tuned
      autoprompt compare --spec grid.yaml --models smollm2-135m,gemma3-270m --out runs/two-models
      autoprompt compare --methods manual,autoprompt,prompt,prefix,lora --template '{sentence} It was [P] .' \\
          --label-map '0=terrible,1=great' --train k-shot/sst2/16-{seed}/train.jsonl \\
          --dev k-shot/sst2/16-{seed}/dev.jsonl --test k-shot/sst2/test.jsonl --seeds 13,21,42 --steps 30 --out runs/sst2
    """
    import prompt_compare as grid_api

    defaults = {k: v for k, v in (("steps", steps), ("iters", iters), ("batch_size", batch_size)) if v is not None}
    given = {key: DEFAULT_FLAGS[key] for key in defaults}
    defaults.update(_settings(settings))
    given.update({key: f"--set {key}" for key in _settings(settings)})
    tracking = {"report_to": task.pop("report_to"), "tracking_dir": task.pop("tracking_dir")}
    grid = _grid_source(spec, task, methods)
    sweep = _sweeps(sweeps)
    try:
        result = grid_api.compare(grid, methods if spec or methods else DEFAULT_METHODS,
                                  seeds if seeds or spec else [13, 21, 42], out=out, workers=workers,
                                  ray_address=ray_address, threads=threads, model=model, models=models,
                                  device=device, dtype=dtype, defaults=defaults, sweep=sweep,
                                  tune=True if tune else None, keep_weights=keep_sweep_weights, **tracking)
    except UserError as e:
        raise UserError(in_flags(str(e), given)) from None
    if as_json:
        click.echo(json.dumps({"out": str(result.out), "table": result.table, "ran": result.ran,
                               "skipped": result.skipped, "failed": result.failed, "seconds": result.seconds},
                              sort_keys=True, default=str))
        return
    click.echo(result.markdown)
    if result.transfer:
        click.echo((result.out / "transfer.md").read_text(encoding="utf-8"))
    click.echo(f"{result.ran} cells run, {result.skipped} finished before, {result.failed} failed, "
               f"{result.seconds:.0f} s; wrote {result.out}/results.jsonl, table.md, table.csv"
               + (", transfer.md, transfer.csv" if result.transfer else "") + (", plots/" if result.plots else ""))


def _grid_source(spec, task: dict, methods):
    """The spec file, or the one task the flags describe; UserError for a mix or a missing flag."""
    given = [k for k in TASK_FLAGS if task.get(k) is not None]
    if spec:
        if given:
            raise UserError(f"--{given[0].replace('_', '-')} describes a task; with --spec the tasks come from the file")
        return spec
    for key in ("template", "train", "dev", "test"):
        if task.get(key) is None:
            raise UserError(f"give --spec FILE, or --{key} (the flag form needs --template, --train, --dev and --test)")
    values = {k: task[k] for k in TASK_FLAGS if task.get(k) is not None and k != "task_name"}
    values["name"] = task.get("task_name") or "task"
    return values


def in_flags(message: str, given: dict[str, str]) -> str:
    """A library message in this command's words: a default given here (`defaults.KEY` at the start,
    no spec file before it) as the flag that gave it (given: {key: '--steps' or '--set KEY'}), the
    API's arguments as flags."""
    found = re.match(r"defaults\.([A-Za-z_][A-Za-z0-9_]*)", message)
    if found and found.group(1) in given:
        message = given[found.group(1)] + message[found.end():].replace("'seeds'", "--seeds")
    for name, flag in ARGUMENTS.items():
        message = re.sub(rf"^{name}=", flag + " ", message)
        message = re.sub(rf"^{name}\b", flag, message).replace(f"give {name}=", f"use {flag} ")
    message = re.sub(r"^sweep\.(\S+?)(:|\s)", r"--sweep \1\2", message)  # a --sweep flag's key (no spec file before it)
    message = re.sub(r"^sweep:", "--sweep:", message)
    message = re.sub(r"^models:", "--models:", message)
    return re.sub(r"^give model \(one\) or models \(several\)", "give --model (one) or --models (several)", message)


def _sweeps(pairs) -> dict | None:
    """METHOD.KEY=V1,V2,... pairs -> {method: {key: [values]}} (values read as YAML scalars); None if none."""
    if not pairs:
        return None
    out: dict[str, dict] = {}
    for pair in pairs:
        key, sep, values = pair.partition("=")
        method, dot, option = key.strip().rpartition(".")
        if not sep or not dot or not method or not option:
            raise UserError(f"--sweep {pair!r}: write METHOD.KEY=V1,V2,..., e.g. --sweep lora.lr=1e-4,3e-4")
        out.setdefault(method, {})[option.replace("-", "_")] = [_scalar(v.strip()) for v in values.split(",")
                                                               if v.strip()]
    return out


def _settings(pairs) -> dict:
    """KEY=VALUE pairs -> {key: value} (values read as YAML scalars: numbers, true/false, text)."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set {pair!r}: write KEY=VALUE, e.g. --set eval_every=10")
        out[key.strip().replace("-", "_")] = _scalar(value.strip())
    return out


def _scalar(text: str):
    try:
        import yaml

        value = yaml.safe_load(text)
        return value if isinstance(value, str | int | float | bool) or value is None else text
    except Exception:  # noqa: BLE001 - not YAML: keep the text
        return text
