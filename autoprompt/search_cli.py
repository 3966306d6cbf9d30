"""`autoprompt search` and `autoprompt label-search`."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click
import torch

from autoprompt.search import SearchConfig
from frozen_lm.cli import (
    config_from,
    default_out,
    emit_metrics,
    guarded,
    json_option,
    options_from,
    out_option,
    print_table,
    seed_everything,
    seed_option,
)
from frozen_lm.errors import UserError
from frozen_lm.task import TaskConfig

logger = logging.getLogger(__name__)


@click.command()
@options_from(TaskConfig)
@options_from(SearchConfig)
@click.option("--resume", type=click.Path(exists=True, file_okay=False), default=None,
              help="continue a saved (or interrupted) search from its --out folder; --iters may raise the total")
@seed_option
@out_option
@click.option("--progress/--no-progress", default=True, show_default=True, help="show a progress bar")
@json_option
@guarded
def search(resume, seed, out, progress, as_json, **options) -> None:
    """Find trigger tokens for the [T] slots of a template (AutoPrompt, gradient-guided search).

    Runs with no arguments on the built-in demo sentiment task and the default offline model.
    Writes an artifact folder (config.json, weights.safetensors with trigger_ids, results.json with
    the per-iteration history) after every iteration; Ctrl-C keeps the best-so-far trigger.

    \b
    Examples:
      autoprompt search
      autoprompt search --train demo:capitals --iters 30 --num-cand 32
      autoprompt search --model bert-tiny-mlm --template '[CLS] {sentence} [T] [T] [T] [P] . [SEP]' \\
          --label-map '0=terrible,1=great' --train sst2/train.jsonl --dev sst2/dev.jsonl --out runs/sst2
      autoprompt search --resume runs/sst2 --iters 40
      autoprompt evaluate runs/sst2 --data sst2/test.jsonl
    """
    from autoprompt.run_search import run

    if resume:
        iters = options["iters"] if options["iters"] != SearchConfig.iters else None
        task_cfg, cfg = TaskConfig(), SearchConfig()
    else:
        task_cfg = config_from(TaskConfig, options).resolved()
        cfg = config_from(SearchConfig, options)
        iters = None
        seed_everything(seed)
    out = out or (resume if resume else default_out("search"))
    res = run(task_cfg, cfg, seed, out, resume=resume, iters=iters, progress=progress)
    summary = {res["metric"] + "_dev": res["dev"][res["metric"]], "n_scored": res["dev"]["n_scored"],
               "n_skipped": res["dev"]["n_skipped"], "trigger": " | ".join(res["trigger_tokens"]),
               "iterations": res["state"]["iteration"],
               "s_per_iter": round(res["seconds_per_iteration"] or 0.0, 3), "out": res["out"]}
    if not as_json:
        click.echo(f"prompt: {res['filled_template']}")
    emit_metrics(summary, as_json)


@click.command("label-search")
@options_from(TaskConfig, skip=("label_map", "dev", "multi_token"))
@click.option("--k", "top_k", type=int, default=10, show_default=True, help="label words to show per class")
@click.option("--trigger", default=None, help="text for the [T] slots (default: 'the' in every slot, or [MASK])")
@click.option("--limit", type=int, default=2000, show_default=True, help="at most this many training examples (0 = all)")
@click.option("--no-capitalized", is_flag=True, help="skip tokens with capital letters")
@click.option("--ascii-only", is_flag=True, help="skip tokens with non-ASCII characters")
@click.option("--reg", type=float, default=1.0, show_default=True, help="inverse L2 strength of the logistic classifier")
@seed_option
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="write the best word per class as a --label-map JSON file")
@json_option
@guarded
def label_search(top_k, trigger, limit, no_capitalized, ascii_only, reg, seed, out, as_json, **options) -> None:
    """Find label words for each class automatically (AutoPrompt's label search).

    Fits a logistic classifier on the model's features at [P] (template with the default or given
    trigger), then ranks every vocabulary token by its output embedding's agreement with each
    class's weights. Prints the top-k words per class.

    \b
    Example:
      autoprompt label-search --template '{sentence} It was [P]' --train demo:sentiment --k 5 --out words.json
    """
    from autoprompt.evaluation import trigger_ids_from_text
    from autoprompt.label_search import class_token_scores, predict_features, top_words
    from autoprompt.search import initial_trigger
    from frozen_lm import data as data_mod
    from frozen_lm.model import FrozenLM
    from frozen_lm.task import PromptTask

    if top_k < 1:
        raise UserError("--k must be at least 1")
    seed_everything(seed)
    cfg = config_from(TaskConfig, options).resolved(manual=True)
    lm = FrozenLM.load(cfg.model, cfg.device, cfg.dtype)
    task = PromptTask(lm, cfg.template, None, cfg.text_fields, cfg.label_field or "label")
    data = data_mod.load(cfg.train).sample(limit or None, seed)
    data_mod.check_rows(data, [task.encoder.column(f) for f in task.template.fields] + [task.label_field])
    ids = None
    if task.template.n_triggers:
        ids = torch.tensor(trigger_ids_from_text(task, trigger)) if trigger else initial_trigger(
            task, "mask" if lm.is_masked else "the")
    feats, labels = predict_features(task, data, ids)
    classes, scores, train_acc = class_token_scores(feats, labels, lm.output_embedding_matrix, seed, reg)
    words = top_words(task, scores, classes, top_k, no_capitalized, ascii_only)
    result = {"classes": classes, "words": {c: [w for w, _ in ws] for c, ws in words.items()},
              "classifier_train_accuracy": train_acc, "n_examples": len(data), "template": cfg.template}
    if out:
        Path(out).write_text(json.dumps({c: ws[0][0] for c, ws in words.items()}, indent=2, sort_keys=True) + "\n")
    if as_json:
        click.echo(json.dumps(result, sort_keys=True))
        return
    print_table([{"class": c, **{f"#{i + 1}": w for i, (w, _) in enumerate(ws)}} for c, ws in words.items()],
                f"label words (classifier train accuracy {train_acc:.3f} on {len(data)} examples)")
    if out:
        click.echo(f"wrote {out}: use it with --label-map {out}")
