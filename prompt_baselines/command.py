"""How `autoprompt finetune` presents `baselines.finetune` (the CLI builds the command from this spec,
the task options and FinetuneConfig): help text, the summary row and the checks before training."""

from __future__ import annotations

from prompt_baselines.config import FinetuneConfig
from prompt_baselines.result import FinetuneResult
from frozen_lm.errors import UserError
from frozen_lm.methods import Command

HELP = """Fine-tune the model itself on a template's label words: the lecture's baselines for prompts.

    LoRA and (IA)3 through PEFT; a bottleneck adapter (PEFT LoRA of rank --adapter-size on each
    block's feed-forward output projection: the `adapters` package does not run with transformers
    5); BitFit (biases only); the last k transformer blocks; full fine-tuning. Same template,
    label words, loss, training loop and evaluator as `autoprompt tune`; the frozen model is never
    changed, and the artifact keeps only what trained (`autoprompt evaluate OUT` scores it).

    \b
    Examples:
      autoprompt finetune --method lora --r 8 --steps 40
      autoprompt finetune --method bitfit --template '{sentence} It was [P] .' --label-map '0=terrible,1=great' \\
          --train train.jsonl --dev dev.jsonl --out runs/bitfit
      autoprompt finetune --method last_k --last-k 2 --lr 1e-4
      autoprompt evaluate runs/bitfit --data test.jsonl
    """


def summary(r: FinetuneResult) -> dict:
    metric = r.metric
    row = {"method": r.config.method, "trainable": r.trainable_params, "steps": r.steps_done, "best_step": r.best_step,
           f"train_{metric}": r.metrics.get("train", {}).get(metric)}
    if "dev" in r.metrics:
        row[f"dev_{metric}"] = r.metrics["dev"].get(metric)
    row.update({"s/step": r.timings.get("step_seconds"), "stopped": r.stopped})
    return row


def headline(r: FinetuneResult) -> str:
    return f"finetune {r.config.method} on {r.model.get('name')} ({r.implementation}), artifact {r.saved_to}"


def check(task, config: FinetuneConfig, options) -> None:
    from prompt_baselines.run import check as check_run

    check_run(task, config)


def after(result: FinetuneResult, task, options) -> None:
    if result.stopped == "nan":
        raise UserError(f"{result.note}; saved to {result.saved_to}; lower --lr or check the data")


COMMAND = Command(name="finetune", help=HELP, summary=summary, headline=headline, manual_template=True,
                  needs_dev=False, check=check, after=after)
