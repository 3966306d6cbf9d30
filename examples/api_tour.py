"""A tour of the Python API on the built-in demo sentiment task (runs offline in a few minutes).

    python examples/api_tour.py                       # smollm2-135m, the default offline model
    python examples/api_tour.py --model bert-tiny-mlm --quick

Every method takes a task, data and a config, and returns a result that `evaluate` scores, `save`
writes and `load_result` reads back. Nothing is written unless asked (out= or .save).
"""

from __future__ import annotations

import argparse
import json
import logging

import autoprompt
import intrinsic_dim
import softprompt
from frozen_lm import FrozenLM, PromptTask, evaluate, load_result

LABELS = {"0": "terrible", "1": "great"}
TRAIN, DEV = "demo:sentiment:train", "demo:sentiment:dev"  # or a path, a list of dicts, a datasets.Dataset


def tour(model: str = "smollm2-135m", out: str = "runs/tour", quick: bool = False) -> dict:
    """Run every method once on the demo task; returns the dev scores by name."""
    lm = FrozenLM.load(model)  # an alias, a local folder or a hub name; device=, dtype=
    manual = PromptTask(lm, "{sentence} It was [P] .", label_map=LABELS)
    task = PromptTask(lm, "{sentence} [T] [T] [T] [P]", label_map=LABELS)
    scores = {"manual": evaluate(manual, DEV)["accuracy"]}  # the hand-written template

    # discrete search (AutoPrompt); the callback sees every iteration and could stop the run
    r = autoprompt.search(task, TRAIN, DEV, autoprompt.AutoPromptConfig(iters=2 if quick else 10, seed=0),
                          callback=lambda e: print(f"  iteration {e.step}: dev {e.metrics['dev']:.3f}"))
    scores["autoprompt"] = evaluate(task, DEV, prompt=r)["accuracy"]
    print("found:", r.filled_template)

    # the same template, learned as vectors (prompt tuning) and as a prefix; then read back as tokens
    s = softprompt.tune(task, TRAIN, DEV, softprompt.PromptTuningConfig(steps=4 if quick else 30, seed=0))
    scores["prompt_tuning"] = evaluate(task, DEV, prompt=s)["accuracy"]
    n = softprompt.nearest(s, k=5)  # nearest vocabulary tokens of each learned vector
    scores["nearest_tokens"] = evaluate(task, DEV, prompt=n.prompt)["accuracy"]
    if lm.supports_prefix and not lm.is_masked:
        p = softprompt.tune(task, TRAIN, DEV, softprompt.PrefixTuningConfig(steps=4 if quick else 30))
        scores["prefix_tuning"] = evaluate(task, DEV, prompt=p)["accuracy"]

    # intrinsic dimension of the hand-written template: train theta_0 + P(theta_d) for a few d
    d = intrinsic_dim.measure(manual, TRAIN, DEV, intrinsic_dim.IntrinsicDimConfig(
        dims=[10, 100], steps=3 if quick else 20, params="attention", plot=False))
    print(f"d90 = {d.d90} (baseline {d.baseline:.3f}, per d: {[(r['d'], round(r['mean'], 3)) for r in d.per_dim]})")

    # any result saves to a folder and comes back as itself
    r.save(f"{out}/search")
    again = load_result(f"{out}/search")
    assert evaluate(task, DEV, prompt=again) == evaluate(task, DEV, prompt=r)
    return scores


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--out", default="runs/tour")
    parser.add_argument("--quick", action="store_true", help="a few steps of each method")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print(json.dumps(tour(args.model, args.out, args.quick), indent=2))
