"""benchmarks/bench_gcg_ttt.py's bookkeeping (no model, no nanoGCG): the judged curve within the budget,
seconds to L*, success of the best trigger, speed-ups per variant, and the variants' configs."""

from __future__ import annotations

import math

from benchmarks.bench_gcg_ttt import ABLATIONS, analyse, summarize, variant_config


class FakeJudge:
    def __init__(self, losses: dict):
        self.losses = losses

    def __call__(self, prompt):
        return {"loss": self.losses[prompt], "success": self.losses[prompt] < 0.5}


def test_analyse_reads_the_curve_within_the_budget():
    judge = FakeJudge({"a": 1.0, "b": 0.7, "c": 0.4, "d": 0.1})
    got = analyse([1.0, 2.0, 3.0, 9.0], ["a", "b", "c", "d"], judge, budget=5.0, lstar=0.7)
    assert got["curve"] == [[1.0, 1.0], [2.0, 0.7], [3.0, 0.4]] and got["t_lstar"] == 2.0
    assert got["best_loss"] == 0.4 and got["success"]  # 'd' came after the budget
    never = analyse([1.0], ["a"], judge, budget=5.0, lstar=0.7)
    assert never["t_lstar"] == math.inf and not never["success"]


def test_summarize_compares_each_run_with_its_nanogcg():
    runs = [{"target": 0, "seed": s, "variant": v, "lstar": 0.5, "t_lstar": t, "budget_s": 10.0, "best_loss": 0.5,
             "success": v == "fast", "steps": 3}
            for s, v, t in [(0, "nanogcg", 10.0), (0, "fast", 2.0), (1, "nanogcg", 8.0), (1, "fast", math.inf)]]
    per_run, summary = summarize(runs)
    fast = next(r for r in summary if r["variant"] == "fast")
    assert fast["reached_L*"] == 1 and fast["success_at_B"] == "2/2" and fast["median_speedup"] == 2.5
    assert [r["speedup"] for r in per_run if r["variant"] == "fast"] == [5.0, 0.0]
    assert per_run[3]["s_to_L*"] == "not within B"


def test_variants_are_plain_gcg_one_technique_or_a_preset_without_early_stop():
    assert variant_config("plain", 0).schedule is None
    for name in ABLATIONS[1:]:
        s = variant_config(name, 0).schedule
        assert s.active and s.preset == "none" and not s.stop_on_success
    fast = variant_config("fast", 1)
    assert fast.schedule.preset == "fast" and not fast.schedule.stop_on_success and fast.seed == 1
    assert variant_config("merge", 0).schedule.merge == variant_config("all", 0).schedule.merge


def test_resume_keeps_the_saved_runs_of_these_targets_and_seeds_and_refuses_other_settings(tmp_path):
    import argparse
    import json

    import pytest

    from benchmarks.bench_gcg_ttt import resumed

    saved = {"args": {"steps": 30, "dtype": "bfloat16", "threads": 2},
             "runs": [{"target": t, "seed": s, "variant": "nanogcg"} for t in (0, 1, 2) for s in (0, 1)]}
    path = tmp_path / "saved.json"
    path.write_text(json.dumps(saved))
    args = argparse.Namespace(resume=str(path), targets=2, seeds=[1, 2], steps=30, dtype="bfloat16", threads=2)
    assert [(r["target"], r["seed"]) for r in resumed(args)] == [(0, 1), (1, 1)]
    with pytest.raises(SystemExit, match="--steps 30, not 60"):
        resumed(argparse.Namespace(**{**vars(args), "steps": 60}))


def test_each_technique_is_also_compared_with_our_plain_gcg():
    runs = [{"target": 0, "seed": s, "variant": v, "lstar": 0.5, "t_lstar": t, "budget_s": 10.0, "best_loss": 0.5,
             "success": False, "steps": 3}
            for s, v, t in [(0, "nanogcg", 10.0), (0, "plain", 6.0), (0, "merge", 3.0), (0, "history", math.inf),
                            (1, "nanogcg", 10.0), (1, "plain", 8.0), (1, "merge", 5.0), (1, "history", math.inf)]]
    _, summary = summarize(runs)
    by = {r["variant"]: r for r in summary}
    assert by["merge"]["vs_plain"] == 1.75 and by["plain"]["vs_plain"] == 1.0  # median 7 s / median 4 s
    assert by["history"]["vs_plain"] == 0.0  # never reached L*


def test_vs_plain_only_where_plain_ran_on_the_same_targets_and_seeds():
    runs = [{"target": t, "seed": 0, "variant": v, "lstar": 0.5, "t_lstar": 4.0, "budget_s": 10.0, "best_loss": 0.5,
             "success": False, "steps": 3}
            for t, v in [(0, "nanogcg"), (0, "plain"), (0, "merge"), (1, "nanogcg"), (1, "fast"), (1, "plain"),
                         (2, "nanogcg"), (2, "fast")]]
    by = {r["variant"]: r for r in summarize(runs)[1]}
    assert by["merge"]["vs_plain"] == 1.0 and by["fast"]["vs_plain"] is None  # no plain run on target 2
