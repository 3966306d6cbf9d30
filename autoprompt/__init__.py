"""Discrete prompt search on a frozen language model: AutoPrompt (Shin et al., 2020) and its
label-word search.

    import autoprompt
    r = autoprompt.search(task, train, dev, autoprompt.SearchConfig(iters=20, seed=0))
    r.filled_template, r.metrics["dev"]; evaluate(task, test, prompt=r); r.save("runs/x")
    words = autoprompt.label_search(task, train, autoprompt.LabelSearchConfig(k=5))

Modules: config (SearchConfig), search (one iteration: gradients, candidates, scoring, dev), run
(the `search` function: loop, saving, resume), scoring (batched candidate scoring with prefix
packing), candidates (HotFlip top-k), result (SearchResult), label_search.
"""

from autoprompt.config import SearchConfig
from autoprompt.label_search import LabelSearchConfig, LabelWords, label_search
from autoprompt.result import METHOD, SearchResult
from autoprompt.run import search
from frozen_lm.methods import Command, Method, register_method

__all__ = ["LabelSearchConfig", "LabelWords", "SearchConfig", "SearchResult", "label_search", "search"]


def _summary(r: SearchResult) -> dict:
    dev = r.metrics.get("dev", {})
    row = {f"{r.metric}_dev": dev.get(r.metric, r.best_dev)}
    if "loss" in dev:  # target strings: the mean cross-entropy per target token
        row["loss_dev"] = dev["loss"]
    row.update({"n_scored": dev.get("n_scored"), "n_skipped": dev.get("n_skipped"), "trigger": " | ".join(r.trigger_tokens),
                "iterations": r.iterations, "s_per_iter": round(r.timings.get("seconds_per_iteration") or 0.0, 3)})
    if r.config.fluency_weight and "prompt_perplexity" in r.metrics:
        row["prompt_ppl"] = r.metrics["prompt_perplexity"]
    return row


def _headline(r: SearchResult) -> str:
    line = f"prompt: {r.filled_template}"
    for g in r.metrics.get("generations", [])[:1]:
        line += f"\ngreedy output: {g['generated']!r} ({'reproduces' if g['reproduces'] else 'does not reproduce'} the target)"
    if not r.trigger_round_trips:
        line += ("\nnote: the trigger text does not tokenize back to the same tokens; the ids are in results.json "
                 "(trigger_ids), and `autoprompt evaluate ARTIFACT` scores them")
    return line


register_method(Method(
    name=METHOD, config=SearchConfig, run=search, result=SearchResult, module=__name__,
    command=Command(
        name="search", summary=_summary, headline=_headline, compare_manual=True,
        resumable=True,
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
    """)))
