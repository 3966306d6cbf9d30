"""Quality of `autoprompt search` against hand-written prompts, on real weights and real data.

    python benchmarks/bench_search_quality.py --part bert   # bert-tiny-mlm, SST-2, the paper-code setting
    python benchmarks/bench_search_quality.py --part sst2   # smollm2-135m, SST-2
    python benchmarks/bench_search_quality.py --part trex   # smollm2-135m, five T-REx relations

Every row: the manual template's score and the found prompt's score on the same split, with the
same label words and evaluator (`autoprompt evaluate`). Artifacts go to runs/bench/<name>/.
"""

from __future__ import annotations

import argparse
import time

import autoprompt
from autoprompt import AutoPromptConfig
from benchmarks.common import OUT, SHARED, print_table, require, save_json, threads_line
from frozen_lm import FrozenLM, PromptTask, evaluate, load_result

SST2 = SHARED / "sst2"
LABELS = '{"0": "terrible", "1": "great"}'
# LAMA's manual templates for five T-REx relations (a causal LM reads up to [Y]; the rest is unused).
# Not P36/P1376: in this copy 85-89% of their facts have object == subject (a municipality that is
# its own capital) and 98% of the objects are several SmolLM2 tokens, so they measure copying.
TREX = {
    "P17": "[X] is located in [Y] .",
    "P30": "[X] is located in [Y] .",
    "P37": "The official language of [X] is [Y] .",
    "P407": "[X] was written in [Y] .",
    "P1303": "[X] plays [Y] .",
}


def search_vs_manual(name, model, template, manual, label_map, train, dev, tests, search_cfg) -> list[dict]:
    """Search on train (selecting on dev), then score found and manual prompts on each test split,
    the found prompt read back from its saved artifact (what `autoprompt evaluate` scores)."""
    lm = FrozenLM.load(model)
    task = PromptTask(lm, template, label_map)
    start = time.perf_counter()
    res = autoprompt.search(task, str(train), str(dev), search_cfg, out=OUT / name, progress=False)
    seconds = time.perf_counter() - start
    saved = load_result(OUT / name)
    rows = []
    for split_name, split in tests.items():
        found = evaluate(task, str(split), prompt=saved, batch_size=64)
        man = evaluate(task.derive(template=manual), str(split), batch_size=64)
        metric = res.metric
        rows.append({"run": name, "split": split_name, "metric": metric, "manual": man[metric],
                     "found": found[metric], "n_scored": found["n_scored"], "n_skipped": found["n_skipped"],
                     "s_per_iter": res.timings["seconds_per_iteration"], "search_s": seconds,
                     "trigger": " ".join(res.trigger_tokens).replace("\n", " ")})
    return rows


def part_bert(iters: int) -> list[dict]:
    cfg = AutoPromptConfig(iters=iters, num_cand=10, batch_size=32, eval_size=32)
    return search_vs_manual("bert-sst2", "bert-tiny-mlm", "[CLS] {sentence} [T] [T] [T] [P] . [SEP]",
                            "[CLS] {sentence} It was [P] . [SEP]", LABELS, SST2 / "train.jsonl", SST2 / "dev.jsonl",
                            {"dev": SST2 / "dev.jsonl"}, cfg)


def part_sst2(iters: int) -> list[dict]:
    cfg = AutoPromptConfig(iters=iters, num_cand=32, batch_size=32, eval_size=64, dev_size=200, slots="all")
    return search_vs_manual("smollm2-sst2", "smollm2-135m", "{sentence} [T] [T] [T] [P]", "{sentence} It was [P] .",
                            LABELS, SST2 / "train.jsonl", SST2 / "dev.jsonl",
                            {"dev": SST2 / "dev.jsonl"}, cfg)


def part_trex(iters: int) -> list[dict]:
    rows = []
    for rel, manual in TREX.items():
        folder = SHARED / "trex" / rel
        cfg = AutoPromptConfig(iters=iters, num_cand=32, batch_size=32, eval_size=64, slots="all")
        rows += search_vs_manual(f"smollm2-trex-{rel}", "smollm2-135m", "[X] [T] [T] [T] [Y]", manual, None,
                                 folder / "train.jsonl", folder / "dev.jsonl", {"lama-test": folder / "lama.jsonl"}, cfg)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=["bert", "sst2", "trex", "all"], default="all")
    ap.add_argument("--iters", type=int, default=None, help="search iterations (default: bert 20, sst2 20, trex 20)")
    args = ap.parse_args()
    require(SST2 / "train.jsonl")
    print(threads_line())
    rows = []
    for part, fn, iters in (("bert", part_bert, 20), ("sst2", part_sst2, 20), ("trex", part_trex, 20)):
        if args.part in (part, "all"):
            rows += fn(args.iters or iters)
            print_table(rows)
    save_json(f"search_quality_{args.part}", {"args": vars(args), "rows": rows})


if __name__ == "__main__":
    main()
