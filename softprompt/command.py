"""How the `autoprompt tune` command presents prompt tuning, prefix tuning and PEZ (the CLI builds the
command from these specs, the task options and the methods' configs): help texts, the summary row,
the checks of the command-line-only options, and what follows a saved run (the PEFT export, the
one-line error of a NaN stop).

The task options (--target, --target-field, --chat) come from the shared task options: a
target-string task trains with the LM loss of its target (--loss lm)."""

from __future__ import annotations

from dataclasses import dataclass, field

from frozen_lm import distributed
from frozen_lm.configs import name_of
from frozen_lm.errors import UserError
from frozen_lm.methods import Command
from frozen_lm.prompts.effective import effective_task
from softprompt.result import PezResult, TuneResult


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


def check(task, config, options: TuneOptions | None) -> None:
    """Refuse, before any training, an export_peft that PEFT cannot represent (the config's own
    checks are the method's `prepare`, which the runner calls)."""
    from softprompt.peft_export import check_exportable

    if options is None or not options.export_peft:
        return
    eff, k = effective_task(task, config.placement, config.num_virtual_tokens)
    check_exportable(task.lm, config.placement, eff.spec.template, k)


def check_pez(task, config, options: TuneOptions | None) -> None:
    """A PEZ run finds a discrete prompt: there is nothing to export to PEFT."""
    if options is not None and options.export_peft:
        raise UserError(f"{name_of(options, 'export_peft')} writes soft prompts; a pez run finds a discrete prompt "
                        "(evaluate it as a found trigger)")


def after(result: TuneResult, task, options: TuneOptions | None) -> None:
    """Export to PEFT when asked; a NaN stop (the best checkpoint is saved) exits with one line."""
    if options is not None and options.export_peft and distributed.is_main():  # (under torchrun: process 0)
        result.export_peft(options.export_peft, lm=task.lm)
    if result.stopped == "nan":
        raise UserError(f"{result.note}; saved to {result.saved_to}; lower {name_of(result.config, 'lr')} or "
                        "check the data")


def _manual(cfg) -> bool:
    """The demo task lends its hand-written template when virtual tokens are prepended to it."""
    return cfg.num_virtual_tokens is not None


PROMPT = Command(
    name="tune", summary=summary, headline=headline, manual_template=_manual, options=TuneOptions, check=check,
    after=after, default=True,
    help="""Learn a continuous prompt for the frozen model: prompt tuning (a trainable vector per [T] slot).

    Trains on the same templates, label words and data as `autoprompt search`: --num-virtual-tokens K
    prepends K trainable vectors to a hand-written template, or the template's [T] slots hold them.
    --method prefix trains key/values at every layer instead; --method pez a discrete prompt. Target
    strings (--target, --target-field) train with the LM loss of the target. The best-so-far
    artifact is written whenever dev improves; Ctrl-C keeps it, and --resume continues the run.

    \b
    Examples:
      autoprompt tune --num-virtual-tokens 20 --template '{sentence} It was [P] .' --init 'text:Classify the review'
      autoprompt tune --template '{sentence} [T] [T] [T] [P]' --label-map '0=terrible,1=great' --train train.jsonl --dev dev.jsonl
      autoprompt tune --loss lm --target-field target --template '{question} [T] [T] [P]' --train qa.jsonl --dev qa_dev.jsonl
      autoprompt tune --num-virtual-tokens 20 --template '{sentence} It was [P] .' --export-peft runs/peft
    """)

PREFIX = Command(
    name="tune", summary=summary, headline=headline, manual_template=_manual, options=TuneOptions, check=check,
    after=after,
    help="""Learn a continuous prompt for the frozen model: prefix tuning (trainable key/values at every layer).

    The prefix is --num-virtual-tokens key/value positions (default: the template's [T] slots, which
    are then removed from the text), trained through an MLP reparameterization that is folded away
    when saving (--no-prefix-projection: trained directly). Needs a model with a key/value cache.

    \b
    Examples:
      autoprompt tune --method prefix --num-virtual-tokens 10 --init text:"It was great or terrible"
      autoprompt tune --method prefix --num-virtual-tokens 10 --no-prefix-projection --lr 5e-3
    """)

PEZ = Command(
    name="tune", summary=summary, headline=headline, manual_template=_manual, options=TuneOptions, check=check_pez,
    after=after,
    help="""Find a discrete prompt with PEZ (hard prompts made easy, Wen et al. 2023).

    Vectors at the [T] slots are trained at their nearest tokens (straight-through); the best tokens on
    dev are kept, and `autoprompt evaluate` scores them like a found trigger. --fluency-weight adds the
    prompt's own log-likelihood (causal LMs) for readable prompts.

    \b
    Examples:
      autoprompt tune --method pez --num-virtual-tokens 5 --init 'text:It was'
      autoprompt tune --method pez --fluency-weight 0.1 --template '{sentence} [T] [T] [T] [P]' --pez-metric l2
    """)
