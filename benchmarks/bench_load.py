"""Model-load benchmark: a cached reload of an offline alias (default smollm2-135m) in fresh processes.

Each repetition starts a new Python process that times three things separately: importing torch,
transformers and its modeling code (import_s: the fixed cost of any transformers program, the same
for every model), `FrozenLM.load(name)` (load_s: reading the cached weights, config, tokenizer and
wrapping; the number the target is about), and the whole process (process_s: what a user waits for
at the start of a command). The first (untimed) run fills the dequantized-weights cache if needed.

    python benchmarks/bench_load.py [--model smollm2-135m] [--reps 5] [--target 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch

CHILD = """
import json, time
t0 = time.perf_counter()
import torch, transformers
import transformers.modeling_utils  # the modeling code every model class imports (about 2-3 s here)
from frozen_lm.model import FrozenLM
t1 = time.perf_counter()
lm = FrozenLM.load({name!r}, device="cpu")
t2 = time.perf_counter()
print(json.dumps({{"import_s": t1 - t0, "load_s": t2 - t1, "threads": torch.get_num_threads(),
                  "params_m": sum(p.numel() for p in lm.model.parameters()) / 1e6}}))
"""


def run_child(name: str) -> dict:
    env = {**os.environ, "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", CHILD.format(name=name)], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if out.returncode != 0:
        sys.exit(f"loading {name} failed:\n{out.stderr[-2000:]}")
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "process_s": wall}


def table(rows: list[dict]) -> None:
    cols = list(rows[0])
    cells = [[f"{v:.2f}" if isinstance(v, float) else str(v) for v in (r[c] for c in cols)] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    print(" | ".join(c.ljust(w) for c, w in zip(cols, widths)))
    print("-+-".join("-" * w for w in widths))
    for row in cells:
        print(" | ".join(v.ljust(w) for v, w in zip(row, widths)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--target", type=float, default=3.0, help="seconds the median load should stay under")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, torch.get_num_threads() = {torch.get_num_threads()}, cpus = {os.cpu_count()}")
    warm = run_child(args.model)  # fills the cache on a first-ever load; not counted
    print(f"warm-up: load {warm['load_s']:.2f} s ({warm['params_m']:.1f} M parameters, child threads {warm['threads']})")
    rows = []
    for rep in range(1, args.reps + 1):
        r = run_child(args.model)
        rows.append({"rep": rep, "import_s": r["import_s"], "load_s": r["load_s"], "process_s": r["process_s"]})
    med = {k: statistics.median(r[k] for r in rows) for k in ("import_s", "load_s", "process_s")}
    rows.append({"rep": "median", **med})
    print(f"\ncached reload of {args.model} in a fresh process ({args.reps} repetitions)")
    table(rows)
    verdict = "OK" if med["load_s"] < args.target else "SLOWER THAN TARGET"
    print(f"\nmedian load {med['load_s']:.2f} s, target < {args.target:.1f} s: {verdict}")


if __name__ == "__main__":
    main()
