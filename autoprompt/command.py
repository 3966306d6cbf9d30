"""How the `autoprompt search` command presents AutoPrompt and GCG (the CLI builds the command from
these specs and the methods' configs): help texts and the printed rows."""

from __future__ import annotations

from dataclasses import dataclass, field

from autoprompt.result import SearchResult
from frozen_lm.errors import UserError
from frozen_lm.methods import Command


def summary(r: SearchResult) -> dict:
    dev = r.metrics.get("dev", {})
    row = {f"{r.metric}_dev": dev.get(r.metric, r.best_dev)}
    if "loss" in dev:  # target strings: the mean cross-entropy per target token
        row["loss_dev"] = dev["loss"]
    row.update({"n_scored": dev.get("n_scored"), "n_skipped": dev.get("n_skipped"), "trigger": " | ".join(r.trigger_tokens),
                "iterations": r.iterations, "s_per_iter": round(r.timings.get("seconds_per_iteration") or 0.0, 3)})
    if r.config.fluency_weight and "prompt_perplexity" in r.metrics:
        row["prompt_ppl"] = r.metrics["prompt_perplexity"]
    return row


def details(r: SearchResult) -> dict:
    """Searched for several models (--model a,b): the found prompt's dev score on each."""
    rows = r.metrics.get("dev_models")
    if not rows:
        return {}
    table = [{k: v for k, v in row.items() if k != "drift"} for row in rows]
    for row, full in zip(table, rows):
        if "drift" in full:
            row["tokens_there"] = full["drift"]["n_tokens_after"]
    return {"models": (f"the prompt on each model (mean {r.metric} {r.metrics.get('dev_mean', 0):.4f})", table)}


def headline(r: SearchResult) -> str:
    line = f"prompt: {r.filled_template}"
    for g in r.metrics.get("generations", [])[:1]:
        line += f"\ngreedy output: {g['generated']!r} ({'reproduces' if g['reproduces'] else 'does not reproduce'} the target)"
    if not r.trigger_round_trips:
        line += ("\nnote: the trigger text does not tokenize back to the same tokens; the ids are in results.json "
                 "(trigger_ids), and `autoprompt evaluate ARTIFACT` scores them")
    return line


AUTOPROMPT = Command(
    name="search", summary=summary, headline=headline, details=details, compare_manual=True, default=True,
    models="joint",
    help="""Find trigger tokens for the [T] slots of a template (AutoPrompt, gradient-guided search).

    Runs with no arguments on the built-in demo sentiment task and the default offline model, and
    prints the found prompt beside the demo's hand-written one. Writes an artifact folder
    (config.json, weights.safetensors with trigger_ids, results.json with the per-iteration
    history) after every iteration; Ctrl-C keeps the best-so-far trigger.

    \b
    Examples:
      autoprompt search
      autoprompt search --train demo:capitals --iters 30 --num-cand 32
      autoprompt search --model bert-tiny-mlm --template '[CLS] {sentence} [T] [T] [T] [P] . [SEP]' \\
          --label-map '0=terrible,1=great' --train sst2/train.jsonl --dev sst2/dev.jsonl --out runs/sst2
      autoprompt search --resume runs/sst2 --iters 40
      autoprompt evaluate runs/sst2 --data sst2/test.jsonl
      autoprompt search --model smollm2-135m,gemma3-270m   # one prompt for both: the mean of their scores
      autoprompt evaluate runs/sst2 --model gemma3-270m     # the prompt as text on another model
    """)

@dataclass
class BehaviorOptions:
    """Command-line options of `search --method gcg` that run a file of behaviors (autoprompt.behaviors)."""

    behaviors: str | None = field(default=None, metadata={
        "help": "a CSV/JSONL file with goal and target columns (AdvBench's format): one GCG search per row, on "
                "--template (default '{goal} [T]x20'); --out keeps behaviors.json and rows/<i>/, and the same "
                "command with the same --out continues a cut run row by row"})
    universal: bool = field(default=False, metadata={
        "flag": "--universal", "help": "with --behaviors: one suffix for every goal, the goals joining one by one "
                                       "as the suffix makes the earlier ones succeed (llm-attacks' progressive goals)"})
    workers: int = field(default=1, metadata={"help": "with --behaviors: rows on this many Ray workers"})
    refusal_prefixes: str | None = field(default=None, metadata={
        "help": "with --behaviors: '|'-separated prefixes (or a .txt file, one per line) that mark a greedy "
                "response as a refusal when it starts with one (default: a short list as llm-attacks')"})


def run_behaviors(options: BehaviorOptions, cli):
    """The `alternative` of the GCG command: a behaviors file instead of one search (None without --behaviors)."""
    if options is None or not options.behaviors:
        if options is not None and (options.universal or options.workers != 1 or options.refusal_prefixes):
            raise UserError("--universal, --workers and --refusal-prefixes go with --behaviors FILE")
        return None
    from autoprompt.behaviors import TEMPLATE, behaviors

    task = cli.task
    given = [k for k in ("train", "dev", "target", "target_field", "label_map") if task.get(k)]
    if given:
        raise UserError(f"--behaviors brings the goals and targets; leave out --{given[0].replace('_', '-')}")
    placed = [k for k in ("device", "device_map", "quantize") if task.get(k) not in (None, "auto")]
    if options.workers > 1 and placed:
        raise UserError(f"--workers loads the model on each Ray worker by its name and dtype only; leave out "
                        f"--{placed[0].replace('_', '-')} (or give --workers 1)")
    model = task["model"] if options.workers > 1 else cli.load_lm()
    out = cli.resume or cli.out or cli.default_out("behaviors")
    r = behaviors(model, options.behaviors, cli.config(), template=task.get("template") or TEMPLATE, chat=task["chat"],
                  universal=options.universal, out=out, resume=cli.resume, overwrite=cli.overwrite,
                  workers=options.workers, refusal_prefixes=options.refusal_prefixes, dtype=task.get("dtype"),
                  progress=cli.progress and options.workers == 1)
    tables = [("behaviors", r.table())]
    if r.suffix is not None:
        tables.append(("universal suffix", [{"suffix": r.suffix["trigger"], "goals_in": r.suffix["goals_in"],
                                             "iterations": r.suffix["iterations"], "seconds": r.suffix["seconds"]}]))
    tables.append(("summary", [{**r.summary(), "out": str(out)}]))
    return tables


GCG = Command(
    name="search", summary=summary, headline=headline, details=details, compare_manual=True, options=BehaviorOptions,
    models="joint",
    alternative=run_behaviors,
    help="""Find trigger tokens with GCG (greedy coordinate gradient, Zou et al. 2023, as nanoGCG).

    Each iteration samples --search-width candidates, each with --n-replace random slots set to one
    of their --topk tokens by gradient, and keeps the best on a training batch; triggers use
    printable-ASCII tokens unless --allow-non-ascii. For target strings (--target, --chat) it is the
    attack setting of nanoGCG; --draft-model turns on probe sampling. --schedule fast (or acg,
    faster, igcg, all) turns on time-to-target techniques, each also a switch of its own. --behaviors FILE
    runs one search per goal/target row of a file (or one suffix for all with --universal).

    \b
    Examples:
      autoprompt search --method gcg --search-width 64 --topk 64
      autoprompt search --method gcg --chat --template 'Write a poem about the sea. [T]x20' \\
          --target 'Sure, here is a poem about the sea' --iters 60 --search-width 64 --topk 64
      autoprompt search --method gcg --draft-model smollm2-135m --model some/larger-model
      autoprompt search --method gcg --chat --template 'Write a poem about the sea. [T]x20' \\
          --target 'Sure, here is a poem about the sea' --schedule acg --iters 500
      autoprompt search --method gcg --chat --behaviors benchmarks/data/behaviors_benign.csv \\
          --schedule acg --iters 100 --search-width 64 --topk 64 --out runs/behaviors
    """)
