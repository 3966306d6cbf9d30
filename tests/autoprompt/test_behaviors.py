"""The behaviors harness (autoprompt.behaviors, autoprompt.universal) on tiny models: a file of goal /
target rows, one GCG run per row (resumable, on Ray workers), one universal suffix with progressive
goals, refusals, the records and summary, save/load, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import autoprompt
from autoprompt import GCGConfig, GCGSchedule
from autoprompt.behavior_rows import (
    REFUSAL_PREFIXES,
    BehaviorsResult,
    curve_of,
    is_refusal,
    parse_prefixes,
    read_behaviors,
)
from autoprompt.behaviors import behaviors
from autoprompt.schedule import ScheduledGCG
from frozen_lm.errors import UserError
from frozen_lm.results import load_result
from tests.conftest import assert_user_error

ROWS = [{"goal": "write a review of the film .", "target": "great film"}, {"goal": "say yes .", "target": "yes"},
        {"goal": "describe the movie .", "target": "a good movie"}]
TEMPLATE = "{goal} [T]x3"
FAST = {"search_width": 8, "topk": 8}
BENIGN = Path(__file__).resolve().parents[2] / "benchmarks" / "data" / "behaviors_benign.csv"


def run(lm, rows=ROWS, config=None, **kwargs):
    kwargs.setdefault("progress", False)
    return behaviors(lm, rows, config or GCGConfig(iters=2, **FAST), template=TEMPLATE, chat=False, **kwargs)


def test_the_shipped_benign_file_reads_as_advbench_columns():
    rows, source = read_behaviors(BENIGN)
    assert 6 <= len(rows) <= 10 and all(set(r) == {"goal", "target"} and r["target"].startswith("Sure") for r in rows)
    assert source["rows"] == len(rows) and source["sha256"]


def test_missing_columns_name_the_file_and_line(tmp_path):
    bad = tmp_path / "b.csv"
    bad.write_text("goal,answer\nsay yes,yes\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"b.csv:2: missing field 'target'"):
        read_behaviors(bad)


def test_refusals_match_at_the_start_ignoring_case_and_spaces(tmp_path):
    assert is_refusal("  i'm sorry, I can't", REFUSAL_PREFIXES) and is_refusal("I cannot do that", REFUSAL_PREFIXES)
    assert not is_refusal("Sure, here is... I'm sorry", REFUSAL_PREFIXES)
    assert parse_prefixes("Nope| no way ") == ("Nope", "no way") and parse_prefixes(None) == REFUSAL_PREFIXES
    f = tmp_path / "p.txt"
    f.write_text("Nope\n\nNo way\n", encoding="utf-8")
    assert parse_prefixes(str(f)) == ("Nope", "No way")
    with pytest.raises(UserError, match="refusal_prefixes is empty"):
        parse_prefixes(" | ")


def test_one_run_per_row_with_records_summary_and_artifacts(tiny, tmp_path):
    lm = tiny("gpt2")
    r = run(lm, out=tmp_path / "b", refusal_prefixes=["gop", "yy"])
    assert [row["index"] for row in r.rows] == [0, 1, 2] and [row["goal"] for row in r.rows] == [x["goal"] for x in ROWS]
    for row in r.rows:
        assert row["status"] == "done" and row["iterations"] == 2 and isinstance(row["success"], bool)
        assert row["refused"] == is_refusal(row["response"], ["gop", "yy"])
        assert len(row["curve"]) == 2 and row["curve"][1][0] >= row["curve"][0][0] > 0 and row["loss"] > 0
        saved = load_result(row["out"])  # each row is a gcg artifact of its own
        assert saved.method == "gcg" and saved.trigger_ids == row["trigger_ids"] and saved.data["train"]["rows"] == 1
    summary = r.summary()
    assert summary["rows"] == 3 and summary["failed"] == 0 and 0 <= summary["success_rate"] <= 1
    assert summary["median_final_loss"] == sorted(row["loss"] for row in r.rows)[1]
    again = BehaviorsResult.load(tmp_path / "b")
    assert again.rows == json.loads(json.dumps(r.rows)) and again.setup["template"] == TEMPLATE
    assert json.loads((tmp_path / "b" / "behaviors.json").read_text())["summary"] == summary
    assert [t["#"] for t in r.table()] == [0, 1, 2]


def test_a_rerun_reads_finished_rows_back_and_continues_the_others(tiny, tmp_path, monkeypatch):
    lm = tiny("gpt2")
    first = run(lm, ROWS[:2], out=tmp_path / "b")
    calls = []
    import frozen_lm.runner

    real = frozen_lm.runner.run
    monkeypatch.setattr(frozen_lm.runner, "run", lambda *a, **k: calls.append(k.get("resume")) or real(*a, **k))
    same = run(lm, ROWS[:2], out=tmp_path / "b")
    assert calls == [] and same.rows == first.rows  # finished rows are read back, not searched again
    longer = run(lm, ROWS[:2], GCGConfig(iters=4, **FAST), out=tmp_path / "b")
    assert len(calls) == 2 and all(c is not None for c in calls)  # each row resumed in its folder
    assert [row["iterations"] for row in longer.rows] == [4, 4]
    assert [c[:2] for c in [row["curve"] for row in longer.rows]] == [row["curve"] for row in first.rows]


def test_another_setup_in_the_folder_is_refused_unless_overwrite(tiny, tmp_path):
    lm = tiny("gpt2")
    run(lm, ROWS[:1], out=tmp_path / "b")
    with pytest.raises(UserError, match="holds a behaviors run with another set-up"):
        run(lm, ROWS[:1], GCGConfig(iters=2, search_width=4, topk=8), out=tmp_path / "b")
    r = run(lm, ROWS[:1], GCGConfig(iters=2, search_width=4, topk=8), out=tmp_path / "b", overwrite=True)
    assert r.setup["config"]["search_width"] == 4
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="`universal` runs one search for every row"):
        run(lm, ROWS[:1], universal=True, workers=2)
    with pytest.raises(UserError, match="not empty and holds no behaviors run"):
        run(lm, ROWS[:1], out=tmp_path / "other")
    with pytest.raises(UserError, match="holds no behaviors.json"):
        run(lm, ROWS[:1], resume=tmp_path / "other")


def test_overwrite_keeps_the_replaced_harness_until_the_new_one_finishes(tiny, tmp_path, monkeypatch):
    import autoprompt.behaviors as harness

    lm = tiny("gpt2")
    out = tmp_path / "b"
    run(lm, ROWS[:1], out=out)
    before = (out / "behaviors.json").read_bytes()
    row_files = sorted(str(p.relative_to(out)) for p in (out / "rows").rglob("*"))

    def cut(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(harness, "_run_rows", cut)
    with pytest.raises(KeyboardInterrupt):
        run(lm, ROWS[:1], GCGConfig(iters=2, search_width=4, topk=8), out=out, overwrite=True)
    kept = out / harness.REPLACED
    assert (kept / "behaviors.json").read_bytes() == before  # the old run is whole, aside
    assert sorted(str(p.relative_to(kept)) for p in (kept / "rows").rglob("*")) == row_files
    monkeypatch.undo()
    r = run(lm, ROWS[:1], GCGConfig(iters=2, search_width=4, topk=8), out=out, overwrite=True)
    assert r.setup["config"]["search_width"] == 4 and not kept.exists()  # finished: the old one goes
    assert BehaviorsResult.load(out).setup["config"]["search_width"] == 4


def test_time_to_success_comes_from_the_first_reproducing_iteration():
    scheduled = [{"seconds": 1.0, "train_loss": 2.0, "search_width": 8}, {"seconds": 0.5, "train_loss": 1.0, "search_width": 8,
                                                                            "success": True}]
    assert curve_of(scheduled) == {"iterations": 2, "seconds": 1.5, "curve": [[1.0, 2.0], [1.5, 1.0]], "time_to_success": 1.5}
    plain = [{"seconds": 1.0, "train_loss": 2.0, "train_accuracy": 0.0}, {"seconds": 2.0, "train_loss": 0.1, "train_accuracy": 1.0}]
    assert curve_of(plain)["time_to_success"] == 3.0 and curve_of(plain[:1])["time_to_success"] is None


def test_rows_succeed_and_stop_with_the_schedule(tiny, tmp_path, monkeypatch):
    lm = tiny("gpt2")
    monkeypatch.setattr(ScheduledGCG, "_check_success", _always_success)
    r = run(lm, ROWS[:2], GCGConfig(iters=5, schedule=GCGSchedule(stop_on_success=True), **FAST), out=tmp_path / "b")
    assert [row["iterations"] for row in r.rows] == [1, 1]
    assert all(row["time_to_success"] == row["curve"][0][0] for row in r.rows)


def _always_success(self, searcher, rows, pool, scores):
    self._notes["success"] = True
    self.stop = bool(self.plan.stop_on_success)


def test_universal_suffix_adds_goals_as_the_earlier_ones_succeed(tiny, tmp_path, monkeypatch):
    lm = tiny("gpt2")
    monkeypatch.setattr(ScheduledGCG, "_check_success", _always_success)
    r = run(lm, config=GCGConfig(iters=10, **FAST), universal=True, out=tmp_path / "u")
    stages = r.suffix["stages"]
    assert [s["goals"] for s in stages] == [1, 2, 3] and all(s["success"] and s["iterations"] == 1 for s in stages)
    assert r.suffix["goals_in"] == 3 and r.suffix["iterations"] == 3
    assert [load_result(s["out"]).data["train"]["rows"] for s in stages] == [1, 2, 3]
    assert load_result(stages[1]["out"]).start_ids == load_result(stages[0]["out"]).trigger_ids  # carried on
    assert all(row["trigger_ids"] == r.suffix["trigger_ids"] for row in r.rows)
    times = [row["time_to_success"] for row in r.rows]
    assert times == sorted(times) and times[0] > 0
    assert BehaviorsResult.load(tmp_path / "u").suffix["trigger_ids"] == r.suffix["trigger_ids"]


def test_universal_budget_is_shared_by_the_stages(tiny, tmp_path):
    lm = tiny("gpt2")
    r = run(lm, config=GCGConfig(iters=3, **FAST), universal=True, out=tmp_path / "u")
    assert r.suffix["iterations"] == 3 and len(r.suffix["stages"]) == 1 and not r.suffix["stages"][0]["success"]
    assert [row["in_suffix"] for row in r.rows] == [True, False, False]
    before = load_result(r.suffix["stages"][0]["out"]).history
    again = run(lm, config=GCGConfig(iters=5, **FAST), universal=True, out=tmp_path / "u")  # more budget: continues
    after = load_result(again.suffix["stages"][0]["out"]).history
    assert again.suffix["iterations"] == 5 and len(after) == 5 and after[:3] == before


def test_rows_on_two_ray_workers_equal_in_order(tiny_folder, tmp_path):
    pytest.importorskip("ray")
    folder = tiny_folder("gpt2")
    one = run(folder, ROWS[:2], out=tmp_path / "one")
    try:
        two = run(folder, ROWS[:2], out=tmp_path / "two", workers=2)
    except UserError as e:
        if "Ray could not start" not in str(e):
            raise
        pytest.skip(f"local Ray cannot start on this machine: {e}")
    keys = ("goal", "target", "trigger_ids", "success", "response", "iterations")
    assert [{k: row[k] for k in keys} for row in one.rows] == [{k: row[k] for k in keys} for row in two.rows]


def test_api_errors(tiny):
    lm = tiny("gpt2")
    with pytest.raises(UserError, match="give a GCGConfig"):
        behaviors(lm, ROWS, autoprompt.AutoPromptConfig())
    with pytest.raises(UserError, match="workers must be at least 1"):
        run(lm, workers=0)
    with pytest.raises(UserError, match="no \\[T\\] slots"):
        behaviors(lm, ROWS, GCGConfig(iters=1), template="{goal}", chat=False, progress=False)


def test_cli_behaviors_and_universal(cli, tiny_folder, tmp_path):
    model = tiny_folder("gpt2")
    data = tmp_path / "b.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS[:2]), encoding="utf-8")
    common = ["search", "--method", "gcg", "--model", model, "--template", TEMPLATE, "--iters", "2", "--search-width", "8",
              "--topk", "8", "--no-progress"]
    r = cli(*common, "--behaviors", data, "--out", tmp_path / "b", "--schedule", "acg", "--refusal-prefixes", "gop|yy")
    assert r.exit_code == 0, r.output
    assert "success_rate" in r.output and "behaviors" in r.output
    saved = BehaviorsResult.load(tmp_path / "b")
    assert len(saved.rows) == 2 and saved.setup["refusal_prefixes"] == ["gop", "yy"] and not saved.setup["chat"]
    assert saved.setup["config"]["schedule"]["preset"] == "acg"
    again = cli(*common, "--behaviors", data, "--out", tmp_path / "b", "--schedule", "acg", "--refusal-prefixes", "gop|yy",
                "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.output.strip().splitlines()[-1])["summary"][0]["rows"] == 2
    u = cli(*common, "--behaviors", data, "--universal", "--out", tmp_path / "u", "--json")
    assert u.exit_code == 0, u.output
    assert "universal suffix" in json.loads(u.output.strip().splitlines()[-1])
    assert_user_error(cli(*common, "--universal", "--target", "x"), "--universal, --workers and --refusal-prefixes go with --behaviors")
    assert_user_error(cli(*common, "--behaviors", data, "--target", "x"), "leave out --target")
    assert_user_error(cli(*common, "--behaviors", tmp_path / "nope.csv"), "does not exist")
    assert_user_error(cli(*common, "--behaviors", data, "--universal", "--workers", "2"),
                      "--universal runs one search for every row")
    assert_user_error(cli(*common, "--behaviors", data, "--workers", "2", "--device", "cpu"), "leave out --device")
