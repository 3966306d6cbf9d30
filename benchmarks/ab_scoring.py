"""A/B of packed candidate scoring between an older commit and this checkout, on the same machine.

    python benchmarks/ab_scoring.py --commit 9895c87 --rounds 5

The machine's speed drifts between sessions, so a number measured in an earlier session cannot tell
a code regression from a slower machine. This checks out COMMIT into a temporary git worktree and
alternates, ROUNDS times, one measurement in a fresh process of the old code and one of this code
(PYTHONPATH puts each tree first), then prints both series and their means. The measurement is
bench_search_speed's (b): 32 random candidates x 32 SST-2 training rows on smollm2-135m,
'{sentence} [T] [T] [T] [P]', packed scoring, median of 7 passes after a warm-up, plus the plain
forward of the 32 rows (a) for the ratio. It uses only calls that every version since stop 9 has.
Run it alone on the machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SHARED_DATA", ROOT.parent / "shared" / "data"))

MEASURE = r"""
import sys, time, torch
from autoprompt.scoring import score_triggers
from autoprompt.search import initial_trigger
from frozen_lm import data as data_mod
from frozen_lm.model import FrozenLM
from frozen_lm.task import PromptTask
torch.set_num_threads(2)
lm = FrozenLM.load("smollm2-135m")
task = PromptTask(lm, "{sentence} [T] [T] [T] [P]", "0=terrible,1=great")
train = task.encode(data_mod.load(sys.argv[1]))
g = torch.Generator().manual_seed(0)
batch = train.rows.subset(torch.randperm(len(train.rows), generator=g)[:32])
cands = torch.randint(1000, 20000, (32, 3), generator=g)
ids = batch.with_triggers(initial_trigger(task, "the"))
def timed(fn, repeat):
    fn()
    ts = []
    for _ in range(repeat):
        t = time.perf_counter(); fn(); ts.append(time.perf_counter() - t)
    return sorted(ts)[len(ts) // 2]
with torch.no_grad():
    tf = timed(lambda: lm.logits_at(batch.predict_pos, input_ids=ids, attention_mask=batch.attention_mask), 5)
tp = timed(lambda: score_triggers(task, batch, cands, packed=True), 7)
print(f"RESULT {32 / tf:.3f} {1024 / tp:.3f}")
"""


def measure(tree: Path, train: Path) -> tuple[float, float]:
    env = {**os.environ, "PYTHONPATH": str(tree), "TOKENIZERS_PARALLELISM": "false"}
    out = subprocess.run([sys.executable, "-c", MEASURE, str(train)], cwd=tree, env=env, capture_output=True,
                         text=True, check=True).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("RESULT"))
    fwd, packed = map(float, line.split()[1:])
    return fwd, packed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--commit", default="9895c87", help="the older commit (default: stop 9's README numbers)")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    train = SHARED / "sst2" / "train.jsonl"
    if not train.exists():
        sys.exit(f"{train} is absent (../shared/data)")
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "old"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(old), args.commit], cwd=ROOT, check=True)
        try:
            series = {"old": [], "this": []}
            for i in range(args.rounds):
                for name, tree in (("old", old), ("this", ROOT)):
                    fwd, packed = measure(tree, train)
                    series[name].append((fwd, packed))
                    print(f"round {i + 1} {name:4s}: forward {fwd:6.2f} seq/s, packed {packed:6.1f} cand-ex/s, "
                          f"ratio {packed / fwd:5.2f}", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=ROOT, check=False)
    for name, rows in series.items():
        packed = [p for _, p in rows]
        ratio = [p / f for f, p in rows]
        print(f"{name} ({args.commit if name == 'old' else 'this checkout'}): packed mean {statistics.mean(packed):.1f} "
              f"(min {min(packed):.1f}, max {max(packed):.1f}), ratio to forward mean {statistics.mean(ratio):.2f}")


if __name__ == "__main__":
    main()
