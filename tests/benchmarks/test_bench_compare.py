"""benchmarks/bench_compare.py's grid (no model, no data): where the training steps go."""

from __future__ import annotations

from benchmarks.bench_compare import budgeted


def test_training_methods_get_the_steps_and_a_tuned_pez_keeps_its_budget_space():
    assert budgeted("lora", 30, tune=True) == {"lora": {"steps": 30}}
    assert budgeted({"pez": {"eval_every": 1}}, 30, tune=False) == {"pez": {"eval_every": 1, "steps": 30}}
    assert budgeted({"pez": {"eval_every": 1}}, 30, tune=True) == {"pez": {"eval_every": 1}}  # steps: its space
    assert budgeted({"prompt": {"steps": 5}}, 30, tune=True) == {"prompt": {"steps": 5}}  # the entry's own value
    assert budgeted("gcg", 30, tune=True) == "gcg" and budgeted("manual", 30, tune=False) == "manual"  # no steps option
