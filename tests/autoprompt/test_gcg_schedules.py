"""GCG's time-to-target schedules (autoprompt.schedule, GCGConfig.schedule) on tiny models: the values
per step, no trigger scored twice, the distance-regularised gradient, merged swaps, the buffer, the
early stop on greedy success, presets and their errors, the API and the CLI."""

from __future__ import annotations

import pytest
import torch

import autoprompt
import autoprompt.gcg as gcg_module
from autoprompt import GCGConfig, GCGSchedule
from autoprompt.gcg import GCGProposer
from autoprompt.schedule import (
    ScheduledGCG,
    SeenSet,
    merge_swaps,
    ramp_value,
    regularized_gradient,
    reproduces,
)
from frozen_lm import PromptTask, configs
from frozen_lm.errors import UserError
from tests.conftest import assert_user_error

TEMPLATE = "Say yes. [T] [T] [T] [T]"
FAST = {"search_width": 16, "topk": 8}


def target_task(lm, target="great film"):
    return PromptTask(lm, TEMPLATE, target=target)


def greedy_target(lm, n: int = 2) -> str:
    """The text greedy decoding writes after the template with the start trigger ('the' x4)."""
    task = target_task(lm)
    rows = task.encode(task.default_data(), [lm.tokenizer(" the").input_ids[-1]] * 4).rows
    end = int(rows.predict_pos[0, 0]) + 1
    return lm.tokenizer.decode(lm.generate(rows.input_ids[0, :end], n))


# ---------------------------------------------------------------- pure pieces
def test_ramp_values_per_step():
    assert [ramp_value(4, 1, it, 4) for it in range(1, 7)] == [4, 3, 2, 1, 1, 1]
    assert [ramp_value(16, 64, it, 5) for it in range(1, 7)] == [16, 28, 40, 52, 64, 64]
    assert [ramp_value(16, 64, it, 0) for it in (1, 2)] == [64, 64]  # no ramp: the final value throughout
    assert ramp_value(8, 8, 3, 10) == 8


def test_seen_set_is_bounded_and_forgets_the_oldest():
    seen = SeenSet(limit=3)
    seen.add(torch.tensor([[1, 2], [3, 4], [1, 2]]))
    assert len(seen) == 2 and seen.contains(torch.tensor([[1, 2], [4, 3]])).tolist() == [True, False]
    seen.add(torch.tensor([[5, 6], [7, 8]]))
    assert len(seen) == 3 and seen.contains(torch.tensor([[1, 2], [3, 4], [5, 6], [7, 8]])).tolist() == [
        False, True, True, True]


def test_regularized_gradient_weight_zero_keeps_the_ranking_and_a_large_one_keeps_the_token(tiny):
    lm = tiny("gpt2")
    g = torch.Generator().manual_seed(0)
    grad = torch.randn(3, lm.vocab_size, generator=g)
    trigger = torch.tensor([5, 9, 11])
    allowed = torch.ones(lm.vocab_size, dtype=torch.bool)
    plain = regularized_gradient(grad, trigger, lm.embedding_matrix, 0.0, allowed)
    assert torch.equal(plain.argsort(dim=1), grad.argsort(dim=1))
    near = regularized_gradient(grad, trigger, lm.embedding_matrix, 1e6, allowed)
    assert near.argmin(dim=1).tolist() == trigger.tolist()  # distance 0: the slot's own token ranks first


def test_merge_swaps_joins_the_best_single_swaps_in_order():
    trigger = torch.tensor([1, 2, 3, 4])
    ranked = torch.tensor([[9, 2, 3, 4], [1, 8, 3, 4], [7, 2, 3, 4], [1, 2, 3, 6]])
    merged = merge_swaps(trigger, ranked, 4)
    assert merged.tolist() == [[9, 8, 3, 4], [9, 8, 3, 6]]  # slot 0 keeps the better swap (9, not 7)
    assert merge_swaps(trigger, ranked, 2).tolist() == [[9, 8, 3, 4]]
    assert merge_swaps(trigger, ranked[:1], 3).shape == (0, 4)


# ---------------------------------------------------------------- config
def test_presets_fill_the_switches_and_given_switches_win():
    plain = GCGConfig(search_width=64)
    assert plain.schedule is None
    acg = GCGConfig(search_width=64, schedule="acg").schedule
    assert acg.preset == "acg" and acg.active and acg.search_width_start == 16 and acg.ramp > 0
    assert acg.repeats and acg.history > 0 and acg.stop_on_success and acg.n_replace_start == 4 and acg.merge == 0
    fast = GCGConfig(search_width=64, schedule="fast").schedule
    assert fast.merge >= 2 and fast.repeats is False and fast.search_width_start == 32 and fast.stop_on_success
    mine = GCGConfig(search_width=64, schedule=GCGSchedule(preset="acg", history=2, stop_on_success=False)).schedule
    assert mine.history == 2 and not mine.stop_on_success and mine.search_width_start == 16
    none = GCGConfig(schedule="none").schedule
    assert not none.active and none.repeats and none.merge == 0
    assert GCGConfig(schedule="igcg").schedule.merge >= 2 and GCGConfig(schedule="faster").schedule.distance_weight > 0
    again = configs.from_dict(GCGConfig, configs.to_dict(GCGConfig(search_width=64, schedule="all")))
    assert again == GCGConfig(search_width=64, schedule="all")


@pytest.mark.parametrize("values, fragment", [
    ({"preset": "quick"}, "GCGSchedule.preset is 'quick'; choose one of: none, acg"),
    ({"n_replace_start": 0}, "GCGSchedule.n_replace_start must be at least 1, got 0"),
    ({"search_width_start": 0}, "GCGSchedule.search_width_start must be at least 1"),
    ({"ramp": -1}, "GCGSchedule.ramp must be 0 or more"),
    ({"merge": 1}, "GCGSchedule.merge must be 0 (off) or at least 2"),
    ({"distance_weight": -0.5}, "GCGSchedule.distance_weight must be 0 or more"),
])
def test_schedule_errors_name_the_field(values, fragment):
    with pytest.raises(UserError) as e:
        configs.from_dict(GCGConfig, {"schedule": values})
    assert fragment in str(e.value)


def test_history_and_buffer_size_are_one_or_the_other():
    with pytest.raises(UserError, match="GCGSchedule.history is a buffer of its own; give it or GCGConfig.buffer_size"):
        GCGConfig(buffer_size=4, schedule=GCGSchedule(history=3))
    assert GCGConfig(buffer_size=4, schedule="faster").schedule.history == 0


# ---------------------------------------------------------------- runs
def test_no_schedule_and_the_none_preset_are_plain_gcg(tiny, monkeypatch):
    task = target_task(tiny("gpt2"))
    used = []
    monkeypatch.setattr(autoprompt, "fit_search", lambda run, proposer: used.append(type(proposer)) or real(run, proposer))
    real = autoprompt.fit.fit_search
    a = autoprompt.search(task, None, None, GCGConfig(iters=3, **FAST), progress=False)
    b = autoprompt.search(task, None, None, GCGConfig(iters=3, schedule="none", **FAST), progress=False)
    assert used == [GCGProposer, GCGProposer]
    assert a.trigger_ids == b.trigger_ids and [h["trigger_ids"] for h in a.history] == [h["trigger_ids"] for h in b.history]
    assert "search_width" not in a.history[0]


def test_width_and_n_replace_follow_the_schedule_per_step(tiny):
    task = target_task(tiny("gpt2"))
    cfg = GCGConfig(iters=6, search_width=20, topk=16, n_replace=1, filter_retokenized=False,
                    schedule=GCGSchedule(n_replace_start=4, search_width_start=8, ramp=4))
    r = autoprompt.search(task, None, None, cfg, progress=False)
    assert [h["search_width"] for h in r.history] == [ramp_value(8, 20, it, 4) for it in range(1, 7)] == [8, 12, 16, 20, 20, 20]
    assert [h["n_replace"] for h in r.history] == [4, 3, 2, 1, 1, 1]
    assert all(h["n_candidates"] <= h["search_width"] for h in r.history)
    first = r.history[0]
    changed = [sum(a != b for a, b in zip(t, r.start_ids)) for t in [first["trigger_ids"]]]
    assert changed[0] in (0, 4)  # the first iteration's candidates change 4 slots (or the start is kept)


def test_no_trigger_is_ever_scored_twice(tiny, monkeypatch):
    task = target_task(tiny("gpt2"))
    scored = []
    real = gcg_module.score_triggers

    def spy(task, rows, triggers, *args, **kwargs):
        scored.extend(tuple(t) for t in triggers.tolist())
        return real(task, rows, triggers, *args, **kwargs)

    monkeypatch.setattr(gcg_module, "score_triggers", spy)
    cfg = GCGConfig(iters=8, search_width=12, topk=4, schedule=GCGSchedule(repeats=False, history=3, merge=3))
    r = autoprompt.search(task, None, None, cfg, progress=False)
    assert len(r.history) == 8 and len(scored) > 8 * 4
    assert len(scored) == len(set(scored))  # never scored twice, across iterations, buffer and merges included
    assert sum(h["n_scored"] for h in r.history) == len(scored)
    scored.clear()
    autoprompt.search(task, None, None, GCGConfig(iters=8, search_width=12, topk=4, buffer_size=3), progress=False)
    assert len(scored) > len(set(scored))  # plain GCG rescores its buffer every iteration


def test_the_buffer_keeps_the_best_triggers_ever_scored(tiny):
    task = target_task(tiny("gpt2"))
    cfg = GCGConfig(iters=6, search_width=8, topk=8, schedule=GCGSchedule(history=4, repeats=False))
    r = autoprompt.search(task, None, None, cfg, progress=False)
    losses = [h["train_loss"] for h in r.history]
    assert all(b <= a + 1e-6 for a, b in zip(losses, losses[1:]))  # the kept trigger is the best ever scored
    assert r.tensors["beam"].shape == (4, 4) and torch.equal(r.tensors["beam"][0], torch.tensor(r.history[-1]["trigger_ids"]))


def test_merged_swaps_are_scored_and_can_win(tiny):
    task = target_task(tiny("gpt2"))
    cfg = GCGConfig(iters=5, search_width=16, topk=8, schedule=GCGSchedule(merge=4))
    r = autoprompt.search(task, None, None, cfg, progress=False)
    assert all(h["n_merged"] >= 0 for h in r.history) and any(h["n_merged"] > 0 for h in r.history)
    assert all(h["n_scored"] == h["n_candidates"] + h["n_merged"] + (1 if h["iteration"] == 1 else 0) for h in r.history)


def test_distance_weight_changes_the_candidates(tiny):
    task = target_task(tiny("gpt2"))
    plain = autoprompt.search(task, None, None, GCGConfig(iters=3, **FAST), progress=False)
    near = autoprompt.search(task, None, None, GCGConfig(iters=3, schedule=GCGSchedule(distance_weight=50.0), **FAST),
                             progress=False)
    assert [h["trigger_ids"] for h in plain.history] != [h["trigger_ids"] for h in near.history]


def test_stop_on_success_stops_once_greedy_generation_reproduces_the_target(tiny):
    lm = tiny("gpt2")
    task = target_task(lm, greedy_target(lm))  # the start trigger already makes the model write it
    go_on = GCGConfig(iters=3, schedule=GCGSchedule(history=1, stop_on_success=False), **FAST)
    r = autoprompt.search(task, None, None, go_on, progress=False)
    assert len(r.history) == 3 and r.history[0].get("success") is True
    assert reproduces(task, task.encode(task.default_data()).rows, torch.tensor(r.history[0]["trigger_ids"]))
    stop = autoprompt.search(task, None, None, GCGConfig(iters=5, schedule=GCGSchedule(stop_on_success=True), **FAST),
                             progress=False)
    assert len(stop.history) == 1 and stop.history[-1]["success"] and stop.status == "done"
    assert stop.metrics["generations"][0]["reproduces"]


def test_success_is_not_claimed_without_greedy_reproduction(tiny, monkeypatch):
    lm = tiny("gpt2")
    task = target_task(lm, greedy_target(lm))
    monkeypatch.setattr("autoprompt.schedule.reproduces", lambda task, rows, trigger: False)
    r = autoprompt.search(task, None, None, GCGConfig(iters=2, schedule=GCGSchedule(stop_on_success=True), **FAST),
                          progress=False)
    assert len(r.history) == 2 and not any(h.get("success") for h in r.history)


def test_a_scheduled_run_resumes_where_it_stopped(tiny, tmp_path):
    task = target_task(tiny("gpt2"))
    cfg = GCGConfig(iters=4, schedule="all", **FAST)
    whole = autoprompt.search(task, None, None, cfg, progress=False)
    autoprompt.search(task, None, None, GCGConfig(iters=2, schedule="all", **FAST), out=tmp_path / "r", progress=False)
    more = autoprompt.search(task, None, None, cfg, out=tmp_path / "r", resume=tmp_path / "r", progress=False)
    assert len(more.history) == 4 and more.history[:2] == [
        {**h, "seconds": more.history[i]["seconds"], "gradient_s": more.history[i]["gradient_s"],
         "scoring_s": more.history[i]["scoring_s"], "dev_s": more.history[i]["dev_s"]} for i, h in enumerate(whole.history[:2])]
    assert more.config.schedule == cfg.schedule


def test_cumulative_seconds_include_scoring(tiny):
    r = autoprompt.search(target_task(tiny("gpt2")), None, None, GCGConfig(iters=3, schedule="acg", **FAST),
                          progress=False)
    for h in r.history:
        assert h["seconds"] >= h["gradient_s"] + h["scoring_s"] - 1e-9 and h["scoring_s"] > 0


def test_cli_schedule_flags(cli, tiny_folder, tmp_path):
    model = tiny_folder("gpt2")
    common = ["search", "--method", "gcg", "--model", model, "--template", TEMPLATE, "--target", "great film",
              "--iters", "3", "--search-width", "8", "--topk", "8", "--no-progress"]
    r = cli(*common, "--schedule", "acg", "--history", "2", "--merge", "3", "--no-repeats", "--out", tmp_path / "a")
    assert r.exit_code == 0, r.output
    saved = autoprompt.SearchResult.load(tmp_path / "a")
    assert saved.config.schedule.preset == "acg" and saved.config.schedule.history == 2 and saved.config.schedule.merge == 3
    assert "search_width" in saved.history[0]
    assert_user_error(cli(*common, "--n-replace-start", "0", "--out", tmp_path / "b"),
                      "--n-replace-start must be at least 1, got 0")
    assert_user_error(cli(*common, "--merge", "1", "--out", tmp_path / "c"), "--merge must be 0 (off) or at least 2")
    assert_user_error(cli(*common, "--history", "2", "--buffer-size", "3", "--out", tmp_path / "d"),
                      "--history is a buffer of its own; give it or --buffer-size 3")


def test_scheduled_proposer_is_used_for_an_active_schedule(tiny, monkeypatch):
    task = target_task(tiny("gpt2"))
    used = []
    real = autoprompt.fit.fit_search
    monkeypatch.setattr(autoprompt, "fit_search", lambda run, proposer: used.append(type(proposer)) or real(run, proposer))
    autoprompt.search(task, None, None, GCGConfig(iters=1, schedule="faster", **FAST), progress=False)
    assert used == [ScheduledGCG]
