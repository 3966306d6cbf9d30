"""Search from the default start (' the' in every slot) against search from the hand-written template
(--from-template), on smollm2-135m: test score of each beside the manual template itself.

    python -m benchmarks.bench_start                 # SST-2 16-shot (seeds 13 21 42) and five T-REx relations
    python -m benchmarks.bench_start --part sst2 --iters 2   # a quick check

SST-2: LM-BFF 16-shot splits (train 32, dev 32), test = the 872 SST-2 test rows; default start
'{sentence} [T] [T] [T] [P]', manual '{sentence} It was [P] .' (its words become two slots).
T-REx: search on the relation's train split (800), choose on dev (200), test on LAMA's 1000 facts;
default start '[X] [T] [T] [T] [Y]', manual = LAMA's template. Same search settings for both starts.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import autoprompt
from autoprompt import AutoPromptConfig
from benchmarks.bench_search_quality import TREX
from benchmarks.common import OUT, SHARED, print_table, require, save_json, threads_line
from frozen_lm import FrozenLM, PromptTask, evaluate, load_result
from frozen_lm.errors import UserError

LABELS = {"0": "terrible", "1": "great"}


def finished(out, config: AutoPromptConfig, test):
    """The result saved in `out` by an earlier run of this benchmark with the same config, or None."""
    try:
        r = load_result(out)
    except (UserError, OSError):
        return None
    same = r.status == "done" and r.config == config and r.data.get("test", {}).get("source") == str(Path(test).resolve())
    return r if same else None


def compare(lm, name, slot_template, manual, labels, train, dev, test, cfg: dict, reuse: bool) -> dict:
    """Test scores of the manual template, the default-start search and the manual-start search."""
    task = PromptTask(lm, slot_template, labels)
    metric = task.metric
    row = {"run": name, "metric": metric, "manual": evaluate(task.derive(template=manual), test, batch_size=64)[metric]}
    for start, extra in (("default", {}), ("from_manual", {"from_template": manual})):
        t = time.perf_counter()
        out, config = OUT / f"start-{name}-{start}", AutoPromptConfig(**cfg, **extra)
        r = finished(out, config, test) if reuse else None
        if r is None:
            r = autoprompt.search(task, train, dev, config, test=test, out=out, overwrite=True, progress=False)
            row[f"{start}_s"] = round(time.perf_counter() - t)
        else:
            print(f"{out}: reusing the finished run of an earlier invocation (--reuse)")
            row[f"{start}_s"] = round(r.timings.get("total_seconds", float("nan")))
        row[start] = r.metrics["test"][metric]
        row[f"{start}_dev"] = r.metrics["dev"][metric]
        row[f"{start}_prompt"] = r.filled_template.replace("\n", " ")
    return row


def part_sst2(lm, iters: int, seeds: list[int], reuse: bool) -> list[dict]:
    root = SHARED / "k-shot" / "sst2"
    cfg = dict(iters=iters, num_cand=16, batch_size=32, eval_size=32, slots="all")
    return [compare(lm, f"sst2-16shot-{s}", "{sentence} [T] [T] [T] [P]", "{sentence} It was [P] .", LABELS,
                    str(root / f"16-{s}" / "train.jsonl"), str(root / f"16-{s}" / "dev.jsonl"), str(root / "test.jsonl"),
                    {**cfg, "seed": 0}, reuse) for s in seeds]


def part_trex(lm, iters: int, reuse: bool) -> list[dict]:
    cfg = dict(iters=iters, num_cand=16, batch_size=32, eval_size=32, slots="all", dev_size=100)
    rows = []
    for rel, manual in TREX.items():
        folder = SHARED / "trex" / rel
        rows.append(compare(lm, f"trex-{rel}", "[X] [T] [T] [T] [Y]", manual, None, str(folder / "train.jsonl"),
                            str(folder / "dev.jsonl"), str(folder / "lama.jsonl"), cfg, reuse))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=["sst2", "trex", "all"], default="all")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--seeds", type=int, nargs="+", default=[13, 21, 42])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--reuse", action="store_true",
                    help="take a run whose artifact (same config, same test file) an earlier invocation finished")
    args = ap.parse_args()
    require(SHARED / "k-shot" / "sst2" / "test.jsonl")
    print(threads_line())
    lm = FrozenLM.load(args.model)
    rows = []
    if args.part in ("sst2", "all"):
        rows += part_sst2(lm, args.iters, args.seeds, args.reuse)
        sst = [r for r in rows if r["run"].startswith("sst2")]
        rows.append({"run": "sst2-16shot mean", "metric": "accuracy",
                     **{k: statistics.mean(r[k] for r in sst) for k in ("manual", "default", "from_manual")}})
        print_table(rows)
    if args.part in ("trex", "all"):
        rows += part_trex(lm, args.iters, args.reuse)
    print_table([{k: v for k, v in r.items() if not k.endswith(("_prompt", "_dev"))} for r in rows])
    print_table([{"run": r["run"], "default prompt": r.get("default_prompt", ""), "from manual": r.get("from_manual_prompt", "")}
                 for r in rows])
    save_json(f"start_{args.part}", {"args": vars(args), "rows": rows})


if __name__ == "__main__":
    main()
