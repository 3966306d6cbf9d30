"""Learned vs discrete prompts vs fine-tuning on SmolLM2-135M, one protocol (`prompt_compare.compare`).

Two grids on SST-2 and TREC 16-shot (LM-BFF splits from ../shared/data/k-shot):

`--part grid` (the README's table): seeds 13 21 42, every method at equal steps: every training
method runs --steps optimizer steps (batch 8, dev scored every 10 steps to keep the best checkpoint),
discrete search --iters iterations (an iteration scores 32-64 candidates, about ten training steps'
worth of compute). Methods (registered methods, by name): manual template, AutoPrompt, GCG, PEZ,
prompt tuning (+ its nearest-token reading), prefix tuning, LoRA, (IA)3, bottleneck adapter (PEFT
LoRA on the feed-forward output projection), BitFit, the last 2 blocks, full fine-tuning. Then
`--part timing`: a small sub-grid (SST-2, seed 13, manual / prompt / lora / bitfit) from scratch on 1
worker (no Ray) and on 2 Ray workers: its wall times, and whether the numbers agree.

`--part tuned` (issue 28): all five splits 13 21 42 87 100, the same methods plus in-context
demonstrations ('icl') and LM-written instructions ('instruct'), every method with its default
search space (`compare(..., tune=True)`: learning rates; AutoPrompt's candidates x iterations, GCG's
width x iterations, icl's demonstrations x mode, instruct's rounds): each (method, split) trains
every setting, keeps the best on dev and reports test for it; the table shows the chosen settings,
counts the whole sweep in each method's tokens and wall time, warns at the edge of a space, and
marks the methods not significantly worse than the best (paired test over the test examples of all
splits) with each one's p against the manual template. Training methods keep --steps 30 (batch 8);
the searches' iterations come from their spaces (give --iters to fix them), and so do PEZ's steps
(a discrete search: its budget is part of its space). Only the chosen setting's weights are kept. Results: runs/bench/compare-tuned/.
A setting with more iterations continues the same cell's setting with fewer (prompt_compare.trials:
AutoPrompt's and GCG's 40 go on from their 20), so it costs the difference. The grid outlives a
machine that loses runs/: at its end, or when stopped (Ctrl-C, `kill`), its finished cells and the
unfinished cells' finished or cut settings are copied to benchmarks/results/compare_tuned_progress/
(benchmarks/grid_carry.py, committed), and the next run starts from there.

    python benchmarks/bench_compare.py                      # README table + 1-vs-2 workers (about 2 hours)
    python benchmarks/bench_compare.py --part tuned         # issue 28 (about 15 hours on 2 workers)
    python benchmarks/bench_compare.py --part tuned --estimate   # the estimate for the options given, no run
    python benchmarks/bench_compare.py --part tuned --quick      # checks that it runs (tiny model, ~15 min)

Expected time of `--part grid` on the project's machine (2 CPU cores; a SmolLM2 forward + backward on
8 rows ~1.4 s, a forward of 32 rows ~1 s, a full fine-tuning step ~2.2 s): per SST-2 seed about 19
min of one process (training methods 30 steps x 1.1-2.2 s, scoring dev + test ~28 s per cell, ~45 s
for the 20-token prompt; AutoPrompt and GCG ~12-14 s per iteration), per TREC seed about 15 min: ~100
min of cells, ~85 min on 2 workers (1 thread each), plus ~9 min for the 1-vs-2 worker timing.

Expected time of `--part tuned` (`--estimate` prints it for any choice of tasks, splits, methods,
sweeps and iterations), from the per-cell costs of README's compare table (smollm2-135m, 2 cores,
SST-2; TREC's cells take about 0.8 of SST-2's): a setting of a training method costs what its untuned
cell did (prompt 82 s, prefix 59, LoRA 60, (IA)3 61, adapter 79, BitFit 82, last 2 blocks 38, full
116, PEZ 84), times its space (3-5 learning rates); AutoPrompt ~19 s per iteration at 10 candidates
(~35 at 50: measured in this grid, 28 and 50 s on each of 2 workers),
GCG ~35 s at width 64 (~50 at 128: measured in this grid, 50 and 71 s on each of 2 workers; their spaces: 20 and 40
iterations x 2 sizes), icl ~10 s per setting (dev only), instruct ~40 s per round; test scoring ~28
s per cell; a setting that continues another costs the difference. The default (2 tasks x 5 splits x
14 methods = 140 cells, 540 settings): about 24 hours of one process, about 14.8 hours on 2 workers;
AutoPrompt (5.5 h) and GCG (8.5 h) are more than half of it. To cut it: --methods without autoprompt and
gcg (10 h of one process, 6 h on 2 workers); --sweep autoprompt.num_cand=10 --sweep
gcg.search_width=64 (15 h, 10 h); --iters 20 (17 h, 10.5 h); --splits 13 21 42 (x0.6); --tasks sst2
(x0.55). --quick runs the same grid on a tiny random GPT-2 (2 steps, the searches' iterations 1 and 2, 64 test rows, splits 13 21; about 15 minutes on 1
worker); there icl's cells fail (the tiny model reads 128 positions, too few for demonstrations) and
are recorded as failed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
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
TUNED_METHODS = [*METHODS, "icl", "instruct"]  # icl, instruct: packages prompt_icl, prompt_instruct (the registry)
TIMING_METHODS = ["manual", "prompt", "lora", "bitfit"]
SPLITS = [13, 21, 42, 87, 100]  # LM-BFF's five 16-shot splits
TASKS = {
    "sst2": {"template": "{sentence} It was [P] .", "label_map": {"0": "terrible", "1": "great"}},
    "trec": {"template": "{sentence} Question type: [P]",
             "label_map": {"DESC": "description", "ENTY": "entity", "ABBR": "abbreviation", "HUM": "person",
                           "LOC": "location", "NUM": "number"}},
}
# seconds of one setting on an SST-2 split (smollm2-135m, 2 cores; README's compare table), and of scoring test
SETTING_S = {"manual": 4, "pez": 84, "prompt": 82, "prefix": 59, "lora": 60, "ia3": 61, "adapter": 79, "bitfit": 82,
             "last_k": 38, "full": 116, "icl": 10}
TEST_S, TREC_FACTOR = 28, 0.8


def setting_seconds(method: str, setting: dict) -> float:
    """Rough seconds of one setting of a method on an SST-2 split (see the module docstring)."""
    if method == "autoprompt":
        # measured in the tuned grid (stop 40, 2 workers): 28 s per iteration at 10 candidates, 50 at 50
        return 19.4 * setting.get("iters", 20) * (0.8 + 0.2 * setting.get("num_cand", 10) / 10)
    if method == "gcg":
        # measured in the tuned grid (split 13, 2 workers): 50 s per iteration at width 64, 71 at 128
        return 35.0 * setting.get("iters", 20) * (0.59 + 0.41 * setting.get("search_width", 64) / 64)
    if method == "instruct":
        return 40 * setting.get("rounds", 3)
    return SETTING_S.get(method, 80) * setting.get("steps", 30) / 30


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


def budgeted(entry, steps: int, tune: bool):
    """A method entry with the grid's training steps: every method with a `steps` option gets --steps,
    but under --tune one whose default space holds steps (PEZ, a discrete search whose budget is part
    of its space) keeps its space."""
    from frozen_lm.methods import get
    from prompt_compare.entries import option_names

    name = entry_name(entry)
    config = {} if isinstance(entry, str) else dict(entry[name])
    method = get(name)
    if "steps" in config or "steps" not in option_names(method) or (tune and "steps" in method.space):
        return entry
    return {name: {**config, "steps": steps}}


def grid(args, tasks: list[str], methods: list, seeds: list[int]) -> dict:
    methods = [budgeted(m, args.steps, args.part == "tuned") for m in methods]
    defaults = {"eval_every": 10 if not args.quick else 1}
    if args.iters is not None:
        defaults["iters"] = args.iters
    if args.quick:
        defaults.update({"eval_size": 4, "topk": 4, "num_virtual_tokens": 2})
        if args.part != "tuned":  # the tuned grid's quick check keeps the searches' spaces (their sweeps cut below)
            defaults.update({"num_cand": 2, "search_width": 4})
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


def tuned_sweep(args) -> dict:
    """The tuned grid's own sweeps (--sweep METHOD.KEY=V1,V2; --quick: the searches' iterations 1 and 2)."""
    sweep: dict = {"autoprompt": {"iters": [1, 2]}, "gcg": {"iters": [1, 2]}} if args.quick else {}
    for pair in args.sweep:
        key, _, values = pair.partition("=")
        method, _, option = key.rpartition(".")
        sweep.setdefault(method, {})[option] = [v.strip() for v in values.split(",") if v.strip()]  # read as the option's type
    methods = {entry_name(m) for m in args.methods}
    return {k: v for k, v in sweep.items() if k in methods}


def entry_name(entry) -> str:
    """A method entry's name: 'lora', or the key of {'pez': {...}}."""
    return entry if isinstance(entry, str) else next(iter(entry))


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def run_tuned(args) -> dict:
    """Issue 28: every method with its default space on every split; the table with chosen settings,
    sweep costs, edge warnings and significance marks."""
    from benchmarks import grid_carry
    from prompt_compare import compare

    spec = grid(args, args.tasks, args.methods, args.seeds)
    carry = not args.quick and Path(args.out).resolve() == grid_carry.GRID.resolve()
    if carry and grid_carry.restore():
        print(f"continuing from {grid_carry.KEEP} (the finished cells and the unfinished cells' settings)")
    signal.signal(signal.SIGTERM, _interrupt)  # `kill PID` stops it as Ctrl-C does: the finished work is kept
    try:
        result = compare(spec, out=args.out, workers=args.workers, tune=True, sweep=tuned_sweep(args))
    finally:
        if carry and (Path(args.out) / "results.jsonl").exists():
            print(f"carried to {grid_carry.KEEP}: {grid_carry.save()}")
    print(result.markdown)
    if not args.quick:
        write_tuned(args, result)
    return {"table": result.table, "seconds": result.seconds, "ran": result.ran, "skipped": result.skipped,
            "failed": result.failed}


TUNED_COLUMNS = ("task", "method", "seeds", "test_mean", "test_sd", "dev_mean", "chosen", "edge", "settings",
                 "wall_s", "forward_tokens", "backward_tokens", "trainable_params", "p_vs_best", "not_worse",
                 "p_vs_manual", "best", "failed")


def write_tuned(args, result) -> None:
    """benchmarks/results/compare_tuned.json (the whole protocol) or compare_tuned_reduced.json (fewer
    tasks, splits or methods than issue 28's), the table's columns a reader needs; the grid's own
    table.md / table.csv next to it."""
    from benchmarks.common import RESULTS, write_result

    methods = [entry_name(m) for m in args.methods]
    full = (sorted(args.tasks) == sorted(TASKS) and sorted(args.seeds) == sorted(SPLITS)
            and sorted(methods) == sorted(map(entry_name, TUNED_METHODS)))
    name = "compare_tuned" if full else "compare_tuned_reduced"
    rows = [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items() if k in TUNED_COLUMNS}
            for row in result.table]
    cut = "" if full else (f"Reduced run: tasks {', '.join(args.tasks)}; splits {', '.join(map(str, args.seeds))}; "
                           f"methods {', '.join(methods)} (issue 28's protocol: sst2 and trec, splits 13 21 42 87 "
                           "100, every method). ")
    notes = (cut + "Each (method, split) trains every setting of the method's default space (`--tune`), keeps "
             "the best on dev and is scored on test; `chosen` is the picked setting (x n: picked on n splits), "
             "`edge` flags a chosen value at the edge of its space, `settings` the settings trained; wall_s and "
             "tokens count the whole sweep. p_vs_best / p_vs_manual: exact paired sign-flip (McNemar) test over "
             "the test examples pooled across splits; not_worse: not significantly worse than the best (p >= "
             "0.05). The grid's table.md and table.csv are in benchmarks/results/" + name + "/.")
    write_result(name, rows, notes=notes, title="Learned vs discrete vs fine-tuning, each method tuned on dev")
    keep = RESULTS / name
    keep.mkdir(parents=True, exist_ok=True)
    for f in ("table.md", "table.csv"):
        if (Path(args.out) / f).exists():
            shutil.copyfile(Path(args.out) / f, keep / f)


def cell_seconds(c) -> float:
    """Rough seconds of a cell's settings: a setting that continues an earlier one (a search's larger
    iters, prompt_compare.trials.resume_source) costs only the difference."""
    from frozen_lm.methods import get
    from prompt_compare.trials import resume_source

    resumable, settings = get(c.preset).resumable, c.settings()
    full = [setting_seconds(c.preset, {**c.config, **s}) for s in settings]
    done = [{"k": k, "status": "done", "setting": s} for k, s in enumerate(settings)]
    total = 0.0
    for k, s in enumerate(settings):
        source = resume_source(resumable, done[:k], s)
        total += full[k] - (full[source] if source is not None else 0.0)
    return total


def estimate(args) -> dict:
    """Rough hours of the tuned grid for these options (no run): every cell's settings x their costs."""
    from prompt_compare.api import as_grid
    from prompt_compare.cells import grid_cells

    cells = grid_cells(as_grid(grid(args, args.tasks, args.methods, args.seeds), tune=True, sweep=tuned_sweep(args)))
    total, by_method = 0.0, {}
    for c in cells:
        seconds = cell_seconds(c) + TEST_S
        seconds *= TREC_FACTOR if c.task == "trec" else 1.0
        by_method[c.method] = by_method.get(c.method, 0.0) + seconds
        total += seconds
    hours = {m: round(s / 3600, 1) for m, s in by_method.items()}
    out = {"cells": len(cells), "settings": sum(len(c.settings()) for c in cells), "hours_one_process":
           round(total / 3600, 1), "hours_on_workers": round(total / 3600 / (1.6 if args.workers > 1 else 1), 1),
           "hours_by_method": hours}
    print(json.dumps(out, indent=2))
    return out


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


def quick_model() -> str:
    """A tiny random GPT-2 saved under runs/bench (the --quick checks' model when --model is not given):
    its byte-level vocabulary writes any label word (TREC's too), in several tokens where it must."""
    from frozen_lm.testing import save_tiny

    folder = OUT / "quick-tiny-gpt2"
    if not (folder / "config.json").exists():
        save_tiny("gpt2", folder)
    return str(folder)


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--part", choices=["all", "grid", "timing", "tuned", "recount"], default="all",
                   help="all: grid + timing (the README's); tuned: issue 28's tuned grid; recount: the stored bytes "
                        "of --out's finished cells from their artifacts (then run --part grid)")
    p.add_argument("--model", default=None, help="default: smollm2-135m (--quick: a tiny random GPT-2)")
    p.add_argument("--tasks", nargs="+", default=["sst2", "trec"], choices=list(TASKS))
    p.add_argument("--methods", nargs="+", default=None, help="default: the README's 12 (tuned: + icl, instruct)")
    p.add_argument("--seeds", "--splits", dest="seeds", nargs="+", type=int, default=None,
                   help="LM-BFF splits (default 13 21 42; tuned: 13 21 42 87 100)")
    p.add_argument("--steps", type=int, default=30, help="optimizer steps of every training method")
    p.add_argument("--iters", type=int, default=None,
                   help="iterations of AutoPrompt and GCG (default 10; tuned: from their spaces, 20 and 40)")
    p.add_argument("--sweep", action="append", default=[], metavar="METHOD.KEY=V1,V2",
                   help="tuned: replace a method's space for one option, e.g. autoprompt.num_cand=10 (repeatable)")
    p.add_argument("--estimate", action="store_true", help="tuned: print the estimated hours of these options, no run")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", default=None, help="default: runs/bench/compare (tuned: runs/bench/compare-tuned)")
    p.add_argument("--quick", action="store_true", help="tiny settings: a tiny model, 2 steps, 1-2 iterations, "
                   "64 test rows (grid: seed 13; tuned: splits 13 21)")
    args = p.parse_args(argv)
    tuned = args.part == "tuned"
    # a method named on the command line runs with the benchmark's own entry for it (PEZ: dev after every step)
    args.methods = [next((e for e in TUNED_METHODS if entry_name(e) == m), m) for m in args.methods] if args.methods \
        else (TUNED_METHODS if tuned else METHODS)
    args.seeds = args.seeds or (SPLITS if tuned else [13, 21, 42])
    args.out = args.out or str(OUT / ("compare-tuned" if tuned else "compare"))
    if not tuned and args.iters is None:
        args.iters = 10
    if args.quick:
        args.steps = 2
        args.seeds = [13, 21] if tuned else args.seeds
        args.iters = None if tuned else 1
        args.model = args.model or quick_model()
        args.out = args.out + "-quick"
    args.model = args.model or "smollm2-135m"
    return args


def main(argv=None) -> None:
    args = parse(argv)
    for t in args.tasks:
        require(KSHOT / t / "test.jsonl")
    if args.part == "tuned" and args.estimate:
        estimate(args)
        return
    print(threads_line())
    if args.part == "recount":
        recount(args)
        return
    report = {"args": vars(args)}
    if args.part in ("all", "grid"):
        report["grid"] = run_main(args)
    if args.part in ("all", "timing"):
        report["timing"] = run_timing(args)
    if args.part == "tuned":
        report["tuned"] = run_tuned(args)
        report["estimate"] = estimate(args)
    name = "compare" + ("-tuned" if args.part == "tuned" else "") + ("-quick" if args.quick else "")
    print(f"saved {save_json(name, report)}")


if __name__ == "__main__":
    main()
