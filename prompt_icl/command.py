"""How `autoprompt icl` presents in-context demonstrations (the CLI builds the command from this
spec, the task options and ICLConfig): its help text, the printed row and the headline."""

from __future__ import annotations

from frozen_lm.methods import Command
from prompt_icl.result import ICLResult


def summary(r: ICLResult) -> dict:
    dev = r.metrics.get("dev", {})
    row = {f"{r.metric}_dev": dev.get(r.metric)}
    if "loss" in dev:  # target strings: the mean cross-entropy per target token
        row["loss_dev"] = dev["loss"]
    row.update({"n_scored": dev.get("n_scored"), "n_skipped": dev.get("n_skipped"),
                "demos_per_class": r.config.demos_per_class, "mode": r.config.mode, "pool": len(r.pool),
                "seconds": round(r.timings.get("total_seconds") or 0.0, 2)})
    return row


def headline(r: ICLResult) -> str:
    return "first dev example as the model reads it:\n" + r.example


ICL = Command(
    name="icl", summary=summary, headline=headline, manual_template=True, default=True,
    help="""Score a hand-written template after in-context demonstrations (LM-BFF's demonstrations).

    A demonstration is the template filled from a training example, with the first label word of
    its class (a fact's answer; the target string) in place of [P]; demonstrations come before the
    example, joined by --separator, and the example is the template as written. --mode sampled
    draws --demos-per-class demonstrations of every class for each example, from the seed and the
    example's position (Gao et al., 2021); --mode fixed uses one k-shot context for every example
    (GPT-3). Nothing trains: the artifact keeps the demonstration pool, and `autoprompt evaluate
    OUT` scores any split with the same demonstrations.

    \b
    Examples:
      autoprompt icl
      autoprompt icl --demos-per-class 2 --mode fixed
      autoprompt icl --model bert-tiny-mlm --template '{sentence} It was [P] .' --label-map '0=terrible,1=great' \\
          --train train.jsonl --dev dev.jsonl --out runs/icl
      autoprompt evaluate runs/icl --data test.jsonl
    """)
