"""How `autoprompt finetune` presents the six fine-tuning baselines (the CLI builds the command from
these specs, the task options and each method's config; `--method NAME` picks one, LoRA runs
without it): help texts, the summary row and the checks before training. 'manual' has no command."""

from __future__ import annotations

from frozen_lm.configs import name_of
from frozen_lm.errors import UserError
from frozen_lm.methods import Command
from prompt_baselines.fit import prepare
from prompt_baselines.result import FinetuneResult

COMMON = """
    One of the lecture's baselines for prompts, which fine-tune the model itself on a template's
    label words. Same template, label words, loss, training loop and evaluator as prompt tuning; the frozen
    model is never changed, and the artifact keeps only what trained (`autoprompt evaluate OUT`
    scores it).

    \b
    Examples:
      autoprompt finetune --method lora --r 8 --steps 40
      autoprompt finetune --method bitfit --template '{sentence} It was [P] .' --label-map '0=terrible,1=great' \\
          --train train.jsonl --dev dev.jsonl --out runs/bitfit
      autoprompt finetune --method last_k --last-k 2 --lr 1e-4
      autoprompt evaluate runs/bitfit --data test.jsonl
    """

HELP = {
    "lora": """Fine-tune the model with LoRA (PEFT): low-rank updates of the targeted weights.
    """,
    "ia3": """Fine-tune the model with (IA)3 (PEFT): learned vectors scaling the targeted activations.
    """,
    "adapter": """Fine-tune a bottleneck adapter beside each block's feed-forward output projection.

    PEFT LoRA of rank --adapter-size, scale 1, on that projection (the `adapters` package does not
    run with transformers 5).
    """,
    "bitfit": """Fine-tune the biases only (BitFit).

    A model without biases gets zero-initialized biases on every block's linear layers.
    """,
    "last_k": """Fine-tune every weight of the last --last-k transformer blocks.
    """,
    "full": """Fine-tune every weight of the model (full fine-tuning).
    """,
}


def summary(r: FinetuneResult) -> dict:
    metric = r.metric
    row = {"method": r.method, "trainable": r.trainable_params, "steps": r.steps_done, "best_step": r.best_step,
           f"train_{metric}": r.metrics.get("train", {}).get(metric)}
    if "dev" in r.metrics:
        row[f"dev_{metric}"] = r.metrics["dev"].get(metric)
    row.update({"s/step": r.timings.get("step_seconds"), "stopped": r.stopped})
    return row


def headline(r: FinetuneResult) -> str:
    return f"finetune {r.method} on {r.model.get('name')} ({r.implementation}), artifact {r.saved_to}"


def check(task, config, options) -> None:
    """The checks the runner's `prepare` makes, before the CLI does any work."""
    prepare(task, config, {})


def after(result: FinetuneResult, task, options) -> None:
    if result.stopped == "nan":
        raise UserError(f"{result.note}; saved to {result.saved_to}; lower {name_of(result.config, 'lr')} or check "
                        "the data")


def command(method: str) -> Command:
    """The `finetune` command's presentation of one baseline (LoRA: the default)."""
    return Command(name="finetune", help=HELP[method] + COMMON, summary=summary, headline=headline,
                   manual_template=True, check=check, after=after, default=method == "lora")


COMMANDS = {m: command(m) for m in HELP}
