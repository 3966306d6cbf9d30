"""How `autoprompt tune` presents `softprompt.tune` (the CLI builds the command from this spec, the
task options and TuneConfig): help text, the summary row, the checks that can fail before training,
and what follows a saved run (the PEFT export, the one-line error of a NaN stop).

The task options (--target, --target-field, --chat) come from the shared task options: a
target-string task trains with the LM loss of its target (--loss lm)."""

from __future__ import annotations

from dataclasses import dataclass, field

from frozen_lm import distributed
from frozen_lm.errors import UserError
from frozen_lm.methods import Command
from softprompt.config import TuneConfig
from frozen_lm.prompts.effective import effective_task
from softprompt.result import PezResult, TuneResult

HELP = """Learn a continuous prompt for the frozen model: prompt tuning (a trainable vector per [T] slot)
    or prefix tuning (trainable key/values at every layer), on the same templates, label words and
    data as `autoprompt search`; or, with --method pez, a discrete prompt (hard prompts made easy:
    vectors trained at their nearest tokens; the best tokens on dev are kept, and `autoprompt
    evaluate` scores them like a found trigger). Target strings (--target, --target-field) train
    with the LM loss of the target.

    \b
    Examples:
      autoprompt tune --num-virtual-tokens 20 --template '{sentence} It was [P] .' --init 'text:Classify the review'
      autoprompt tune --method prefix --num-virtual-tokens 10 --init text:"It was great or terrible"
      autoprompt tune --template '{sentence} [T] [T] [T] [P]' --label-map '0=terrible,1=great' --train train.jsonl --dev dev.jsonl
      autoprompt tune --method pez --num-virtual-tokens 5 --init 'text:It was'
      autoprompt tune --method pez --fluency-weight 0.1 --template '{sentence} [T] [T] [T] [P]' --pez-metric l2
      autoprompt tune --loss lm --target-field target --template '{question} [T] [T] [P]' --train qa.jsonl --dev qa_dev.jsonl
    """


@dataclass
class TuneOptions:
    """Command-line-only options of `autoprompt tune` (not saved in the config)."""

    export_peft: str | None = field(default=None, metadata={
        "help": "also write PEFT's layout (adapter_config.json + adapter_model.safetensors) here"})


def summary(r: TuneResult) -> dict:
    """The printed row: train and dev scores (target strings: also the dev loss per target token);
    PEZ: also the found trigger and its perplexity under the model."""
    metric = r.metric
    row = {"method": r.method, "slots": r.n_slots, "steps": r.steps_done, "best_step": r.best_step,
           f"train_{metric}": r.metrics.get("train", {}).get(metric)}
    if "dev" in r.metrics:
        row[f"dev_{metric}"] = r.metrics["dev"].get(metric)
        if metric == "exact_match":
            row["dev_loss"] = r.metrics["dev"].get("loss")
    if isinstance(r, PezResult):
        row.update({"trigger": r.trigger_text, "prompt_ppl": r.metrics.get("prompt_perplexity")})
    row.update({"s/step": r.timings.get("step_seconds"), "stopped": r.stopped})
    return row


def headline(r: TuneResult) -> str:
    return f"{r.method} on {r.model.get('name')}, artifact {r.saved_to}"


def check(task, config: TuneConfig, options: TuneOptions | None) -> None:
    """Refuse, before any training, what would fail afterwards: a bad template, --loss lm without a
    target string, --fluency-weight on a masked LM, prefix tuning on a model without a key/value
    cache, an --export-peft that PEFT cannot represent (or a PEZ run's, a discrete prompt)."""
    from softprompt.peft_export import check_exportable
    from softprompt.run import check_config, check_prefix_support

    check_config(task, config)
    eff, k = effective_task(task, config.placement, config.num_virtual_tokens)
    if config.method == "prefix":
        check_prefix_support(task.lm)
    if options is not None and options.export_peft:
        if config.method == "pez":
            raise UserError("--export-peft writes soft prompts; a pez run finds a discrete prompt (evaluate it with "
                            "`autoprompt evaluate OUT`)")
        check_exportable(task.lm, config.placement, eff.spec.template, k)


def after(result: TuneResult, task, options: TuneOptions | None) -> None:
    """Export to PEFT when asked; a NaN stop (the best checkpoint is saved) exits with one line."""
    if options is not None and options.export_peft and distributed.is_main():  # (under torchrun: process 0)
        result.export_peft(options.export_peft, lm=task.lm)
    if result.stopped == "nan":
        raise UserError(f"{result.note}; saved to {result.saved_to}; lower --lr or check the data")


COMMAND = Command(name="tune", help=HELP, summary=summary, headline=headline,
                  manual_template=lambda cfg: cfg.num_virtual_tokens is not None, needs_dev=False,
                  options=TuneOptions, check=check, after=after, resumable=True)
