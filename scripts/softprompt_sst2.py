"""Thin driver: prompt tuning on SST-2 16-shot, then the gap to its nearest-token reading.

Runs the two commands a user would type (each under `flock /tmp/bench.lock`, so real-model runs on
a shared machine take turns):

    autoprompt tune --num-virtual-tokens 20 --template '{sentence} It was [P] .' ... --out runs/sp-sst2-42
    autoprompt nearest runs/sp-sst2-42 --evaluate --data .../test.jsonl

Usage: python scripts/softprompt_sst2.py [--seed 42] [--method prompt|prefix] [--steps 40]
"""

from __future__ import annotations

import argparse
import os
import subprocess
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "k-shot" / "sst2"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--method", default="prompt", choices=["prompt", "prefix"])
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--model", default="smollm2-135m")
    args = p.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": "2"}  # torch then uses 2 threads
    split, out = DATA / f"16-{args.seed}", f"runs/sp-sst2-{args.method}-{args.seed}"
    tune = ["autoprompt", "tune", "--model", args.model, "--method", args.method, "--num-virtual-tokens", "20",
            "--template", "{sentence} It was [P] .", "--label-map", "0=terrible,1=great",
            "--init", "text:Classify the sentiment of this review as great or terrible",
            "--train", str(split / "train.jsonl"), "--dev", str(split / "dev.jsonl"), "--steps", str(args.steps),
            "--eval-every", "10", "--seed", str(args.seed), "--out", out]
    subprocess.run(["flock", "/tmp/bench.lock", *tune], check=True, env=env)
    if args.method == "prompt":
        nearest = ["autoprompt", "nearest", out, "--k", "5", "--evaluate", "--data", str(DATA / "test.jsonl")]
        subprocess.run(["flock", "/tmp/bench.lock", *nearest], check=True, env=env)
    else:
        subprocess.run(["flock", "/tmp/bench.lock", "autoprompt", "evaluate", out, "--data", str(DATA / "test.jsonl")], check=True, env=env)


if __name__ == "__main__":
    main()
