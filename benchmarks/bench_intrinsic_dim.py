"""Intrinsic-dimension benchmarks: training-step speed and memory (fastfood vs full fine-tuning) and
d90 quality on SST-2 / MRPC few-shot splits.

    flock /tmp/bench.lock python benchmarks/bench_intrinsic_dim.py speed [--model smollm2-135m --d 1000]
    flock /tmp/bench.lock python benchmarks/bench_intrinsic_dim.py quality [--model bert-tiny-mlm]

`speed` runs each mode in its own subprocess (so ru_maxrss is that mode's peak) through
`intrinsic_dim.measure` and prints seconds per training step and peak memory. `quality` runs
`autoprompt intrinsic-dim` on each task and prints d90.
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
        cmd = [sys.executable, "-m", "autoprompt", "-q", "intrinsic-dim", "--model", args.model, "--train", str(train), "--dev", str(dev),
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
    args = p.parse_args()
    if args.cmd == "one":
        print(json.dumps(one_mode(args.mode, args.model, args.d, args.batch, args.steps)))
    else:
        {"speed": speed, "quality": quality}[args.cmd](args)


if __name__ == "__main__":
    main()
