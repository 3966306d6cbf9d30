"""autoprompt.models: one prompt searched for several models (search(models=)). Two tiny Llamas
(different seeds, one word-level tokenizer) add their gradients; a tiny GPT-2 (byte-level BPE)
scores each candidate as text; same seed, same result; resume and its refusals."""

from __future__ import annotations

import pytest
import torch

import autoprompt
from autoprompt.config import AutoPromptConfig, GCGConfig
from autoprompt.hotflip import HotFlip
from autoprompt.models import MultiSearcher, TextModel
from autoprompt.search import Searcher
from frozen_lm import PromptTask, evaluate, load_result
from frozen_lm import data as data_mod
from frozen_lm.errors import UserError
from frozen_lm.evaluate import Bound, score
from frozen_lm.model import FrozenLM
from frozen_lm.testing import save_tiny, tiny_lm

LABELS = {"0": "terrible", "1": "great"}
TRIG = "{sentence} [T] [T] [T] [P]"
TRAIN, DEV = "demo:sentiment:train", "demo:sentiment:dev"


@pytest.fixture(scope="module")
def llama1():
    return tiny_lm("llama", seed=1)


def numbers(history: list[dict]) -> list[dict]:
    """A search history without its timings."""
    return [{k: v for k, v in h.items() if not (k.endswith("_s") or k == "seconds")} for h in history]


def searchers(tiny, llama1, cfg):
    """(the two-model searcher, the first model's alone, the second's alone) on the same splits."""
    tasks = [PromptTask(lm, TRIG, LABELS) for lm in (tiny("llama"), llama1)]
    enc = [(t.encode(TRAIN), t.encode(DEV)) for t in tasks]
    both = MultiSearcher(tasks[0], cfg, HotFlip(cfg), *enc[0], [(tasks[1], *enc[1])], [], TRAIN, DEV)
    alone = [Searcher(t, cfg, HotFlip(cfg), *e) for t, e in zip(tasks, enc)]
    return both, alone


def test_two_model_gradient_is_the_sum_of_the_single_model_gradients(tiny, llama1):
    cfg = AutoPromptConfig(batch_size=8, accumulation_steps=2)
    both, (first, second) = searchers(tiny, llama1, cfg)
    trigger = torch.tensor([5, 6, 7])
    batches = [torch.arange(0, 8), torch.arange(8, 16)]
    grad, loss = both.gradient(trigger, batches)
    g1, l1 = first.gradient(trigger, batches)
    g2, l2 = second.gradient(trigger, batches)
    assert torch.allclose(grad, g1 + g2, atol=1e-6) and abs(loss - (l1 + l2) / 2) < 1e-9
    assert not torch.allclose(g1, g2)  # the second model's weights do count


def test_scores_are_the_mean_over_the_models(tiny, llama1):
    cfg = AutoPromptConfig(loss="vocab")
    both, (first, second) = searchers(tiny, llama1, cfg)
    pool, idx = torch.tensor([[5, 6, 7], [8, 9, 10]]), torch.arange(0, 6)
    both.eval_idx = idx
    got = both.score_pool(first.train.subset(idx), pool, 1, torch.Generator())
    a = first.score_pool(first.train.subset(idx), pool, 1, torch.Generator())
    b = second.score_pool(second.train.subset(idx), pool, 1, torch.Generator())
    assert torch.allclose(got.loglik, (a.loglik + b.loglik) / 2)
    assert torch.allclose(got.correct, (a.correct + b.correct).double() / 2)
    dev, ll = both.dev_score(pool[0])
    assert dev == pytest.approx((first.dev_score(pool[0])[0] + second.dev_score(pool[0])[0]) / 2)


def test_worst_gains_take_each_candidates_smallest_gain_over_the_current_trigger():
    from autoprompt.models import worst_gains

    values = [torch.tensor([1.0, 3.0, 0.5, float("-inf")]), torch.tensor([-2.0, -1.5, 0.0, 4.0])]
    got = worst_gains(values, [1.0, -2.0])
    assert got.tolist() == [0.0, 0.5, -0.5, float("-inf")]  # the current: 0; unscored stays last


def test_score_mix_worst_ranks_by_the_smaller_gain_on_the_same_rows(tiny, llama1):
    cfg = AutoPromptConfig(loss="vocab", score_mix="worst")
    both, (first, second) = searchers(tiny, llama1, cfg)
    pool, idx = torch.tensor([[5, 6, 7], [8, 9, 10], [5, 9, 7], [11, 6, 12]]), torch.arange(0, 6)
    both.eval_idx = idx
    got = both.score_pool(first.train.subset(idx), pool, 1, torch.Generator())
    a = first.score_pool(first.train.subset(idx), pool, 1, torch.Generator())
    b = second.score_pool(second.train.subset(idx), pool, 1, torch.Generator())
    gains = torch.minimum(a.loglik - a.loglik[0], b.loglik - b.loglik[0])
    assert torch.allclose(got.worst_gain, gains) and got.worst_gain[0] == 0
    assert torch.allclose(got.loglik, (a.loglik + b.loglik) / 2)  # the mean is still recorded
    assert torch.equal(both._rank(got), got.worst_gain)
    # a merge's triggers (n_beam 0, no current trigger in that pool) are scored against the kept current
    merged = both.score_pool(first.train.subset(idx), pool[2:], 0, torch.Generator())
    assert torch.allclose(merged.worst_gain, gains[2:])
    mean = AutoPromptConfig(loss="vocab")
    assert torch.allclose(searchers(tiny, llama1, mean)[0]._rank(got), got.loglik)  # the default: the mean


def test_a_search_with_score_mix_worst_keeps_only_swaps_that_help_every_model(tiny, llama1):
    task = PromptTask(tiny("llama"), TRIG, LABELS)
    cfg = AutoPromptConfig(iters=4, num_cand=6, seed=1, loss="vocab", score_mix="worst")
    runs = [autoprompt.search(task, TRAIN, DEV, cfg, progress=False, models=[llama1, tiny("gpt2")]) for _ in range(2)]
    assert numbers(runs[0].history) == numbers(runs[1].history)  # same seed, same result
    assert runs[0].config.score_mix == "worst"
    both = MultiSearcher(task, cfg, HotFlip(cfg), task.encode(TRAIN), task.encode(DEV),
                         [(PromptTask(llama1, TRIG, LABELS), *[PromptTask(llama1, TRIG, LABELS).encode(x)
                                                              for x in (TRAIN, DEV)])],
                         [PromptTask(tiny("gpt2"), TRIG, LABELS)], TRAIN, DEV)
    assert any(h["accepted"] for h in runs[0].history[1:])
    current = torch.tensor(runs[0].history[0]["trigger_ids"])  # after the first iteration
    for h in runs[0].history[1:]:
        if h["accepted"]:  # the kept swap raised every model's log-likelihood on that iteration's batch
            _, _, idx = both._batches(h["iteration"])
            both.eval_idx = idx
            got = both.score_pool(both.train.subset(idx), torch.stack([current, torch.tensor(h["trigger_ids"])]),
                                  1, torch.Generator())
            assert got.worst_gain[1] > 0
        current = torch.tensor(h["trigger_ids"])
    with pytest.raises(UserError, match="score_mix"):
        AutoPromptConfig(score_mix="max").check_search()


def test_a_search_over_two_tokenizers_starts_from_a_written_prompt(tiny):
    task = PromptTask(tiny("llama"), TRIG, LABELS)
    written = "the movie {sentence} It was [P] ."
    cfg = AutoPromptConfig(iters=2, num_cand=4, seed=0, from_template=written, keep="It,was")
    r = autoprompt.search(task, TRAIN, DEV, cfg, progress=False, models=[tiny("gpt2")])
    tok = task.lm.tokenizer
    assert r.start_ids == tok("the movie", add_special_tokens=False).input_ids  # its words are the slots
    assert r.filled_template.endswith("{sentence} It was [P] .")  # the kept words stay
    assert len(r.history) == 2 and [m["name"] for m in r.models] == [tiny("gpt2").name]


def test_a_model_of_another_tokenizer_scores_the_candidates_text(tiny):
    source = PromptTask(tiny("llama"), TRIG, LABELS)
    text = TextModel(PromptTask(tiny("gpt2"), TRIG, LABELS), source, TRAIN, DEV)
    pool = torch.tensor([[5, 6, 7], [40, 41, 42], [100, 101, 102]])
    idx = torch.arange(3, 13)
    got = text.score(idx, pool, "vocab")
    rows = data_mod.load(TRAIN).rows
    for i, trigger in enumerate(pool):
        filled = text.task_of(trigger)
        assert filled.template.n_triggers == 0 and filled.lm is tiny("gpt2")
        plain = evaluate(filled, [rows[int(j)] for j in idx])
        assert int(got.correct[i]) == round(plain["accuracy"] * 10)
        s = score(Bound(filled), filled.encode([rows[int(j)] for j in idx]).rows, 4)
        assert float(got.loglik[i]) == pytest.approx(s.loglik, rel=1e-4, abs=1e-4)
    assert text.drift(pool[0])["n_tokens_before"] == 3


def test_search_on_three_models_same_seed_same_result(tiny, llama1):
    task = PromptTask(tiny("llama"), TRIG, LABELS)
    cfg = AutoPromptConfig(iters=3, num_cand=5, seed=4)
    r = autoprompt.search(task, TRAIN, DEV, cfg, progress=False, models=[llama1, tiny("gpt2")])
    again = autoprompt.search(task, TRAIN, DEV, cfg, progress=False, models=[llama1, tiny("gpt2")])
    assert r.trigger_ids == again.trigger_ids and numbers(r.history) == numbers(again.history)
    assert [m["tokenizer"] for m in r.models] == ["shared", "text"] and r.models[1]["name"] == "tiny-gpt2"
    rows = r.metrics["dev_models"]
    assert [row["tokenizer"] for row in rows] == ["first", "shared", "text"] and "drift" in rows[2]
    assert r.metrics["dev_mean"] == pytest.approx(sum(row["accuracy"] for row in rows) / 3)
    assert rows[0]["accuracy"] == r.metrics["dev"]["accuracy"]
    one = autoprompt.search(task, TRAIN, DEV, cfg, progress=False)
    assert one.models == [] and "dev_models" not in one.metrics  # one model: as before


def test_gcg_on_two_tokenizers_and_refusals(tiny):
    task = PromptTask(tiny("llama"), TRIG, LABELS)
    r = autoprompt.search(task, TRAIN, DEV, GCGConfig(iters=2, search_width=8, topk=8), progress=False,
                          models=[tiny("gpt2")])
    assert r.iterations == 2 and r.models[0]["tokenizer"] == "text"
    probe = GCGConfig(iters=1, probe_sampling={"draft_model": "nowhere"})
    with pytest.raises(UserError, match="probe_sampling.*models="):
        autoprompt.search(task, TRAIN, DEV, probe, progress=False, models=[tiny("gpt2")])
    with pytest.raises(UserError, match="models= takes models"):
        autoprompt.search(task, TRAIN, DEV, AutoPromptConfig(iters=1), progress=False, models=[3])


def test_resume_continues_and_refuses_other_models(tiny, tmp_path):
    folders = {k: str(save_tiny(k, tmp_path / k, seed=s)) for k, s in (("llama", 0), ("gpt2", 0))}
    first, other = FrozenLM.load(folders["llama"], "cpu"), FrozenLM.load(folders["gpt2"], "cpu")
    task = PromptTask(first, TRIG, LABELS)
    whole = autoprompt.search(task, TRAIN, DEV, AutoPromptConfig(iters=3, seed=1), progress=False, models=[other])
    autoprompt.search(task, TRAIN, DEV, AutoPromptConfig(iters=2, seed=1), progress=False, models=[other],
                      out=tmp_path / "run")
    given = autoprompt.search(task, TRAIN, DEV, AutoPromptConfig(iters=3, seed=1), progress=False, models=[other],
                              resume=tmp_path / "run")
    assert given.trigger_ids == whole.trigger_ids and given.best_dev == whole.best_dev
    # without models=: the saved run's models, loaded by name (a folder here)
    saved = autoprompt.search(task, TRAIN, DEV, AutoPromptConfig(iters=3, seed=1), progress=False,
                              resume=tmp_path / "run")
    assert saved.trigger_ids == whole.trigger_ids and saved.models == whole.models
    with pytest.raises(UserError, match=r"resume: .*models= gives \[tiny-llama\]"):
        autoprompt.search(task, TRAIN, DEV, AutoPromptConfig(iters=4, seed=1), progress=False,
                          models=[tiny("llama")], resume=tmp_path / "run")
    with pytest.raises(UserError, match=r"resume: .*models= gives \[\]"):
        autoprompt.search(task, TRAIN, DEV, AutoPromptConfig(iters=4, seed=1), progress=False, models=[],
                          resume=tmp_path / "run")


def test_a_saved_run_of_unloadable_models_asks_for_them(tiny, tmp_path):
    task = PromptTask(tiny("llama"), TRIG, LABELS)
    autoprompt.search(task, TRAIN, DEV, AutoPromptConfig(iters=1), progress=False, models=[tiny("gpt2")],
                      out=tmp_path / "run")
    with pytest.raises(UserError, match="could not be loaded by name.*give them as models="):
        autoprompt.search(task, TRAIN, DEV, AutoPromptConfig(iters=2), progress=False, resume=tmp_path / "run")
    moved = evaluate(PromptTask(tiny("gpt2"), TRIG, LABELS), DEV, prompt=load_result(tmp_path / "run"))
    assert moved["transfer"]["drift"]["how"] == "text"


def test_in_turns_takes_each_models_best_tokens_and_skips_a_model_with_no_say():
    from autoprompt.candidates import hotflip_candidates
    from autoprompt.models import in_turns

    allowed = torch.tensor([True] * 7 + [False])
    a = torch.tensor([[-90.0, -80.0, -70.0, -60.0, 0.0, 0.0, 0.0, -1000.0]])  # a large gradient: it alone would choose
    b = torch.tensor([[0.0, 0.0, 0.0, 0.0, -0.3, -0.2, -0.1, 0.0]])
    assert hotflip_candidates(a + b, allowed, 4).tolist() == [[0, 1, 2, 3]]
    assert sorted(hotflip_candidates(in_turns([a, b], allowed), allowed, 4)[0].tolist()) == [0, 1, 4, 5]
    assert sorted(hotflip_candidates(in_turns([b, a], allowed), allowed, 4)[0].tolist()) == [0, 1, 4, 5]
    assert hotflip_candidates(in_turns([a, b * 1e6], allowed), allowed, 2)[0].tolist() in ([0, 4], [4, 0])  # scale: no say
    flat = torch.full_like(b, 5.0)  # a slot of several tokens on another tokenizer: that model has no say there
    assert torch.equal(in_turns([a, flat], allowed).argsort(dim=1)[:, :7], in_turns([a], allowed).argsort(dim=1)[:, :7])
    one, two = torch.tensor([[-5.0, -4.0, 0, 0, 0, 0, 0, 0]]), torch.tensor([[-4.0, 0, -6.0, 0, 0, 0, 0, 0]])
    assert hotflip_candidates(in_turns([one, two], allowed), allowed, 2)[0].tolist() == [0, 2]  # both models' best
    assert hotflip_candidates(in_turns([one, two], allowed), allowed, 1)[0].tolist() == [0]  # a tie: the agreed one


def test_gradient_mix_turns_lets_each_model_propose(tiny, llama1):
    from autoprompt.models import in_turns

    cfg = AutoPromptConfig(batch_size=8, gradient_mix="turns")
    both, (first, second) = searchers(tiny, llama1, cfg)
    trigger, batches = torch.tensor([5, 6, 7]), [torch.arange(0, 8)]
    grad, loss = both.gradient(trigger, batches)
    g1, l1 = first.gradient(trigger, batches)
    g2, l2 = second.gradient(trigger, batches)
    assert torch.equal(grad, in_turns([g1, g2], both.allowed)) and abs(loss - (l1 + l2) / 2) < 1e-9
    runs = [autoprompt.search(PromptTask(tiny("llama"), TRIG, LABELS), TRAIN, DEV,
                              AutoPromptConfig(iters=3, num_cand=4, seed=2, gradient_mix=mix), progress=False,
                              models=[tiny("gpt2")]) for mix in ("turns", "turns")]
    assert [h["trigger_ids"] for h in runs[0].history] == [h["trigger_ids"] for h in runs[1].history]  # same seed
    assert runs[0].config.gradient_mix == "turns"  # recorded
    with pytest.raises(UserError, match="gradient_mix"):
        AutoPromptConfig(gradient_mix="max").check_search()
