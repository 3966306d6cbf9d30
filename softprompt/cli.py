"""`autoprompt tune` and `autoprompt nearest` (registered lazily by autoprompt.cli.LAZY_COMMANDS)."""

from __future__ import annotations

import json
import logging
import time

import click

from frozen_lm.cli import (
    config_from,
    default_out,
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
from softprompt.config import TuneConfig

logger = logging.getLogger(__name__)


@click.command()
@options_from(TaskConfig)
@options_from(TuneConfig)
@click.option("--export-peft", type=click.Path(file_okay=False), default=None,
              help="also write PEFT's layout (adapter_config.json + adapter_model.safetensors) here")
@seed_option
@out_option
@json_option
@guarded
def tune(export_peft, seed, out, as_json, **options) -> None:
    """Learn a continuous prompt for the frozen model: prompt tuning (a trainable vector per [T] slot)
    or prefix tuning (trainable key/values at every layer), on the same templates, label words and
    data as `autoprompt search`.

    \b
    Examples:
      autoprompt tune --num-virtual-tokens 20 --template '{sentence} It was [P] .' --init 'text:Classify the review'
      autoprompt tune --method prefix --num-virtual-tokens 10 --init text:"It was great or terrible"
      autoprompt tune --template '{sentence} [T] [T] [T] [P]' --label-map '0=terrible,1=great' --train train.jsonl --dev dev.jsonl
    """
    from frozen_lm.model import FrozenLM
    from softprompt.tune import resolve_task, run_tune, save_tune

    seed_everything(seed)
    task_cfg, cfg = config_from(TaskConfig, options), config_from(TuneConfig, options)
    resolve_task(task_cfg, cfg)  # bad templates fail before the model loads
    out = out or default_out("tune")
    started = time.perf_counter()
    lm = FrozenLM.load(task_cfg.model, task_cfg.device, task_cfg.dtype)
    output = run_tune(task_cfg, cfg, seed, lm)
    path = save_tune(out, output, cfg, lm, seed, time.perf_counter() - started)
    if export_peft:
        _export(export_peft, output, lm, task_cfg)
    if output.result.stopped == "nan":  # the best checkpoint is saved; the one line says so
        raise UserError(f"{output.result.note}; saved to {path}; lower --lr or check the data")
    summary = _summary(output, cfg, str(path))
    if as_json:
        click.echo(json.dumps(summary, sort_keys=True, default=str))
    else:
        print_table([summary], f"{cfg.artifact_method} on {task_cfg.model}, artifact {path}")


def _export(folder, output, lm, task_cfg) -> None:
    from softprompt.peft_export import export_peft, export_peft_prefix

    if output.module.method == "prefix_tuning":
        export_peft_prefix(folder, output.module.fold(), lm, task_cfg.model)
    else:
        export_peft(folder, output.module.vectors, lm, output.task_config.template, task_cfg.model)


def _summary(output, cfg: TuneConfig, path: str) -> dict:
    r, task = output.result, output.task
    metric = task.metric if cfg.loss != "lm" else "token_accuracy"
    row = {"method": cfg.artifact_method, "slots": _slots(output.module), "steps": r.steps_done,
           "best_step": r.best_step, f"train_{metric}": output.metrics["train"].get(metric)}
    if "dev" in output.metrics:
        row[f"dev_{metric}"] = output.metrics["dev"].get(metric)
    row.update({"s/step": r.step_seconds, "stopped": r.stopped, "out": path})
    return row


def _slots(module) -> int:
    return module.vectors.shape[0] if hasattr(module, "vectors") else module.shape[3]


@click.command()
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
@guarded
def nearest(artifact, k, metric, keep_special, do_evaluate, data, batch_size, model, as_json) -> None:
    """For each learned prompt vector: its nearest vocabulary tokens with distances, its norm against
    the typical token-embedding norm, and its drift from its initialization. Prints the
    `autoprompt evaluate` line that scores the nearest discrete prompt; --evaluate runs both.

    \b
    Example:
      autoprompt nearest runs/tune-1 --k 5 --metric cosine --evaluate --data test.jsonl
    """
    from softprompt.interpret import interpret

    if k < 1:
        raise UserError(f"--k must be at least 1, got {k}")
    report = interpret(artifact, k, metric, keep_special, do_evaluate, data, batch_size, model)
    if as_json:
        click.echo(json.dumps(report, sort_keys=True, default=str))
        return
    from softprompt.nearest import table_rows

    print_table(table_rows(report["slots"]), f"{report['method']} {artifact}: nearest tokens ({metric})")
    click.echo(f"discrete reading: {report['trigger_tokens']}")
    if not report["trigger_round_trips"]:
        click.echo("note: that text does not re-tokenize to the same tokens; --evaluate scores the token ids directly")
    click.echo(f"evaluate it with: {report['command']}")
    if "scores" in report:
        print_table(report["scores"], f"soft vs discrete on {report['data']}")
