"""How the `autoprompt instruct` command presents the method (the CLI builds the command from this
spec and InstructConfig): its help text, the printed row and the line above it."""

from __future__ import annotations

from frozen_lm.methods import Command
from prompt_instruct.result import InstructResult


def summary(r: InstructResult) -> dict:
    dev = r.metrics.get("dev", {})
    return {f"{r.metric}_dev": dev.get(r.metric), "n_scored": dev.get("n_scored"), "n_skipped": dev.get("n_skipped"),
            "instruction": r.instruction or "(none: the template alone scored best)", "candidates": len(r.history) - 1,
            "rounds": r.rounds_done, "proposer": r.proposer}


def headline(r: InstructResult) -> str:
    return f"prompt: {r.template!r}"


INSTRUCT = Command(
    name="instruct", summary=summary, headline=headline, compare_manual=True, default=True,
    help="""Find an instruction for a hand-written template: a language model writes candidates, data picks one.

    Round 1 shows the proposer (--proposer-model, default the task's model) training examples as
    input -> output pairs and samples instructions for them (APE); each later round shows it the
    best instructions so far with their training scores and asks for better ones (OPRO). Every
    candidate is the instruction before the template, scored on a batch of training examples; the
    best few, and the template alone, are scored on dev, and the best on dev wins, so the found
    prompt is never worse on dev than the template alone. The result is plain text: it scores on
    other models too (`autoprompt evaluate OUT --model OTHER`). The artifact is rewritten after
    every round; Ctrl-C keeps the best so far.

    \b
    Examples:
      autoprompt instruct
      autoprompt instruct --proposer-model smollm2-135m --rounds 3 --n-candidates 8
      autoprompt instruct --template '{sentence} It was [P] .' --label-map '0=terrible,1=great' \\
          --train sst2/train.jsonl --dev sst2/dev.jsonl --out runs/instruct
      autoprompt evaluate runs/instruct --data sst2/test.jsonl
    """)
