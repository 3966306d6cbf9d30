"""The honest d90 (intrinsic_dim.honest): no d90 unless full training clearly beats chance and
theta_0 and its target lies above both, with the reason saved and printed (tiny models)."""

from __future__ import annotations

import json

from frozen_lm import data as data_mod
from frozen_lm.task import PromptTask
from intrinsic_dim import measure
from intrinsic_dim.honest import majority_rate, refusal
from tests.intrinsic_dim.test_intrinsic_dim_spaces import DEV, LABELS, TEMPLATE, TRAIN, _config, _rows


def test_refusal_needs_a_clear_gain_over_chance_and_theta_0():
    assert refusal(0.80, majority=0.5, manual=0.6, min_gain=0.05) is None
    why = refusal(0.62, majority=0.5, manual=0.6, min_gain=0.05)
    assert why["baseline"] == 0.62 and why["manual"] == 0.6 and why["majority"] == 0.5 and why["min_gain"] == 0.05
    assert "0.6500" in why["reason"] and "majority" in why["reason"]
    assert refusal(0.0, majority=0.02, manual=0.0, min_gain=0.05, metric="p_at_1")["reason"].startswith(
        "full training scores p_at_1 0.0000")


def test_refusal_when_theta_0_already_reaches_the_target():
    """Full training 0.80 beats theta_0 0.74 by more than min_gain, but 90% of it (0.72) is below
    theta_0: every d would pass untrained (a sweep of constant 0.74 scores reported d90 = 1)."""
    why = refusal(0.80, majority=0.5, manual=0.74, min_gain=0.05)
    assert why is not None and "0.7200" in why["reason"] and "theta_0 (d = 0) score 0.7400" in why["reason"]
    assert refusal(0.80, majority=0.5, manual=0.74, min_gain=0.05, threshold=0.95) is None  # target 0.76
    assert "majority-class score 0.7500" in refusal(0.80, majority=0.75, manual=0.5, min_gain=0.02)["reason"]


def test_baseline_at_chance_reports_no_d90_and_says_why(tiny, tmp_path):
    task = PromptTask(tiny("llama"), TEMPLATE, LABELS)
    cfg = _config(space="model", num_virtual_tokens=None, baseline_steps=1, baseline_lr=1e-9, plot=True)
    r = measure(task, TRAIN, DEV, cfg, out=tmp_path / "chance", progress=False)
    assert r.d90 is None and r.d90_min is None and r.d90_max is None and r.d90_per_seed == [None]
    assert r.per_dim and [x["d"] for x in r.runs] == [5, 40]  # the sweep still ran: its curve is drawn
    assert r.majority == majority_rate(_rows(task, 12, DEV)) and r.manual is not None
    assert r.d90_refused["baseline"] == r.baseline <= max(r.majority, r.manual) + 0.05
    assert r.saved_run["d"] == 40  # no d90: the best run at the largest d
    saved = json.loads((tmp_path / "chance" / "results.json").read_text())
    assert saved["d90"] is None and saved["d90_refused"]["reason"] == r.d90_refused["reason"]
    assert saved["majority"] == r.majority and saved["manual"] == r.manual
    assert (tmp_path / "chance" / "d90.png").stat().st_size > 1000
    given = measure(task, TRAIN, DEV, _config(space="model", num_virtual_tokens=None, baseline_score=0.1), progress=False)
    assert given.d90_refused is None and given.d90 == 5  # --baseline-score is taken as it is


def test_a_baseline_above_chance_gives_a_d90(tiny):
    """Prefix tuning of a tiny Llama fits 16 examples (scored on the same rows) well above their majority class."""
    task = PromptTask(tiny("llama"), TEMPLATE, LABELS)
    rows = data_mod.load(TRAIN).sample(16, 0).rows
    cfg = _config(space="prefix", dims=[5], steps=5, baseline_steps=150, batch_size=16, baseline_lr=1.0,
                  max_train=None, max_dev=None, min_gain=0.1)
    r = measure(task, rows, rows, cfg, progress=False)
    assert r.baseline > max(r.majority, r.manual) + 0.1 and r.d90_refused is None
    assert (r.d90 == 5) == (r.per_dim[0]["mean"] >= r.target)


def test_cli_prints_why_there_is_no_d90(cli, tiny_folder, tmp_path):
    result = cli("intrinsic-dim", "--model", tiny_folder("llama"), "--space", "prefix", "--dims", "5", "--steps", "2",
                 "--baseline-steps", "1", "--baseline-lr", "1e-9", "--no-plot", "--no-progress", "--out", tmp_path / "x")
    assert result.exit_code == 0, result.output
    assert any(line.startswith("no d90: full training scores accuracy") for line in result.output.splitlines())
