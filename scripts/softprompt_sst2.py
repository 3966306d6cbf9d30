"""Thin driver: prompt (or prefix) tuning on SST-2 16-shot, then the gap to its nearest-token reading.

The API calls a user would make, holding `/tmp/bench.lock` (real-model runs on a shared machine take
turns) with 2 torch threads. The same run as the two commands

    autoprompt tune --num-virtual-tokens 20 --template '{sentence} It was [P] .' ... --eval-every 10 --out runs/sp-sst2-prompt-42
    autoprompt nearest runs/sp-sst2-prompt-42 --evaluate --data .../test.jsonl

Usage: python scripts/softprompt_sst2.py [--seed 42] [--method prompt|prefix] [--steps 40]
"""

from __future__ import annotations

import argparse
import fcntl
import json
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "k-shot" / "sst2"
TEMPLATE, LABELS = "{sentence} It was [P] .", "0=terrible,1=great"
INIT = "text:Classify the sentiment of this review as great or terrible"


def run(args) -> list[dict]:
    import softprompt
    from frozen_lm import FrozenLM, PromptTask, evaluate

    lm = FrozenLM.load(args.model)
    task = PromptTask(lm, TEMPLATE, LABELS)
    split, test = DATA / f"16-{args.seed}", str(DATA / "test.jsonl")
    make = {"prompt": softprompt.PromptTuningConfig, "prefix": softprompt.PrefixTuningConfig}[args.method]
    config = make(num_virtual_tokens=20, init=INIT, steps=args.steps, eval_every=10, seed=args.seed)
    result = softprompt.tune(task, str(split / "train.jsonl"), str(split / "dev.jsonl"), config,
                             out=f"runs/sp-sst2-{args.method}-{args.seed}")
    rows = [{"prompt": f"{result.method} (learned)", "dev": result.metrics["dev"]["accuracy"],
             **evaluate(task, test, prompt=result), "s/step": result.timings["step_seconds"]}]
    if args.method == "prompt":
        reading = softprompt.nearest(result, k=5)
        for slot in reading.table_rows():
            print(json.dumps(slot))
        rows.append({"prompt": f"nearest tokens {reading.trigger_text!r}",
                     **evaluate(task, test, prompt=reading.prompt)})
        print("evaluate it with:", reading.command(test))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--method", default="prompt", choices=["prompt", "prefix"])
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--model", default="smollm2-135m")
    args = p.parse_args()
    import torch

    torch.set_num_threads(2)
    with open("/tmp/bench.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for row in run(args):
            print(json.dumps(row))


if __name__ == "__main__":
    main()
