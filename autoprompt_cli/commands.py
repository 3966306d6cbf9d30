"""The commands that are not one method's run: `evaluate`, `models`, `label-search`, `nearest`."""

from __future__ import annotations

import json
import logging
import random

import click

from autoprompt.label_search import LabelSearchConfig
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
from autoprompt_cli.output import emit, print_table
from autoprompt_cli.run import Command, json_option
from frozen_lm.errors import UserError

logger = logging.getLogger("autoprompt")


@click.command(cls=Command)
def models() -> None:
    """List the offline model aliases, whether each is installed, and how to install it."""
    from frozen_lm.registry import ALIASES, DEFAULT_MODEL, cache_dir, is_installed

    rows = []
    for name, alias in ALIASES.items():
        cached = any(cache_dir().glob(f"{name}-*/source.json")) if cache_dir().exists() else False
        rows.append({"alias": name + (" (default)" if name == DEFAULT_MODEL else ""), "kind": alias.kind,
                     "installed": "yes" if is_installed(name) else "no",
                     "cached": "yes" if cached else "-", "model": alias.description,
                     "install": alias.pip})
    print_table(rows)
    click.echo("Any other --model value is a local folder or a Hugging Face hub name (needs internet).")


@click.command(cls=Command)
@click.argument("artifact", required=False, type=click.Path(exists=True, file_okay=False))
@options_from(TaskOptions, skip=("train", "dev"))
@click.option("--data", default=None, help="split to score: file, hf:NAME:SPLIT or demo:TASK[:SPLIT] (default: the dev split)")
@click.option("--trigger", default=None, help="text for the [T] slots of a template (one token per slot)")
@click.option("--batch-size", type=int, default=32, show_default=True, help="examples per forward pass")
@click.option("--seed", type=int, default=0, show_default=True, help="random seed (scoring itself is deterministic)")
@json_option
@click.pass_context
def evaluate(ctx, artifact, data, trigger, batch_size, seed, as_json, **options) -> None:
    """Score a prompt on a split: accuracy for classification, P@1 over the whole vocabulary for facts.

    Without ARTIFACT, scores a hand-written template (the manual-prompt baseline). With ARTIFACT (the
    --out folder of search, tune or intrinsic-dim), scores the learned prompt with the same task
    options it was trained with; --data picks the split. --model OTHER carries a discrete prompt
    (search, PEZ, manual, instructions, demonstrations) to another model as text and shows what its
    tokens became there; a soft prompt, prefix or trained weights stays on its own model.

    \b
    Examples:
      autoprompt evaluate --template '{sentence} It was [P] .' --label-map '0=terrible,1=great' --data demo:sentiment:dev
      autoprompt evaluate runs/search-1 --data test.jsonl --json
      autoprompt evaluate runs/search-1 --model gemma3-270m --data test.jsonl
    """
    random.seed(seed)
    if batch_size < 1:
        raise UserError("--batch-size must be at least 1")
    opts = config_from(TaskOptions, options)
    if artifact:
        metrics = _evaluate_artifact(ctx, artifact, opts, data, trigger, batch_size)
    else:
        metrics = _evaluate_template(opts, data, trigger, batch_size)
    moved = None if as_json else metrics.pop("transfer", None)
    emit(metrics, as_json)
    if moved is not None:
        _print_transfer(moved)


def _print_transfer(moved: dict) -> None:
    """What became of a prompt carried to another model (frozen_lm.transfer): one row per slot."""
    d = moved["drift"]
    how = "token ids kept (same tokenizer)" if d["how"] == "ids" else "written as text and retokenized"
    rows = [{"slot": i + 1, "source_token": repr(src), "written": repr(w), "tokens_there": " | ".join(map(repr, there)),
             "one_token": one} for i, (src, w, there, one) in
            enumerate(zip(d["source_tokens"], d.get("written", d["source_tokens"]), d["target_tokens"], d["one_token"]))]
    title = f"carried from {moved['source_model']} to {moved['target_model']}: {how}"
    if rows:
        print_table(rows, title)
        click.echo(f"{d['n_tokens_before']} source tokens became {d['n_tokens_after']} there; {d['n_one_token']} of "
                   f"{len(rows)} slots are one token; {d['n_unknown']} unknown tokens")
    else:
        click.echo(f"{title}: {d.get('template', '')!r}")


def _evaluate_template(opts: TaskOptions, data, trigger, batch_size: int) -> dict:
    from frozen_lm.evaluate import evaluate as score

    opts = with_demo_defaults(opts, manual=True, data=data)
    lm = load_lm(opts)
    task = make_task(opts, lm)
    split = data or opts.dev
    if split is None and task.is_target:
        split = task.default_data()
    if split is None:
        raise UserError("give --data with the split to score")
    n = task.template.n_triggers
    if n and not trigger:
        raise UserError(f"the template has {n} [T] slots; give --trigger with {n} tokens, or evaluate a search artifact")
    if trigger and not n:
        raise UserError("--trigger given, but the template has no [T] slots")
    metrics = score(task, split, prompt=trigger or None, batch_size=batch_size)
    return {**metrics, "template": opts.template, "data": split if isinstance(split, str) else "-", "model": opts.model}


def _evaluate_artifact(ctx, path: str, opts: TaskOptions, data, trigger, batch_size: int) -> dict:
    from frozen_lm import transfer
    from frozen_lm.evaluate import evaluate as score
    from frozen_lm.results import load_result

    if trigger:
        raise UserError("--trigger applies to a template; an artifact brings its own prompt")
    result = load_result(path)
    saved = vars(result.task)
    for key in TASK_FIELDS:
        if key != "multi_token" and given(ctx, key) and getattr(opts, key) != saved.get(key):
            raise UserError(f"--{key.replace('_', '-')} cannot change a saved prompt's task; it was {saved.get(key)!r}")
    model = opts.model if given(ctx, "model") else result.model.get("name")
    dtype = opts.dtype if given(ctx, "dtype") else result.model.get("dtype", "auto")
    lm = load_lm(opts, model=model, dtype=dtype)
    changes = {"multi_token": opts.multi_token} if given(ctx, "multi_token") else {}
    task = transfer.task_for(result, lm, **changes)  # another model: a discrete prompt goes as text
    split = data or (result.data.get("dev") or {}).get("source")
    if (split is None or split.startswith("<")) and task.spec.target is not None and not task.template.fields:
        split = task.default_data()
    elif split is None or split.startswith("<"):
        raise UserError(f"{path}: the run's dev split was not a file; give --data")
    metrics = score(task, split, prompt=result, batch_size=batch_size)
    shown = split if isinstance(split, str) else "-"
    return {**metrics, "artifact": str(path), "method": result.method, "data": shown, "model": model}


@click.command("label-search", cls=Command)
@options_from(TaskOptions, skip=("label_map", "dev", "multi_token", "target", "target_field", "chat"))
@options_from(LabelSearchConfig)
@click.option("--trigger", default=None, help="text for the [T] slots (default: 'the' in every slot, or [MASK])")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="write the best word per class as a --label-map JSON file")
@click.option("--overwrite", is_flag=True, help="replace the file --out names (default: refuse, so no file is lost)")
@json_option
@click.pass_context
def label_search(ctx, trigger, out, overwrite, as_json, **options) -> None:
    """Find label words for each class automatically (AutoPrompt's label search).

    Fits a logistic classifier on the model's features at [P] (template with the default or given
    trigger), then ranks every vocabulary token by its output embedding's agreement with each
    class's weights. Prints the top-k words per class.

    \b
    Example:
      autoprompt label-search --template '{sentence} It was [P]' --train demo:sentiment --k 5 --out words.json
    """
    from autoprompt import label_search as find_words
    from autoprompt.label_search import check_out_file

    cfg = config_from(LabelSearchConfig, options)
    opts = with_demo_defaults(config_from(TaskOptions, options), manual=True)
    if out:  # before any work: an existing file, or the training data itself
        check_out_file(out, overwrite, [opts.train])
    lm = load_lm(opts)
    task = make_task(TaskOptions(**{**vars(opts), "label_map": None, "label_field": opts.label_field or "label"}), lm)
    random.seed(cfg.seed)
    words = find_words(task, opts.train, cfg, trigger=trigger)
    if out:
        words.save(out, overwrite, [opts.train])
    if as_json:
        click.echo(json.dumps(words.to_dict(), sort_keys=True))
        return
    print_table([{"class": c, **{f"#{i + 1}": w for i, (w, _) in enumerate(ws)}} for c, ws in words.words.items()],
                f"label words (classifier train accuracy {words.train_accuracy:.3f} on {words.n_examples} examples)")
    if out:
        click.echo(f"wrote {out}: use it with --label-map {out}")


@click.command(cls=Command)
@click.argument("artifact", type=click.Path(exists=True, file_okay=False))
@click.option("--k", "k", type=int, default=5, show_default=True, help="nearest tokens to list per vector")
@click.option("--metric", type=click.Choice(["cosine", "l2"]), default="cosine", show_default=True,
              help="distance between a learned vector and token embeddings")
@click.option("--keep-special/--no-keep-special", default=False, show_default=True,
              help="include special tokens among the candidates")
@click.option("--evaluate", "do_evaluate", is_flag=True,
              help="score the soft prompt and its nearest-token (discrete) reading on --data")
@click.option("--data", default=None, help="split for --evaluate (default: the artifact's dev split)")
@click.option("--batch-size", type=int, default=32, show_default=True, help="examples per forward pass")
@click.option("--model", default=None, help="load the artifact onto this model (default: the one it was made with)")
@json_option
def nearest(artifact, k, metric, keep_special, do_evaluate, data, batch_size, model, as_json) -> None:
    """For each learned prompt vector: its nearest vocabulary tokens with distances, its norm against
    the typical token-embedding norm, and its drift from its initialization. Prints the
    `autoprompt evaluate` line that scores the nearest discrete prompt; --evaluate runs both.

    \b
    Example:
      autoprompt nearest runs/tune-1 --k 5 --metric cosine --evaluate --data test.jsonl
    """
    import softprompt
    from frozen_lm.evaluate import evaluate as score
    from frozen_lm.model import FrozenLM
    from frozen_lm.results import load_result

    if k < 1:
        raise UserError(f"--k must be at least 1, got {k}")
    result = load_result(artifact)
    lm = FrozenLM.load(model or result.model.get("name"), None, result.model.get("dtype", "auto"))
    reading = softprompt.nearest(result, k=k, metric=metric, keep_special=keep_special, lm=lm)
    report = reading.to_dict()
    split = data or (result.data.get("dev") or {}).get("source")
    report["command"] = reading.command(data or split)
    if do_evaluate:
        if split is None or split.startswith("<"):
            raise UserError("--evaluate needs --data (the artifact has no dev split file)")
        task = result.task_for(lm)
        soft = score(task, split, prompt=result, batch_size=batch_size)
        hard = score(task, split, prompt=reading.prompt, batch_size=batch_size)
        report["data"] = split
        report["scores"] = [{"prompt": "soft (learned vectors)", **soft}, {"prompt": "discrete (nearest tokens)", **hard}]
    if as_json:
        click.echo(json.dumps(report, sort_keys=True, default=str))
        return
    print_table(reading.table_rows(), f"{result.method} {artifact}: nearest tokens ({metric})")
    click.echo(f"discrete reading: {report['trigger_tokens']}")
    if not report["trigger_round_trips"]:
        click.echo("note: that text does not re-tokenize to the same tokens; --evaluate scores the token ids directly")
    click.echo(f"evaluate it with: {report['command']}")
    if "scores" in report:
        print_table(report["scores"], f"soft vs discrete on {report['data']}")
