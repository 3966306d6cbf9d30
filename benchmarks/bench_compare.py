"""Learned vs discrete prompts vs fine-tuning on SmolLM2-135M, one protocol (`prompt_compare.compare`):
SST-2 and TREC 16-shot (LM-BFF splits, seeds 13 21 42), every method at equal steps.

Methods (registered methods, by name): manual template, AutoPrompt, GCG, PEZ, prompt tuning (+ its
nearest-token reading), prefix tuning, LoRA, (IA)3, bottleneck adapter (PEFT LoRA on the feed-forward output projection),
BitFit, the last 2 blocks, full fine-tuning. Every training method runs --steps optimizer steps
(batch 8, dev scored every 10 steps to keep the best checkpoint); discrete search runs --iters
iterations (an iteration scores 32-64 candidates, about ten training steps' worth of compute).
Selection uses the 16-shot dev split only; the table reports the test split (SST-2 872 rows,
TREC 500). Then a small sub-grid (SST-2, seed 13, manual / prompt / lora / bitfit) runs from
scratch on 1 worker (no Ray) and on 2 Ray workers: its wall times, and whether the numbers agree.

    python benchmarks/bench_compare.py                     # the README table and plots (about 2 hours)
    python benchmarks/bench_compare.py --quick --model /tmp/tiny-llama   # checks that it runs (a minute)

Expected time on the project's machine (2 CPU cores; a SmolLM2 forward + backward on 8 rows ~1.4 s,
a forward of 32 rows ~1 s, a full fine-tuning step ~2.2 s): per SST-2 seed about 19 min of one
process (training methods 30 steps x 1.1-2.2 s, scoring dev + test ~28 s per cell, ~45 s for the
20-token prompt; AutoPrompt and GCG ~12-14 s per iteration), per TREC seed about 15 min (shorter
questions): ~100 min of cells, ~85 min on 2 workers (1 thread each), plus ~9 min for the 1-vs-2
worker timing: about 1.5-2 hours in all. Results: runs/bench/compare/ (results.jsonl, table.md,
table.csv, plots/), the plots copied to docs/compare_*.png, and runs/bench/compare.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import OUT, ROOT, SHARED, require, save_json, threads_line  # noqa: E402

KSHOT = SHARED / "k-shot"
# PEZ keeps the best projection it has scored on dev, so it scores one after every step (a projection
# seen before is not scored again); the training methods score dev every 10 steps (their checkpoints)
METHODS = ["manual", "autoprompt", "gcg", {"pez": {"eval_every": 1}}, "prompt", "prefix", "lora", "ia3", "adapter", "bitfit", "last_k",
           "full"]
TIMING_METHODS = ["manual", "prompt", "lora", "bitfit"]
TASKS = {
    "sst2": {"template": "{sentence} It was [P] .", "label_map": {"0": "terrible", "1": "great"}},
    "trec": {"template": "{sentence} Question type: [P]",
             "label_map": {"DESC": "description", "ENTY": "entity", "ABBR": "abbreviation", "HUM": "person",
                           "LOC": "location", "NUM": "number"}},
}


def task_spec(name: str, quick: bool) -> dict:
    """A task of the grid: its templates, label words and the 16-shot splits ({seed} per cell)."""
    root = KSHOT / name
    spec = {"name": name, **TASKS[name], "train": str(root / "16-{seed}" / "train.jsonl"),
            "dev": str(root / "16-{seed}" / "dev.jsonl"), "test": str(root / "test.jsonl")}
    if quick:  # a 64-row test split, so the check takes a minute
        small = OUT / f"quick-{name}-test.jsonl"
        small.parent.mkdir(parents=True, exist_ok=True)
        small.write_text("".join((root / "test.jsonl").read_text().splitlines(keepends=True)[:64]))
        spec["test"] = str(small)
    return spec


def grid(args, tasks: list[str], methods: list[str], seeds: list[int]) -> dict:
    defaults = {"steps": args.steps, "iters": args.iters, "eval_every": 10 if not args.quick else 1}
    if args.quick:
        defaults.update({"num_cand": 2, "eval_size": 4, "search_width": 4, "topk": 4, "num_virtual_tokens": 2})
    return {"model": args.model, "seeds": seeds, "defaults": defaults, "methods": methods,
            "tasks": [task_spec(t, args.quick) for t in tasks]}


def run_main(args) -> dict:
    from prompt_compare import compare

    seeds = [13] if args.quick else args.seeds
    result = compare(grid(args, args.tasks, args.methods, seeds), out=args.out, workers=args.workers)
    print(result.markdown)
    for plot in result.plots:
        if not args.quick:
            shutil.copy(plot, ROOT / "docs" / f"compare_{plot.name}")
    return {"table": result.table, "seconds": result.seconds, "ran": result.ran, "skipped": result.skipped,
            "failed": result.failed}


def run_timing(args) -> dict:
    """The same sub-grid from scratch on 1 worker (no Ray) and on 2 Ray workers."""
    from prompt_compare import compare
    from prompt_compare.execute import TIMING_FIELDS

    spec, out, rows = grid(args, ["sst2"], TIMING_METHODS, [13]), {}, {}
    for workers in (1, 2):
        folder = Path(f"{args.out}-timing-w{workers}")
        shutil.rmtree(folder, ignore_errors=True)
        started = time.perf_counter()
        r = compare(spec, out=folder, workers=workers)
        out[f"wall_s_{workers}_worker{'s' if workers > 1 else ''}"] = time.perf_counter() - started
        rows[workers] = [{k: v for k, v in row.items() if k not in TIMING_FIELDS and k != "derived"} for row in r.rows]
    scores = ("dev", "test", "trainable_params", "bytes_stored", "forward_tokens", "backward_tokens")
    out["identical_scores"] = [[r.get(k) for k in scores] for r in rows[1]] == [[r.get(k) for k in scores] for r in rows[2]]
    out["identical_weights"] = [r.get("weights_sha256") for r in rows[1]] == [r.get("weights_sha256") for r in rows[2]]
    out["identical_records"] = rows[1] == rows[2]  # 2 torch threads here vs 1 per Ray worker: float sums may differ
    print(json.dumps(out, indent=2))
    return out


def recount(args) -> int:
    """Rewrite the stored bytes of a grid's finished cells from their artifacts with the current
    accounting (prompt_compare.execute.stored_bytes), for a grid run before that accounting counted only the
    tensors that apply a result; the next run of the grid (every cell skipped) rebuilds the table."""
    from frozen_lm.results import load_result
    from prompt_compare.execute import stored_bytes
    from prompt_compare.store import RESULTS, append_record, read_records

    changed = 0
    for record in read_records(args.out).values():
        if record.get("status") != "done" or not record.get("artifact"):
            continue
        count = stored_bytes(load_result(Path(args.out) / record["artifact"]))
        if count != record.get("bytes_stored"):
            print(f"{record['task']} / {record['method']} / seed {record['seed']}: {record.get('bytes_stored')} -> {count}")
            append_record(args.out, {**record, "bytes_stored": count})  # the last line of a cell counts
            changed += 1
    print(f"{changed} records of {Path(args.out) / RESULTS} recounted")
    return changed


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--tasks", nargs="+", default=["sst2", "trec"], choices=list(TASKS))
    p.add_argument("--methods", nargs="+", default=METHODS)
    p.add_argument("--seeds", nargs="+", type=int, default=[13, 21, 42])
    p.add_argument("--steps", type=int, default=30, help="optimizer steps of every training method")
    p.add_argument("--iters", type=int, default=10, help="iterations of AutoPrompt and GCG")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", default=str(OUT / "compare"))
    p.add_argument("--part", choices=["all", "grid", "timing", "recount"], default="all",
                   help="recount: the stored bytes of --out's finished cells from their artifacts (then run --part grid)")
    p.add_argument("--quick", action="store_true", help="tiny settings: 2 steps, 1 iteration, seed 13, 64 test rows")
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.iters = 2, 1
    for t in args.tasks:
        require(KSHOT / t / "test.jsonl")
    print(threads_line())
    if args.part == "recount":
        recount(args)
        return
    report = {"args": vars(args)}
    if args.part in ("all", "grid"):
        report["grid"] = run_main(args)
    if args.part in ("all", "timing"):
        report["timing"] = run_timing(args)
    print(f"saved {save_json('compare' if not args.quick else 'compare-quick', report)}")


if __name__ == "__main__":
    main()
