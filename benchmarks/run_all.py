"""Run every benchmark of the README, one after another, and keep each one's output.

    python benchmarks/run_all.py            # all of them (hours on a 2-core CPU)
    python benchmarks/run_all.py --quick    # small settings: checks that each script runs (minutes)
    python benchmarks/run_all.py --only load search_speed

Each benchmark runs in its own process, alone (run nothing else on the machine: torch's threads
oversubscribe shared cores and times grow several-fold). Output goes to the terminal and to
runs/bench/<name>.txt; the scripts also write their JSON results under runs/. A script's result
file (benchmarks.common.write_result) goes to --results: benchmarks/results/ (committed; the
documentation site renders each file as a page) for full runs, runs/bench/results-quick/ for
--quick; each file records the command below (passed on in BENCH_COMMAND), the date, the commit
and the machine.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# nanoGCG needs transformers <= 4.47.1, so it lives in a venv of its own (see benchmarks/bench_gcg.py)
NANOGCG = ["--nanogcg-python", os.environ["NANOGCG_PYTHON"]] if os.environ.get("NANOGCG_PYTHON") else []
OUT = ROOT / "runs" / "bench"
RESULTS = ROOT / "benchmarks" / "results"
QUICK_RESULTS = OUT / "results-quick"

# name -> (full arguments, quick arguments); the commands that made the README's tables.
BENCHMARKS: dict[str, tuple[list[str], list[str]]] = {
    "load": (["benchmarks/bench_load.py"], ["benchmarks/bench_load.py", "--reps", "2"]),
    "search_speed": (["-m", "benchmarks.bench_search_speed", "--iters", "3", "--dev-size", "100"],
                     ["-m", "benchmarks.bench_search_speed", "--iters", "2", "--dev-size", "32"]),
    "ab_scoring": (["benchmarks/ab_scoring.py", "--commit", "9895c87", "--rounds", "5"],
                   ["benchmarks/ab_scoring.py", "--commit", "9895c87", "--rounds", "1"]),
    "search_quality": (["-m", "benchmarks.bench_search_quality", "--part", "all"],
                       ["-m", "benchmarks.bench_search_quality", "--part", "bert", "--iters", "2"]),
    "start": (["-m", "benchmarks.bench_start"], ["-m", "benchmarks.bench_start", "--part", "sst2", "--iters", "1",
                                                     "--seeds", "13"]),
    "softprompt": (["benchmarks/bench_softprompt.py", "--save", "runs/bench/softprompt.json"],
                   ["benchmarks/bench_softprompt.py", "--seeds", "42", "--steps", "3", "--test-limit", "32"]),
    "softprompt_full": (["benchmarks/bench_softprompt.py", "--train-set", "full", "--seeds", "42", "--steps", "200",
                         "--methods", "manual", "prompt", "prefix", "prefix_direct",
                         "--save", "runs/bench/softprompt_full.json"],
                        ["benchmarks/bench_softprompt.py", "--train-set", "full", "--seeds", "42", "--steps", "3",
                         "--methods", "manual", "prompt", "--test-limit", "32"]),
    "gcg_nanogcg": (["-m", "benchmarks.bench_gcg", "--part", "nanogcg"] + NANOGCG,
                    ["-m", "benchmarks.bench_gcg", "--part", "nanogcg", "--steps", "1", "--seeds", "0"] + NANOGCG),
    "gcg_sst2": (["-m", "benchmarks.bench_gcg", "--part", "sst2"], ["-m", "benchmarks.bench_gcg", "--part", "sst2",
                                                                    "--seeds", "13"]),
    "gcg_fluency": (["-m", "benchmarks.bench_gcg", "--part", "fluency"],
                    ["-m", "benchmarks.bench_gcg", "--part", "fluency", "--seeds", "13", "--weights", "0", "1"]),
    "intrinsic_dim_spaces": (["benchmarks/bench_intrinsic_dim.py", "spaces"],
                             ["benchmarks/bench_intrinsic_dim.py", "spaces", "--splits", "42", "--steps", "2",
                              "--max-dim", "100", "--cma-generations", "2", "--test-limit", "32",
                              "--docs", "runs/bench-quick-docs", "--out", "runs/bench-quick-spaces"]),
    "compare": (["benchmarks/bench_compare.py"], ["benchmarks/bench_compare.py", "--quick"]),
    "intrinsic_dim_speed": (["benchmarks/bench_intrinsic_dim.py", "speed"],
                            ["benchmarks/bench_intrinsic_dim.py", "speed", "--steps", "1"]),
    "intrinsic_dim_quality": (["benchmarks/bench_intrinsic_dim.py", "quality", "--seeds", "2", "--steps", "100",
                               "--extra", "--bisect-steps 2"],
                              ["benchmarks/bench_intrinsic_dim.py", "quality", "--tasks", "mrpc", "--seeds", "1",
                               "--steps", "5", "--dims", "10,100", "--out", "runs/bench-quick-intrinsic-dim"]),
}


def run_one(name: str, args: list[str], results: Path = RESULTS) -> int:
    """Run one benchmark in a process of its own; its result files go to `results`."""
    OUT.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, *args]
    print(f"\n=== {name}: {' '.join(args)}", flush=True)
    # what write_result records: the command as a reader would type it, and where the file goes
    env = {**os.environ, "BENCH_COMMAND": shlex.join(["python", *args]), "BENCH_RESULTS": str(results)}
    start = time.perf_counter()
    with open(OUT / f"{name}.txt", "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        for line in proc.stdout:
            sys.stdout.write(line)
            log.write(line)
        rc = proc.wait()
    print(f"=== {name}: exit {rc} after {time.perf_counter() - start:.0f} s (log: {OUT / (name + '.txt')})", flush=True)
    return rc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small settings that only check each script runs")
    ap.add_argument("--only", nargs="+", choices=list(BENCHMARKS), help="run only these")
    ap.add_argument("--results", type=Path, default=None,
                    help=f"where the scripts' result files go (default: {RESULTS.relative_to(ROOT)}, or "
                         f"{QUICK_RESULTS.relative_to(ROOT)} with --quick)")
    args = ap.parse_args()
    results = (args.results or (QUICK_RESULTS if args.quick else RESULTS)).resolve()
    failed = [name for name in (args.only or BENCHMARKS)
              if run_one(name, BENCHMARKS[name][args.quick], results) != 0]
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
