"""One builder for every method's command (`search`, `tune`, `finetune`, `intrinsic-dim`, a plug-in's):
its options come from the shared task options and the chosen method's config dataclass; its body
loads the model and the task and calls the one runner (frozen_lm.run), which writes the artifact;
then it prints the summary.

Methods whose `Command` shares a name form one command, and `--method NAME` picks one of them (the
`default=True` one without it, or the method of the run given to `--resume`); the command is built
for the chosen method, so `autoprompt search --method gcg --help` shows GCG's options.
Several models (`--model a,b`) are what the command's `Command.models` says: one run whose method
takes the others as its input 'models' (search), or one run per model and a table across them.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import click

from autoprompt_cli.config_file import BASE, config_option
from autoprompt_cli.flags import to_flags
from autoprompt_cli.options import (
    TASK_FIELDS,
    TaskOptions,
    config_from,
    flags_of,
    given,
    load_lm,
    make_task,
    option_groups,
    options_from,
    with_demo_defaults,
)
from autoprompt_cli.output import default_out, emit, print_table
from frozen_lm import distributed
from frozen_lm.errors import UserError
from frozen_lm.methods import Method

logger = logging.getLogger("autoprompt")

json_option = click.option("--json", "as_json", is_flag=True, help="print the metrics as one JSON object (for scripts)")
out_option = click.option("--out", type=click.Path(file_okay=False), default=None,
                          help="artifact directory to write (default: runs/<command>-<time>)")
overwrite_option = click.option("--overwrite", is_flag=True,
                                help="replace the run already in --out once the new run saves its first result "
                                     "(default: refuse, so no run is lost)")
progress_option = click.option("--progress/--no-progress", default=True, show_default=True, help="show a progress bar")
report_option = click.option("--report-to", default=None, metavar="TRACKERS",
                             help="log the run to experiment trackers: tensorboard, mlflow, wandb (comma-separated; "
                                  "pip install 'autoprompt-suite[tensorboard]' etc.): the options as parameters, the "
                                  "progress as metrics per step, the --out folder as the run's files")
tracking_dir_option = click.option("--tracking-dir", type=click.Path(file_okay=False), default=None,
                                   help="where the trackers keep their local files (DIR/tensorboard/<run>, DIR/mlruns "
                                        "unless MLFLOW_TRACKING_URI is set, DIR/wandb; default: TensorBoard in the "
                                        "--out folder, ./mlruns, ./wandb)")


class CliError(click.ClickException):
    """Printed as one line 'Error: ...' with exit code 2."""

    exit_code = 2


class Command(click.Command):
    """A command whose library errors and log messages are printed in its own words (config fields
    as its flags). elsewhere: {flag: method} of options that other methods of the command have;
    method: the Method a method command runs; option_groups: its config's nested option groups
    ({field: their option names}, which a --config file may write as mappings)."""

    elsewhere: dict[str, str] = {}
    method = None
    option_groups: dict[str, list[str]] = {}

    def parse_args(self, ctx, args):
        try:
            return super().parse_args(ctx, args)
        except click.NoSuchOption as e:
            method = self.elsewhere.get(e.option_name)
            if method is None:
                raise
            raise CliError(f"{e.option_name} is an option of --method {method}; add --method {method}") from None

    def invoke(self, ctx):
        words = _InOwnWords(self.params)
        handlers = logging.getLogger().handlers
        for handler in handlers:
            handler.addFilter(words)
        try:
            return super().invoke(ctx)
        except UserError as e:
            raise CliError(to_flags(str(e), self.params)) from None
        finally:
            for handler in handlers:
                handler.removeFilter(words)


class _InOwnWords(logging.Filter):
    """Rewrites a log record's config fields as the command's flags."""

    def __init__(self, params):
        super().__init__()
        self.params = params

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        words = to_flags(message, self.params)
        if words != message:
            record.msg, record.args = words, ()
        return True


def family_help(methods: list[Method], chosen: Method) -> str:
    """The chosen method's help, and the other methods of the command with how to see their options."""
    text = chosen.command.help.rstrip()
    if len(methods) < 2:
        return text
    lines = [f"  {m.name}{' (default)' if m.command.default else ''}: {m.summary}" for m in methods]
    other = next(m.name for m in methods if m is not chosen)
    return (f"{text}\n\n    \b\n    Methods (--method; the options below are {chosen.name}'s):\n"
            + "\n".join("    " + line for line in lines)
            + f"\n    `autoprompt {chosen.command.name} --method {other} --help` shows {other}'s options.")


def build_command(methods: list[Method], chosen: Method) -> click.Command:
    """The click command of `chosen`, one of the methods that share its command name."""
    spec = chosen.command

    @click.pass_context
    def body(ctx, out, overwrite, as_json, progress, report_to, tracking_dir, resume=None, manual=None, method=None,
             **kwargs):
        from frozen_lm.outdir import OutFolder
        from frozen_lm.runner import run
        from frozen_lm.tracking import tracking_from

        opts = config_from(TaskOptions, kwargs)
        tracking_from(report_to)  # a missing package: before the model loads
        extra = config_from(spec.options, kwargs) if spec.options else None
        if spec.alternative is not None:  # the options may ask for something other than one run
            tables = spec.alternative(extra, Alternative(vars(opts), opts, out, overwrite, resume, progress,
                                                         lambda: config_from(chosen.config, kwargs, ctx,
                                                                             base=ctx.meta.get(BASE))))
            if tables is not None:
                return _tables(tables, as_json)
        opts, more = _models(spec, opts)  # --model a,b: the first model, and the others
        if more and spec.models == "each":
            return _each_model(ctx, chosen, opts, [opts.model, *more], kwargs, extra, as_json,
                               dict(out=out, overwrite=overwrite, resume=resume, progress=progress, report_to=report_to,
                                    tracking_dir=tracking_dir))
        if out is not None:  # before the model loads: a folder holding another run, or one that cannot be written
            OutFolder(out, overwrite, resume=bool(resume) and Path(resume).resolve() == Path(out).resolve())
        if resume:
            task, train, dev, config, out = _resumed(ctx, chosen, resume, opts, kwargs, out)
        else:
            config = config_from(chosen.config, kwargs, ctx, base=ctx.meta.get(BASE))
            task, train, dev = _fresh(chosen, config, opts)
            out = out or default_out(spec.name)
        if spec.check:
            spec.check(task, config, extra)
        result = run(chosen, task, train, dev, config, out=out, overwrite=overwrite, resume=resume, progress=progress,
                     report_to=report_to, tracking_dir=tracking_dir, inputs={"models": more} if more else None)
        with _printing():  # under torchrun every process scores the report's splits; process 0 prints
            if spec.after:
                spec.after(result, task, extra)
            _report(spec, result, task, dev, out, manual, as_json, resume)

    if spec.compare_manual:
        body = click.option("--manual", default=None, help="a hand-written template to score on the dev split beside the "
                            "result (default: the demo task's, when the data is the demo's)")(body)
    if chosen.resumable is not None:
        body = click.option("--resume", type=click.Path(exists=True, file_okay=False), default=None,
                            help=_resume_help(chosen))(body)
    if len(methods) > 1:
        body = click.option("--method", type=click.Choice([m.name for m in methods]), default=chosen.name,
                            show_default=True, help="the algorithm: " + "; ".join(f"{m.name}: {m.summary}" for m in methods)
                            )(body)
    for deco in (tracking_dir_option, report_option, json_option, progress_option, overwrite_option, out_option):
        body = deco(body)
    if spec.options:
        body = options_from(spec.options)(body)
    body = options_from(chosen.config)(body)
    body = options_from(TaskOptions)(body)
    command = click.command(spec.name, cls=Command, help=family_help(methods, chosen), no_args_is_help=False)(body)
    command.params.insert(0, config_option())
    command.method = chosen
    command.option_groups = option_groups(chosen.config)
    own = {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)}
    command.elsewhere = {flag: m.name for m in reversed(methods) if m is not chosen
                         for flag in flags_of(m.config) if flag not in own}
    return command


@dataclass
class Alternative:
    """What a Command's `alternative` gets from the command line: the task options (a dict), a loader
    of the model they name, the run options, and the method's config from the typed options."""

    task: dict
    options: TaskOptions
    out: str | None
    overwrite: bool
    resume: str | None
    progress: bool
    make_config: Callable

    def config(self):
        return self.make_config()

    def load_lm(self):
        return load_lm(self.options)

    def default_out(self, name: str) -> str:
        """A new runs/<name>-<time> folder (what --out defaults to)."""
        return default_out(name)


def _models(spec, opts: TaskOptions) -> tuple[TaskOptions, list[str]]:
    """(the options with the first of --model a,b, the other models): a command whose methods take one
    model refuses several."""
    names = [m.strip() for m in str(opts.model).split(",") if m.strip()] or [opts.model]
    if len(names) > 1 and spec.models not in ("joint", "each"):
        raise UserError(f"--model takes one model for `autoprompt {spec.name}` (given: {', '.join(names)})")
    return replace(opts, model=names[0]), names[1:]


def _each_model(ctx, chosen: Method, opts: TaskOptions, names: list[str], kwargs: dict, extra, as_json: bool,
                run_kw: dict) -> None:
    """--model a,b for a command with one run per model: each in OUT/<n>-<model>/, one summary row
    each, then the command's table over them (`Command.across`)."""
    from frozen_lm.runner import run

    spec = chosen.command
    if run_kw["resume"]:
        raise UserError("--resume continues one model's run: give its folder OUT/<n>-<model> and that one --model")
    base = run_kw.pop("out") or default_out(spec.name)
    config = config_from(chosen.config, kwargs, ctx, base=ctx.meta.get(BASE))
    results, rows = [], []
    for i, name in enumerate(names):
        task, train, dev = _fresh(chosen, config, replace(opts, model=name))
        if spec.check:
            spec.check(task, config, extra)
        out = str(Path(base) / f"{i}-{re.sub(r'[^A-Za-z0-9._-]+', '-', Path(name).name).strip('-') or 'model'}")
        result = run(chosen, task, train, dev, config, out=out, **run_kw)
        results.append(result)
        rows.append({"model": name, **spec.summary(result), spec.out_key: out})
        result.lm, task = None, None  # this model is released before the next one loads (results keep no model)
    tables = [(f"{spec.name} on {len(names)} models", rows)]
    if spec.across is not None:
        tables.append(spec.across(results, base))
    with _printing():
        if as_json:
            emit({title: table for title, table in tables}, True)
        for title, table in [] if as_json else tables:
            print_table(table, title)


def _tables(tables: list, as_json: bool) -> None:
    """Print an alternative's [(title, rows)] (--json: one object {title: rows})."""
    if as_json:
        emit({title: rows for title, rows in tables}, True)
        return
    for title, rows in tables:
        print_table(rows, title)


def _resume_help(method: Method) -> str:
    allowed = ["--" + name.replace("_", "-") for name in method.resumable]
    which = (f"only {', '.join(allowed)} may differ from the saved run" if allowed
             else "every option must equal the saved run's (leave them out)")
    extend = ", e.g. --iters 40 to extend it" if "iters" in method.resumable else ""
    return f"continue a saved (or interrupted) run from its --out folder; {which}{extend}"


def _printing():
    """Output as usual on process 0 (or in one process); swallowed on the others."""
    if distributed.is_main():
        return contextlib.nullcontext()
    return contextlib.redirect_stdout(io.StringIO())


def _fresh(method: Method, config, opts: TaskOptions):
    """(task, train, dev) of a new run: demo defaults filled, model loaded."""
    spec = method.command
    manual = spec.manual_template(config) if callable(spec.manual_template) else spec.manual_template
    manual = method.template == "manual" if manual is None else manual
    start = getattr(config, "from_template", None)
    if start and opts.template is None:  # a hand-written start replaces the task's template anyway
        opts = replace(opts, template=start)
    opts = with_demo_defaults(opts, manual=manual and opts.template is None)
    if method.needs_dev and opts.dev is None and opts.target is None:
        raise UserError("give dev=, the split used to pick the best result")
    lm = load_lm(opts)
    task = make_task(opts, lm)
    if opts.train is None and task.is_target:  # a fixed target and no data fields: one example, no files
        return task, None, None
    return task, opts.train, opts.dev


def _resumed(ctx, method: Method, resume: str, opts: TaskOptions, kwargs: dict, out):
    """(task, train, dev, config, out) of a saved run to continue: the saved config, task and splits
    with the options typed now written over them (the runner refuses what would change the run)."""
    from frozen_lm.results import load_result

    previous = load_result(resume)
    if previous.method != method.name:
        raise UserError(f"resume={resume} holds a {previous.method!r} run, not a {method.name!r} run")
    config = config_from(method.config, kwargs, ctx, base=_saved_config(previous))
    model = opts.model if given(ctx, "model") else previous.model.get("name")
    lm = load_lm(opts, model=model, dtype=opts.dtype if given(ctx, "dtype") else previous.model.get("dtype", "auto"))
    typed = {name: kwargs[name] for name in TASK_FIELDS if given(ctx, name)}
    task = previous.task_for(lm, **_task_changes(typed, previous))
    train, dev = _saved_split(previous, "train", opts.train, ctx), _saved_split(previous, "dev", opts.dev, ctx)
    return task, train, dev, config, out or resume


def _saved_config(previous) -> dict:
    from frozen_lm import configs

    return configs.to_dict(previous.config)


def _task_changes(typed: dict, previous) -> dict:
    """Task options typed on a resume, as TaskSpec values (a label map parsed)."""
    from frozen_lm.verbalizer import parse_label_map

    out = dict(typed)
    if "label_map" in out:
        out["label_map"] = parse_label_map(out["label_map"])
    return out


def _saved_split(previous, split: str, given_source: str | None, ctx):
    saved = (previous.data.get(split) or {}).get("source")
    if given(ctx, split) and given_source != saved:
        logger.info("--%s %s replaces the saved run's %s split (%s)", split, given_source, split, saved)
        return given_source
    if saved is None or saved.startswith("<"):
        if previous.task.target is not None and saved in (None, "<list of 1 rows>"):
            return None  # a fixed target with no data: rebuilt from the task
        raise UserError(f"the saved run's {split} split was in memory ({saved or 'unknown'}); give {split}=")
    return saved


def _report(spec, result, task, dev, out, manual, as_json, resume) -> None:
    summary = {**spec.summary(result), spec.out_key: str(out)}
    rows = [summary]
    manual = manual or getattr(result.config, "from_template", None) or _demo_manual(dev)
    if spec.compare_manual and manual and not resume:
        rows = _with_manual(result, task, dev, manual, summary)
    details = spec.details(result) if spec.details else {}
    if as_json:
        emit({**summary, **{k: t[1] for k, t in details.items()}, **({"manual": rows[0]} if len(rows) > 1 else {})}, True)
        return
    for title, table in details.values():
        print_table(table, title)
    if spec.headline:
        click.echo(spec.headline(result))
    print_table(rows)


def _demo_manual(dev) -> str | None:
    from frozen_lm.data import DEMO_TASKS

    if isinstance(dev, str) and dev.startswith("demo:"):
        demo = DEMO_TASKS.get(dev.split(":")[1])
        return demo.manual_template if demo else None
    return None


def _with_manual(result, task, dev, manual: str, summary: dict) -> list[dict]:
    """Rows 'manual' and 'found' with the same dev metric, for a side-by-side table."""
    from frozen_lm.evaluate import evaluate

    metric = task.metric
    m = evaluate(task.derive(template=manual), dev if dev is not None else task.default_data())
    found = result.metrics.get("dev", {})
    rest = [k for k in summary if k not in (f"{metric}_dev", "n_scored", "n_skipped")]
    manual_row = {"prompt": "manual", f"{metric}_dev": m[metric], "n_scored": m["n_scored"],
                  "n_skipped": m["n_skipped"], **dict.fromkeys(rest, "-"), "text": manual}
    found_row = {"prompt": "found", f"{metric}_dev": found.get(metric), "n_scored": found.get("n_scored"),
                 "n_skipped": found.get("n_skipped"), **{k: summary[k] for k in rest},
                 "text": getattr(result, "filled_template", "")}
    return [manual_row, found_row]
