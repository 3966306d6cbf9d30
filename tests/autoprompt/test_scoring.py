"""Batched candidate scoring (autoprompt.scoring): packed, cached and shared-slot passes equal full
passes, grouping, out-of-memory back-off."""

from __future__ import annotations

import pytest
import torch

from autoprompt.scoring import Budget, length_groups, score_triggers, slot_groups
from frozen_lm import data as data_mod
from frozen_lm.task import PromptTask
from frozen_lm.testing import tiny_lm

LABELS = "0=terrible,1=great"


# ---------------------------------------------------------------- scoring
@pytest.mark.parametrize("kind,labels", [("llama", LABELS), ("gpt2", "0=terrible|awful movie,1=great"), ("bert", LABELS)])
def test_packed_scoring_equals_full_passes(kind, labels):
    lm = tiny_lm(kind)
    task = PromptTask(lm, "{sentence} [T] [T] the [T] [P]", labels)
    rows = task.encode(data_mod.load("demo:sentiment:dev")).rows
    triggers = torch.randint(5, 200, (7, 3), generator=torch.Generator().manual_seed(0))
    full = score_triggers(task, rows, triggers, packed=False)
    small = score_triggers(task, rows, triggers, packed=kind != "bert", budget=Budget(tokens=300, full_tokens=300))
    torch.testing.assert_close(full[0], small[0], atol=1e-4, rtol=1e-5)
    assert torch.equal(full[1], small[1])
    torch.testing.assert_close(full.margin, small.margin, atol=1e-4, rtol=1e-5)
    assert bool((full.margin <= 0).all())
    # against the plain evaluator, one candidate at a time
    for n in (0, 3):
        lp = task.target_log_prob(lm.logits_at(rows.predict_pos, input_ids=rows.with_triggers(triggers[n]),
                                               attention_mask=rows.attention_mask), rows)
        assert abs(float(lp.sum()) - float(full[0][n])) < 1e-3


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_cached_prefix_scoring_equals_full_passes(kind, monkeypatch):
    """Long packed rows switch to the cached path (prefix key/values once, tails batched): same scores,
    for label words (with the fluency reads) and for target strings, also split across passes."""
    import autoprompt.scoring as scoring

    lm = tiny_lm(kind)
    triggers = torch.randint(5, 200, (9, 3), generator=torch.Generator().manual_seed(1))
    labels = PromptTask(lm, "{sentence} [T] [T] the [T] [P]", "0=terrible|awful movie,1=great")
    target = PromptTask(lm, "write a review . [T] [T] [T] now :", target="a great film")
    for task, data in ((labels, data_mod.load("demo:sentiment:dev")), (target, target.default_data())):
        rows = task.encode(data).rows
        full = score_triggers(task, rows, triggers, packed=False, fluency=not task.is_target)
        assert not scoring.use_cache(lm, rows, triggers.shape[0])  # short rows stay packed
        monkeypatch.setattr(scoring, "CACHED_LENGTH", 0)
        assert scoring.use_cache(lm, rows, triggers.shape[0])
        calls = []
        real = scoring._score_cached
        monkeypatch.setattr(scoring, "_score_cached", lambda *a, calls=calls, real=real, **k: calls.append(1) or real(*a, **k))
        for budget in (None, Budget(tokens=60, full_tokens=60)):  # one pass, then several
            cached = score_triggers(task, rows, triggers, packed=True, budget=budget, fluency=not task.is_target)
            torch.testing.assert_close(full.loglik, cached.loglik, atol=1e-4, rtol=1e-5)
            torch.testing.assert_close(full.fluency, cached.fluency, atol=1e-4, rtol=1e-5)
            assert torch.equal(full.correct, cached.correct)
        assert calls
        monkeypatch.undo()


def _gcg_like(trigger: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """n candidates that each change one random slot of trigger (S,), as GCG's with n_replace=1."""
    g = torch.Generator().manual_seed(seed)
    out = trigger[None].repeat(n, 1)
    out[torch.arange(n), torch.randint(0, trigger.shape[0], (n,), generator=g)] = torch.randint(5, 200, (n,), generator=g)
    return out


@pytest.mark.parametrize("cached", [False, True])
def test_shared_slot_scoring_equals_full_passes(cached, monkeypatch):
    """share=True scores GCG-like candidates in groups whose prefix runs through their common leading
    slots: the same sums as whole-sequence passes, in the candidates' own order, on the packed and the
    cached path, for label words (a field and a word between the slots) and target strings."""
    import autoprompt.scoring as scoring

    if cached:
        monkeypatch.setattr(scoring, "CACHED_LENGTH", 0)
    lm = tiny_lm("llama")
    labels = PromptTask(lm, "{sentence} [T] [T] the [T] [T] [T] [P]", "0=terrible|awful movie,1=great")
    target = PromptTask(lm, "write a review . [T] [T] [T] [T] [T] [T] now :", target="a great film")
    for task, data in ((labels, data_mod.load("demo:sentiment:dev")), (target, target.default_data())):
        rows = task.encode(data).rows
        s = rows.trigger_pos.shape[1]
        triggers = torch.cat([torch.full((1, s), 7), _gcg_like(torch.full((s,), 7), 40, 0),
                              torch.randint(5, 200, (3, s), generator=torch.Generator().manual_seed(2))])
        groups = scoring.slot_groups(rows, triggers)
        assert len(groups) > 1 and any(j > 0 for _, j in groups)
        assert sorted(torch.cat([i for i, _ in groups]).tolist()) == list(range(len(triggers)))
        for index, j in groups:
            assert bool((triggers[index][:, :j] == triggers[index][:1, :j]).all())
        full = score_triggers(task, rows, triggers, packed=False)
        shared = score_triggers(task, rows, triggers, packed=True, share=True)
        torch.testing.assert_close(full.loglik, shared.loglik, atol=1e-4, rtol=1e-5)
        torch.testing.assert_close(full.margin, shared.margin, atol=1e-4, rtol=1e-5)
        assert torch.equal(full.correct, shared.correct)
        assert scoring.use_cache(lm, scoring.share_slots(rows, triggers[groups[-1][0]], groups[-1][1])[0], 8) == cached


def test_slot_groups_keep_one_group_when_nothing_is_shared():
    lm = tiny_lm("llama")
    task = PromptTask(lm, "{sentence} [T] [T] [T] [P]", LABELS)
    rows = task.encode(data_mod.load("demo:sentiment:dev")).rows
    different = torch.randint(5, 200, (32, 3), generator=torch.Generator().manual_seed(0))
    [(index, j)] = slot_groups(rows, different)
    assert j == 0 and len(index) == 32


def test_length_groups_cover_every_example_once_with_padding_trimmed():
    lm = tiny_lm("gpt2")
    task = PromptTask(lm, "{sentence} [T] [P]", "0=terrible|awful movie,1=great")
    rows = task.encode(data_mod.load("demo:sentiment:dev")).rows
    groups = length_groups(rows, n_cand=4, tokens=200)
    assert len(groups) > 1
    assert sum(g.n_examples for g in groups) == rows.n_examples
    assert sorted(sum((g.labels.tolist() for g in groups), [])) == sorted(rows.labels.tolist())
    for g in groups:
        assert g.input_ids.shape[1] == int(g.attention_mask.sum(1).max())
    widths = [int(g.attention_mask.sum(1).max()) for g in groups]
    assert widths == sorted(widths)


def test_scoring_backs_off_on_out_of_memory(monkeypatch):
    lm = tiny_lm("llama")
    task = PromptTask(lm, "{sentence} [T] [T] [P]", LABELS)
    rows = task.encode(data_mod.load("demo:sentiment:dev")).rows
    triggers = torch.randint(5, 200, (5, 2), generator=torch.Generator().manual_seed(1))
    expected = score_triggers(task, rows, triggers)
    real, calls = lm.logits_at, {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] <= 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(*args, **kwargs)

    monkeypatch.setattr(lm, "logits_at", flaky)
    budget = Budget()
    got = score_triggers(task, rows, triggers, budget=budget)
    assert budget.tokens == Budget().tokens // 4
    torch.testing.assert_close(got[0], expected[0], atol=1e-4, rtol=1e-5)
