"""One builder for every method's command (`search`, `tune`, `intrinsic-dim`, ...): its options come
from the shared task options and the method's config dataclass; its body loads the model and the
task, calls the method's public run function, writes the artifact and prints the summary."""

from __future__ import annotations

import contextlib
import io
import logging
import random
from dataclasses import asdict, fields
from pathlib import Path

import click

from autoprompt_cli.options import (
    TASK_FIELDS,
    TaskOptions,
    config_from,
    given,
    load_lm,
    make_task,
    options_from,
    with_demo_defaults,
)
from autoprompt_cli.output import default_out, emit, print_table
from frozen_lm import distributed
from frozen_lm.artifact import claim_out
from frozen_lm.errors import UserError
from frozen_lm.methods import Method

logger = logging.getLogger("autoprompt")

json_option = click.option("--json", "as_json", is_flag=True, help="print the metrics as one JSON object (for scripts)")
out_option = click.option("--out", type=click.Path(file_okay=False), default=None,
                          help="artifact directory to write (default: runs/<command>-<time>)")
overwrite_option = click.option("--overwrite", is_flag=True,
                                help="replace the run already in --out (default: refuse, so no run is lost)")
progress_option = click.option("--progress/--no-progress", default=True, show_default=True, help="show a progress bar")


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_command(method: Method) -> click.Command:
    """The click command of a registered method."""
    spec = method.command

    @click.pass_context
    def body(ctx, out, overwrite, as_json, progress, resume=None, manual=None, **kwargs):
        opts = config_from(TaskOptions, kwargs)
        extra = config_from(spec.options, kwargs) if spec.options else None
        if out is not None:  # before any work: a folder that holds another run, or cannot be written
            claim_out(out, overwrite, resume=bool(resume) and Path(resume).resolve() == Path(out).resolve())
        if resume:
            task, train, dev, config, out = _resumed(ctx, method, resume, opts, kwargs, out)
        else:
            config = config_from(method.config, kwargs)
            task, train, dev = _fresh(spec, method, config, opts)
            out = out or default_out(spec.name)
        if spec.check:
            spec.check(task, config, extra)
        seed_everything(config.seed)
        run_kw = {"resume": resume} if spec.resumable and resume else {}
        result = method.run(task, train, dev, config, out=out, progress=progress, **run_kw)
        with _printing():  # under torchrun every process scores the report's splits; process 0 prints
            if spec.after:
                spec.after(result, task, extra)
            _report(spec, result, task, dev, out, manual, as_json, resume)

    if spec.compare_manual:
        body = click.option("--manual", default=None, help="a hand-written template to score on the dev split beside the "
                            "result (default: the demo task's, when the data is the demo's)")(body)
    if spec.resumable:
        body = click.option("--resume", type=click.Path(exists=True, file_okay=False), default=None,
                            help=_resume_help(method))(body)
    for deco in (json_option, progress_option, overwrite_option, out_option):
        body = deco(body)
    if spec.options:
        body = options_from(spec.options)(body)
    body = options_from(method.config)(body)
    body = options_from(TaskOptions)(body)
    return click.command(spec.name, help=spec.help, no_args_is_help=False)(body)


def _resume_help(method: Method) -> str:
    allowed = [_flag(name) for name in getattr(method.config, "RESUMABLE", ())]
    which = (f"only {', '.join(allowed)} may differ from the saved run" if allowed
             else "every option must equal the saved run's (leave them out)")
    extend = ", e.g. --iters 40 to extend it" if "iters" in getattr(method.config, "RESUMABLE", ()) else ""
    return f"continue a saved (or interrupted) run from its --out folder; {which}{extend}"


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _printing():
    """Output as usual on process 0 (or in one process); swallowed on the others."""
    if distributed.is_main():
        return contextlib.nullcontext()
    return contextlib.redirect_stdout(io.StringIO())


def _fresh(spec, method: Method, config, opts: TaskOptions):
    """(task, train, dev) of a new run: demo defaults filled, model loaded."""
    manual = spec.manual_template(config) if callable(spec.manual_template) else spec.manual_template
    opts = with_demo_defaults(opts, manual=manual and opts.template is None)
    if spec.needs_dev and opts.dev is None and opts.target is None:
        raise UserError("give --dev: the split used to pick the best result")
    lm = load_lm(opts)
    task = make_task(opts, lm)
    if opts.train is None and task.is_target:  # a fixed target and no data fields: one example, no files
        return task, task.default_data(), task.default_data()
    return task, opts.train, opts.dev


def _resumed(ctx, method: Method, resume: str, opts: TaskOptions, kwargs: dict, out):
    """(task, train, dev, config, out) of a saved run to continue. Options typed on the command line
    must equal the saved run's, except the config's RESUMABLE fields."""
    from frozen_lm.results import load_result

    previous = load_result(resume)
    if previous.method not in method.artifact_names:
        raise UserError(f"{resume} holds a {previous.method!r} run, not a {method.command.name} run; "
                        f"--resume needs the --out folder of `autoprompt {method.command.name}`")
    saved_cfg = asdict(previous.config)
    allowed = getattr(method.config, "RESUMABLE", ())
    overrides, diffs = {}, []
    for name in (f.name for f in fields(method.config) if f.init):
        if name in kwargs and given(ctx, name):
            if name in allowed:
                overrides[name] = kwargs[name]
            elif kwargs[name] != saved_cfg.get(name):
                diffs.append(f"--{name.replace('_', '-')} {kwargs[name]!r} (saved: {saved_cfg.get(name)!r})")
    saved_task = asdict(previous.task)
    for name in TASK_FIELDS:
        if given(ctx, name) and kwargs[name] != saved_task.get(name):
            diffs.append(f"--{name.replace('_', '-')} {kwargs[name]!r} (saved: {saved_task.get(name)!r})")
    train, dev = _saved_split(previous, "train", opts.train, ctx), _saved_split(previous, "dev", opts.dev, ctx)
    no_data = previous.task.target is not None and train is None
    if diffs:
        raise UserError(f"--resume {resume}: these options differ from the saved run: {'; '.join(diffs)}; "
                        "leave them out" + (f" (only {', '.join(_flag(a) for a in allowed)} may change)" if allowed else ""))
    config = config_from(method.config, {**saved_cfg, **overrides})
    model = opts.model if given(ctx, "model") else previous.model.get("name")
    lm = load_lm(opts, model=model)
    task = previous.task_for(lm)
    if no_data:
        train = dev = task.default_data()
    return task, train, dev, config, out or resume


def _saved_split(previous, split: str, given_source: str | None, ctx):
    saved = (previous.data.get(split) or {}).get("source")
    if given(ctx, split) and given_source != saved:
        logger.info("--%s %s replaces the saved run's %s split (%s)", split, given_source, split, saved)
        return given_source
    if saved is None or saved.startswith("<"):
        if previous.task.target is not None and saved in (None, "<list of 1 rows>"):
            return None  # a fixed target with no data: rebuilt from the task
        raise UserError(f"the saved run's {split} split was in memory ({saved or 'unknown'}); give --{split}")
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
    m = evaluate(task.derive(template=manual), dev)
    found = result.metrics.get("dev", {})
    rest = [k for k in summary if k not in (f"{metric}_dev", "n_scored", "n_skipped")]
    manual_row = {"prompt": "manual", f"{metric}_dev": m[metric], "n_scored": m["n_scored"],
                  "n_skipped": m["n_skipped"], **dict.fromkeys(rest, "-"), "text": manual}
    found_row = {"prompt": "found", f"{metric}_dev": found.get(metric), "n_scored": found.get("n_scored"),
                 "n_skipped": found.get("n_skipped"), **{k: summary[k] for k in rest},
                 "text": getattr(result, "filled_template", "")}
    return [manual_row, found_row]
