"""Intrinsic-dimension benchmarks: training-step speed and memory (fastfood vs full fine-tuning), d90
quality on SST-2 / MRPC few-shot splits, and d90 by space (prompt, prefix, model) with CMA-ES
against gradient training.

    flock /tmp/bench.lock python benchmarks/bench_intrinsic_dim.py speed [--model smollm2-135m --d 1000]
    flock /tmp/bench.lock python benchmarks/bench_intrinsic_dim.py quality [--model bert-tiny-mlm]
    flock /tmp/bench.lock python benchmarks/bench_intrinsic_dim.py spaces    # about 70 minutes, see below

`speed` runs each mode in its own subprocess (so ru_maxrss is that mode's peak) through
`intrinsic_dim.measure` and prints seconds per training step and peak memory. `quality` runs
`autoprompt intrinsic-dim` on each task and prints d90.

`spaces` measures, through `intrinsic_dim.measure` in one process, d90 of SST-2 16-shot (data seeds
13, 21, 42: train 32 / dev 32 rows; template `{sentence} It was [P] .`, great/terrible) on
smollm2-135m in prompt space (20 virtual tokens, D = 11,520), prefix space (20 key/value positions,
D = 230,400) and model space (all 134.5 M weights, fastfood), each against its own full training
(prompt tuning, direct prefix tuning, full fine-tuning) and the honest-d90 references; then, in
prompt space at d = 500, Adam (40 steps of 8) against CMA-ES (25 generations of 20 candidates on 16
examples), scored on the 872 test rows with forward passes and wall time. It writes
docs/intrinsic_dim_spaces.md (tables), docs/d90_spaces_smollm2.png (one curve per space, mean over
the three splits) and runs/bench-intrinsic-dim-spaces/ (every run's artifact, spaces.json).

CPU time on 2 cores (from the measured step times in the comment above PLAN; `cut_plan()` prints the
estimate at the start): prompt 17 min (3 splits x 6 runs x 40 steps x 1.42 s), prefix 11 min
(3 x 5 x 40 x 1.06 s), model 18 min (3 x 4 x 40 x 2.15 s), CMA-ES vs Adam 20 min (per split 25
generations x 320 rows + 40 Adam steps + two 872-row test passes): about 66 min of runs plus
loading, about 70 min in all. Cut to fit 90 minutes: one projection seed per d, explicit dims
without bisection (prompt 10-5,000, prefix 10-10,000, model 100-10,000: no model-space d above
10,000), 40 steps per run (the softprompt table's setting, not convergence), model space only
through fastfood, and CMA-ES 8,000 forward passes per run (BBT's budget is 8,000 calls of 32
examples, 32x more).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

SHARED = Path(os.environ.get("SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
TASKS = {  # train / dev files under ../shared/data, and options for the run
    "sst2": dict(template="{sentence} It was [P] .", label_map="0=terrible,1=great",
                 train="k-shot/sst2/16-42/train.jsonl", dev="k-shot/sst2/test.jsonl", options=[]),
    "sst2-2k": dict(template="{sentence} It was [P] .", label_map="0=terrible,1=great", train="sst2/train.jsonl",
                    dev="sst2/dev.jsonl", options=["--max-train", "2000", "--max-dev", "400", "--batch-size", "16",
                             "--steps", "250"]),
    "mrpc": dict(template="{sentence1} ? [P] , {sentence2}", label_map="0=No,1=Yes",
                 train="k-shot/mrpc/16-42/train.jsonl", dev="k-shot/mrpc/test.jsonl", options=[]),
}


def _threads() -> int:
    import torch

    torch.set_num_threads(2)
    return torch.get_num_threads()


def one_mode(mode: str, model: str, d: int, batch: int, steps: int) -> dict:
    """Time training steps of `mode` ('full', or a projection such as 'fastfood') in this process,
    through `intrinsic_dim.measure`: full fine-tuning is its baseline run (a callback stops the
    sweep after it); a projection is one subspace run at `d` with the baseline score given.

    Runs steps + 2 steps: the first is a warm-up and the last also scores the dev rows, so
    s_per_step is the mean time between the step events of the `steps` in between (it includes
    the Trainer's per-step finiteness check); trainer_s_per_step is the Trainer's own mean of
    forward + backward + update over all steps (warm-up included).
    """
    import torch

    import intrinsic_dim
    from frozen_lm import data as data_mod
    from frozen_lm.model import FrozenLM
    from frozen_lm.task import PromptTask

    threads = _threads()
    torch.manual_seed(0)
    lm = FrozenLM.load(model, "cpu")
    spec = TASKS["sst2"]
    task = PromptTask(lm, spec["template"], spec["label_map"])
    rows = data_mod.load(str(SHARED / spec["train"])).rows[:batch]
    full = mode == "full"
    stage, stamps = ("baseline" if full else f"d={d} seed=0"), []

    def callback(event) -> bool:
        if event.kind == "step" and event.stage == stage:
            stamps.append(time.perf_counter())
        return event.kind == "run" and event.stage == "baseline"  # full fine-tuning only: no sweep

    config = intrinsic_dim.IntrinsicDimConfig(
        projection="fastfood" if full else mode, dims=[d], steps=steps + 2, batch_size=batch, baseline_lr=1e-4,
        baseline_score=None if full else 1.0, eval_batch_size=batch, plot=False)
    result = intrinsic_dim.measure(task, rows, rows, config, callback=callback, progress=False)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB on Linux
    steady = [b - a for a, b in zip(stamps[: steps + 1], stamps[1: steps + 1])]
    kind = "baseline" if full else "subspace"
    return {"mode": mode, "model": model, "D": result.D, "d": result.D if full else d, "batch": batch,
            "tokens": int(task.encode(rows).rows.attention_mask.sum()), "threads": threads,
            "s_per_step": sum(steady) / len(steady), "trainer_s_per_step": result.timings[f"{kind}_seconds_per_step"],
            "cpu_s_per_step": result.timings[f"{kind}_cpu_seconds_per_step"], "peak_rss_mib": round(peak)}


def speed(args) -> None:
    from autoprompt_cli.output import print_table

    print(f"torch threads: {_threads()}")
    rows = []
    for mode in ("full", "fastfood"):
        cmd = [sys.executable, __file__, "one", mode, "--model", args.model, "--d", str(args.d),
               "--batch", str(args.batch), "--steps", str(args.steps)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    full = rows[0]["s_per_step"]
    for r in rows:
        r["vs_full"] = f"{100 * (r['s_per_step'] / full - 1):+.1f}%"
    print_table(rows, f"training step, {args.model}, all parameters (target: fastfood adds < 25%)")


def quality(args) -> None:
    from autoprompt_cli.output import print_table

    print(f"torch threads: {_threads()}")
    rows = []
    for name in args.tasks.split(","):
        spec = TASKS[name]
        train, dev = SHARED / spec["train"], SHARED / spec["dev"]
        if not train.exists():
            print(f"{name}: {train} is absent; skipped")
            continue
        out = Path(args.out) / f"{name}-{args.model}"
        cmd = [sys.executable, "-m", "autoprompt_cli", "-q", "intrinsic-dim", "--model", args.model, "--train", str(train), "--dev", str(dev),
               "--template", spec["template"], "--label-map", spec["label_map"],
               "--projection", args.projection, "--steps", str(args.steps), "--seeds", str(args.seeds),
               "--out", str(out), "--overwrite", "--no-progress", "--json", *spec["options"], *args.extra.split()]
        if args.dims:
            cmd += ["--dims", args.dims]
        print("$ autoprompt", " ".join(repr(c) if " " in c else c for c in cmd[3:]), flush=True)
        start = time.perf_counter()
        res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
        rows.append({"task": name, "model": args.model, "D": res["D"], "baseline": res["baseline"], "target": res["target"],
                     "d90": res["d90"], "d90_seeds": res["d90_range"], "runs": len(res["per_dim"]) * args.seeds,
                     "seconds": round(time.perf_counter() - start), "plot": str(out / "d90.png")})
        print_table(res["per_dim"], f"{name}: score per d")
    print_table(rows, "d90 (train / dev files as in TASKS)")


# ---------------------------------------------------------------- spaces: d90 by space, CMA-ES vs gradient
KSHOT = SHARED / "k-shot" / "sst2"
MANUAL, LABELS = "{sentence} It was [P] .", "0=terrible,1=great"
INIT = "text:Classify the sentiment of this review as great or terrible"  # bench_softprompt's init
# What CPU time allows (2 cores; smollm2-135m: forward + backward of 8 SST-2 rows about 1.4 s with a
# 20-token prompt, 1.06 s with a 20-token prefix, 2.2 s for all 134.5 M weights; a forward of 32 rows
# about 1 s): every run 40 steps of batch 8 (the softprompt table's setting), one projection seed per d,
# explicit dims (no bisection), model space only through fastfood and up to d = 10,000, CMA-ES 25
# generations of 20 candidates on 16 examples (BBT: 400 generations on 32 examples).
PLAN = {  # part -> dims, seconds per training step (or per CMA generation), runs per split
    "prompt": {"dims": [10, 50, 250, 1000, 5000], "step_s": 1.42},
    "prefix": {"dims": [10, 100, 1000, 10000], "step_s": 1.06},
    "model": {"dims": [100, 1000, 10000], "step_s": 2.15},
}
SPLITS, STEPS, K, CMA_D, CMA_GENERATIONS, CMA_BATCH, POPSIZE = "13,21,42", 40, 20, 500, 25, 16, 20
EVAL_S, TEST_ROWS = 1.2, 872  # a dev pass of 32 rows; the test split


def cut_plan(splits: int = 3, steps: int = STEPS, generations: int = CMA_GENERATIONS, cma_batch: int = CMA_BATCH,
             popsize: int = POPSIZE) -> dict[str, dict]:
    """Estimated minutes of each part of `spaces` on smollm2-135m (the timings in the comment above PLAN)."""
    out = {}
    for part, p in PLAN.items():
        runs = len(p["dims"]) + 1  # the sweep and full training
        out[part] = {"runs": splits * runs, "minutes": splits * (runs * steps * p["step_s"] + (runs + 1) * EVAL_S) / 60}
    generation_s = popsize * cma_batch / 32 * 1.1  # candidates x examples rows, 32 rows a second (prompt: +10%)
    test_s = TEST_ROWS / 32 * EVAL_S
    cma = generations * generation_s + steps * PLAN["prompt"]["step_s"] + 2 * (test_s + EVAL_S)
    out["cma"] = {"runs": 2 * splits, "minutes": splits * cma / 60}
    return out


def aggregate(label: str, results: list[dict], threshold: float = 0.9) -> dict:
    """One curve over data splits: per d the mean of the splits' means and their min / max; the mean
    baseline; d90 of the mean curve (None when a split refused its baseline)."""
    import statistics

    dims = sorted(set.intersection(*(set(r["d"] for r in res["per_dim"]) for res in results)))
    rows = []
    for d in dims:
        values = [next(r["mean"] for r in res["per_dim"] if r["d"] == d) for res in results]
        rows.append({"d": d, "mean": statistics.fmean(values), "min": min(values), "max": max(values)})
    baseline = statistics.fmean(res["baseline"] for res in results)
    refused = any(res.get("refused") for res in results)
    d90 = None if refused else next((r["d"] for r in rows if r["mean"] >= threshold * baseline - 1e-12), None)
    return {"label": label, "per_dim": rows, "baseline": baseline, "d90": d90}


def _measure_space(lm, space: str, split: str, dims: list[int], args):
    """One d sweep of `space` on one SST-2 16-shot split, through intrinsic_dim.measure; (record, result)."""
    import intrinsic_dim
    from frozen_lm.task import PromptTask

    task = PromptTask(lm, MANUAL, LABELS)
    soft = space != "model"
    cfg = intrinsic_dim.IntrinsicDimConfig(
        space=space, num_virtual_tokens=args.k if soft else None, init=args.init if soft else "vocab",
        projection="fastfood", dims=dims, steps=args.steps, batch_size=8, eval_batch_size=32, seed=0)
    folder = KSHOT / f"16-{split}"

    def say(event):
        if event.kind == "run":
            print(f"  {space} s{split} {event.stage}: dev {event.metrics['score']:.4f}", flush=True)

    out = Path(args.out) / f"{space}-s{split}"
    r = _finished(out, cfg, folder) if args.reuse else None
    if r is None:
        r = intrinsic_dim.measure(task, str(folder / "train.jsonl"), str(folder / "dev.jsonl"), cfg, out=out,
                                  overwrite=True, callback=say, progress=False)
    record = {"space": space, "split": split, "D": r.D, "per_dim": r.per_dim, "baseline": r.baseline, "d90": r.d90,
              "refused": (r.d90_refused or {}).get("reason"), "majority": r.majority, "manual": r.manual,
              "seconds": round(r.timings["total_seconds"]), "artifact": str(Path(args.out) / f"{space}-s{split}")}
    return record, r


def _finished(out: Path, cfg, folder: Path):
    """The result an earlier invocation saved in `out` with the same config and split (--reuse), or None."""
    from frozen_lm.errors import UserError
    from frozen_lm.results import load_result

    try:
        r = load_result(out)
    except (UserError, OSError):
        return None
    source = (r.data.get("train") or {}).get("source")
    if r.status != "done" or r.config != cfg or source != str((folder / "train.jsonl").resolve()):
        return None
    print(f"  {out}: reusing the finished run of an earlier invocation (--reuse)", flush=True)
    return r


def _cma_vs_gradient(lm, split: str, baseline: float, test, args) -> list[dict]:
    """Prompt space at d = args.cma_d: Adam (args.steps steps of 8) against CMA-ES; dev, test, passes, time."""
    import intrinsic_dim
    from frozen_lm.evaluate import evaluate
    from frozen_lm.task import PromptTask

    task, folder, rows = PromptTask(lm, MANUAL, LABELS), KSHOT / f"16-{split}", []
    for optimizer in ("adam", "cma"):
        cma = optimizer == "cma"
        cfg = intrinsic_dim.IntrinsicDimConfig(
            space="prompt", num_virtual_tokens=args.k, init=args.init, projection="fastfood", dims=[args.cma_d],
            optimizer=optimizer, steps=args.cma_generations if cma else args.steps,
            batch_size=args.cma_batch if cma else 8, popsize=args.popsize if cma else None, baseline_score=baseline,
            eval_batch_size=32, plot=False, seed=0)
        out = Path(args.out) / f"{optimizer}-d{args.cma_d}-s{split}"
        r = _finished(out, cfg, folder) if args.reuse else None
        if r is None:
            r = intrinsic_dim.measure(task, str(folder / "train.jsonl"), str(folder / "dev.jsonl"), cfg, out=out,
                                      overwrite=True, progress=False)
        run = r.runs[0]
        rows.append({"optimizer": optimizer, "split": split, "d": args.cma_d, "steps": run["steps"],
                     "dev": run["score"], "test": evaluate(task, test, prompt=r)["accuracy"],
                     "forward_passes": run["forward_passes"], "train_seconds": run["seconds"]})
        print(f"  {optimizer} d={args.cma_d} s{split}: {rows[-1]}", flush=True)
    return rows


def spaces(args) -> None:
    """d90 of SST-2 16-shot in prompt, prefix and model space on `args.model`, and CMA-ES vs Adam."""
    from frozen_lm import data as data_mod
    from frozen_lm.model import FrozenLM

    print(f"torch threads: {_threads()}")
    splits, parts = args.splits.split(","), args.parts.split(",")
    plan = cut_plan(len(splits), args.steps, args.cma_generations, args.cma_batch, args.popsize)
    print("estimated minutes (smollm2-135m, 2 cores): " + ", ".join(f"{k} {v['minutes']:.0f}" for k, v in plan.items())
          + f"; total {sum(v['minutes'] for v in plan.values()):.0f}", flush=True)
    started = time.perf_counter()
    lm = FrozenLM.load(args.model, "cpu")
    test = data_mod.load(str(KSHOT / "test.jsonl")).sample(args.test_limit, 0)
    records, results, compare = [], {}, []
    for space in (p for p in PLAN if p in parts):
        dims = [d for d in PLAN[space]["dims"] if args.max_dim is None or d <= args.max_dim]
        for split in splits:
            record, _ = _measure_space(lm, space, split, dims, args)
            records.append(record)
            results.setdefault(space, []).append(record)
    if "cma" in parts:
        for split in splits:
            base = next((r["baseline"] for r in records if r["space"] == "prompt" and r["split"] == split), 1.0)
            compare += _cma_vs_gradient(lm, split, base, test, args)
    _write_spaces(records, results, compare, args, time.perf_counter() - started)


def _write_spaces(records, results, compare, args, seconds: float) -> None:
    from autoprompt_cli.output import print_table
    from intrinsic_dim.plot import plot_curves

    docs = Path(args.docs)
    docs.mkdir(parents=True, exist_ok=True)
    table = [{"space": space, "D": res[0]["D"], "dims": ",".join(str(r["d"]) for r in res[0]["per_dim"]),
              "baseline": round(sum(r["baseline"] for r in res) / len(res), 4),
              "d=0 (manual)": round(sum(r["manual"] for r in res) / len(res), 4), "chance": res[0]["majority"],
              **{f"d90 s{r['split']}": r["d90"] if not r["refused"] else "refused" for r in res},
              "d90 (mean curve)": aggregate(space, res)["d90"], "minutes": round(sum(r["seconds"] for r in res) / 60, 1)}
             for space, res in results.items()]
    print_table(table, f"d90 of SST-2 16-shot by space ({args.model}, {args.steps} steps per run)")
    print_table(compare, f"prompt space at d = {args.cma_d}: Adam vs CMA-ES")
    lines = [f"# d90 by space, {args.model} (`python benchmarks/bench_intrinsic_dim.py spaces`, "
             f"{seconds / 60:.0f} min)", "", _markdown(table), "", _markdown(compare), ""]
    lines += [f"- {r['space']} s{r['split']}: {r['refused']}" for r in records if r["refused"]]
    (docs / "intrinsic_dim_spaces.md").write_text("\n".join(lines) + "\n")
    if results:
        curves = [aggregate(space, res) for space, res in results.items()]
        plot_curves(curves, docs / "d90_spaces_smollm2.png", f"SST-2 16-shot, {args.model}: d90 by space "
                    f"(mean over splits {args.splits})", majority=records[0]["majority"])
    out = Path(args.out) / "spaces.json"
    out.write_text(json.dumps({"records": records, "compare": compare, "seconds": seconds}, indent=2, default=str))
    print(f"wrote {docs / 'intrinsic_dim_spaces.md'}, {docs / 'd90_spaces_smollm2.png'}, {out}; {seconds / 60:.1f} min")


def _markdown(rows: list[dict]) -> str:
    if not rows:
        return ""
    cols = list(dict.fromkeys(c for r in rows for c in r))
    fmt = lambda v: f"{v:.4f}" if isinstance(v, float) else str(v)  # noqa: E731
    return "\n".join(["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
                     + ["| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |" for r in rows])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("speed")
    s.add_argument("--model", default="smollm2-135m")
    s.add_argument("--d", type=int, default=1000)
    s.add_argument("--batch", type=int, default=8)
    s.add_argument("--steps", type=int, default=3)
    o = sub.add_parser("one")
    o.add_argument("mode")
    for a, default in (("--model", "smollm2-135m"), ("--d", 1000), ("--batch", 8), ("--steps", 3)):
        o.add_argument(a, default=default, type=type(default))
    q = sub.add_parser("quality")
    q.add_argument("--model", default="bert-tiny-mlm")
    q.add_argument("--tasks", default="sst2-2k,mrpc")
    q.add_argument("--projection", default="fastfood")
    q.add_argument("--dims", default="")
    q.add_argument("--steps", type=int, default=100)
    q.add_argument("--seeds", type=int, default=2)
    q.add_argument("--out", default="runs/bench-intrinsic-dim")
    q.add_argument("--extra", default="", help="more intrinsic-dim options, e.g. '--baseline-lr 1e-3'")
    sp = sub.add_parser("spaces", help="d90 by space and CMA-ES vs Adam on SST-2 16-shot (about 70 min)")
    sp.add_argument("--model", default="smollm2-135m")
    sp.add_argument("--splits", default=SPLITS, help="SST-2 16-shot data seeds")
    sp.add_argument("--parts", default="prompt,prefix,model,cma")
    sp.add_argument("--steps", type=int, default=STEPS, help="steps per gradient run (and full training)")
    sp.add_argument("--k", type=int, default=K, help="virtual tokens (prompt) / prefix length")
    sp.add_argument("--init", default=INIT)
    sp.add_argument("--max-dim", type=int, default=None, help="leave out dims above this (quick checks)")
    sp.add_argument("--cma-d", type=int, default=CMA_D)
    sp.add_argument("--cma-generations", type=int, default=CMA_GENERATIONS)
    sp.add_argument("--cma-batch", type=int, default=CMA_BATCH)
    sp.add_argument("--popsize", type=int, default=POPSIZE)
    sp.add_argument("--test-limit", type=int, default=None, help="score at most this many test rows")
    sp.add_argument("--docs", default="docs", help="where the table and the plot go")
    sp.add_argument("--reuse", action="store_true",
                    help="take a run an earlier invocation finished (same config and split) instead of running it")
    sp.add_argument("--out", default="runs/bench-intrinsic-dim-spaces", help="artifacts and spaces.json")
    args = p.parse_args()
    if args.cmd == "one":
        print(json.dumps(one_mode(args.mode, args.model, args.d, args.batch, args.steps)))
    else:
        {"speed": speed, "quality": quality, "spaces": spaces}[args.cmd](args)


if __name__ == "__main__":
    main()
