"""Target strings, GCG (multi-position candidates, buffer, mellowmax, retokenization filter, early stop,
probe sampling) and the fluency term, on tiny models."""

from __future__ import annotations

import json
import math

import pytest
import torch

import autoprompt
from autoprompt import AutoPromptConfig, GCGConfig, ProbeSamplingConfig
from autoprompt.gcg import retokenizes, sample_candidates, slot_windows
from autoprompt.probe import rank_agreement
from autoprompt.scoring import score_triggers
from frozen_lm import PromptTask, evaluate
from frozen_lm.errors import UserError
from frozen_lm.fluency import prompt_perplexity
from frozen_lm.task import mellowmax, target_scores
from frozen_lm.testing import tiny_lm
from tests.conftest import assert_user_error

TEMPLATE = "write a review of the film . [T]x3"


# ---------------------------------------------------------------- target strings
def test_target_rows_score_every_target_token(tiny):
    lm = tiny("gpt2")
    task = PromptTask(lm, TEMPLATE, target="great movie")
    assert task.is_target and task.metric == "exact_match" and task.template.text.endswith("[T] [T] [T][P]")
    rows = task.encode(task.default_data(), [5, 6, 7]).rows
    want = lm.tokenizer("great movie", add_special_tokens=False).input_ids
    assert rows.targets[0].tolist() == want and rows.predict_pos.shape[1] == len(want)
    ids = rows.input_ids[0, : int(rows.attention_mask[0].sum())]
    full = torch.cat([ids, torch.tensor(want[-1:])])  # the row teacher-forces all but the last target token
    with torch.no_grad():
        lp = torch.log_softmax(lm.model(input_ids=full[None]).logits[0].float(), -1)
    start = len(full) - len(want) - 1
    by_hand = [float(lp[start + i, t]) for i, t in enumerate(want)]
    m = evaluate(task, task.default_data(), prompt=lm.tokenizer.decode([5, 6, 7]))
    assert m["loss"] == pytest.approx(-sum(by_hand) / len(want), rel=1e-4)
    hit = all(int(lp[start + i].argmax()) == t for i, t in enumerate(want))
    assert m["exact_match"] == float(hit) and m["n_scored"] == 1


def test_target_task_errors(tiny):
    lm = tiny("gpt2")
    with pytest.raises(UserError, match="target string is empty"):
        PromptTask(lm, TEMPLATE, target="  ")
    with pytest.raises(UserError, match="not both"):
        PromptTask(lm, TEMPLATE, target="a", target_field="b")
    with pytest.raises(UserError, match="replaces label words"):
        PromptTask(lm, TEMPLATE, "0=bad,1=great", target="a")
    with pytest.raises(UserError, match="no \\[T\\] slots"):
        autoprompt.search(PromptTask(lm, "write a review .", target="great"), [{}], [{}], progress=False)


def test_chat_template_places_the_slots_inside_the_user_turn(tiny):
    lm = tiny("gpt2")
    tok = lm.tokenizer
    tok.chat_template = ("{% for m in messages %}<|user|> {{ m['content'] }} <|end|>{% endfor %}"
                         "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    try:
        task = PromptTask(lm, "write a poem . [T]x2", target="great", chat=True)
        assert task.template.text == "<|user|> write a poem . [T] [T] <|end|><|assistant|>[P]"
        rows = task.encode(task.default_data(), [5, 6]).rows
        assert rows.input_ids[0, rows.trigger_pos[0]].tolist() == [5, 6]
        with pytest.raises(UserError, match="assistant's reply starts"):
            PromptTask(lm, "write [P] a poem [T]", target="great", chat=True)
    finally:
        tok.chat_template = None
    plain = PromptTask(lm, "write a poem . [T]x2", target="great", chat=True)  # no chat template: a notice
    assert plain.template.text == "write a poem . [T] [T][P]"


def test_a_newline_before_the_reply_stays_in_the_prompt(tiny):
    """A chat template ending 'assistant\\n' (SmolLM2, Llama 3, ...): the row holds the newline and the
    target follows it, exactly the ids of the rendered text + the target (as nanoGCG builds them)."""
    lm = tiny("gpt2")
    tok = lm.tokenizer
    tok.chat_template = ("{% for m in messages %}<|user|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
                         "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")
    try:
        task = PromptTask(lm, "write a poem . [T]x2", target="great film", chat=True)
        assert not task.template.predict_space and task.template.text.endswith("<|assistant|>\n[P]")
        rows = task.encode(task.default_data(), [5, 6]).rows
        ids = rows.input_ids[0, : int(rows.attention_mask[0].sum())].tolist()
        target = tok("great film", add_special_tokens=False).input_ids
        before = tok("<|user|>\nwrite a poem .", add_special_tokens=False).input_ids
        after = tok("<|end|>\n<|assistant|>\n", add_special_tokens=False).input_ids
        assert ids == before + [5, 6] + after + target[:-1] and rows.targets[0].tolist() == target
    finally:
        tok.chat_template = None


# ---------------------------------------------------------------- GCG pieces
def test_multi_position_candidates():
    trigger = torch.tensor([3, 4, 5, 6])
    grad = torch.zeros(4, 50)
    grad[:, 10:20] = -torch.arange(1, 11, dtype=torch.float)  # tokens 10..19 are each slot's top-10
    allowed = torch.ones(50, dtype=torch.bool)
    cands = sample_candidates(trigger, grad, allowed, 200, 10, 2, torch.Generator().manual_seed(0))
    changed = cands != trigger
    assert cands.shape == (200, 4) and (changed.sum(1) == 2).all()  # two distinct slots, each to a new token
    assert ((cands[changed] >= 10) & (cands[changed] < 20)).all()
    again = sample_candidates(trigger, grad, allowed, 200, 10, 2, torch.Generator().manual_seed(0))
    assert torch.equal(cands, again)
    allowed[10:15] = False  # no disallowed token is ever drawn
    drawn = sample_candidates(trigger, grad, allowed, 500, 5, 1, torch.Generator().manual_seed(1))
    assert not ((drawn >= 10) & (drawn < 15)).any()


def test_mellowmax_matches_its_formula():
    t = torch.tensor([[1.0, 2.0, 3.0], [0.5, -1.0, 0.0]])
    valid = torch.tensor([[True, True, True], [True, True, False]])
    want0 = math.log(sum(math.exp(x) for x in (1.0, 2.0, 3.0)) / 3)
    want1 = math.log((math.exp(0.5) + math.exp(-1.0)) / 2)
    assert mellowmax(t, valid).tolist() == pytest.approx([want0, want1], rel=1e-5, abs=1e-6)
    logits = torch.randn(2, 3, 11)
    targets = torch.tensor([[1, 2, 3], [4, 5, -1]])
    ll, _, _ = target_scores(logits, targets, "mellowmax")
    label = logits.gather(2, targets.clamp(min=0)[..., None]).squeeze(2)
    assert ll.tolist() == pytest.approx((-mellowmax(-label, targets >= 0)).tolist(), rel=1e-5, abs=1e-6)


def test_retokenization_filter_drops_tokens_that_merge(tiny):
    """Two tokens whose text reads back as a different split are dropped; an honest pair is kept."""
    lm = tiny("gpt2")
    tok = lm.tokenizer
    task = PromptTask(lm, TEMPLATE, target="great")
    rows = task.encode(task.default_data(), [5, 6, 7]).rows
    ids, pos = rows.input_ids[0, : int(rows.attention_mask[0].sum())], rows.trigger_pos[0]
    the = tok(" the", add_special_tokens=False).input_ids
    parts = [tok.convert_tokens_to_ids(p) for p in ("Ġth", "e")]
    assert len(the) == 1 and tok.unk_token_id not in parts  # ' th' + 'e' decode to ' the', one token
    honest = torch.tensor([[the[0], the[0], the[0]]])
    merging = torch.tensor([[parts[0], parts[1], the[0]]])
    assert retokenizes(tok, ids, pos, torch.cat([honest, merging])).tolist() == [True, False]
    assert slot_windows(ids, pos) == [(int(pos[0]) - 1, int(pos[-1]) + 2)]


def test_rank_agreement():
    a = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert rank_agreement(a, a * 10) == pytest.approx(1.0) and rank_agreement(a, -a) == pytest.approx(-1.0)


# ---------------------------------------------------------------- the search
def _planted_target(lm, secret: list[int], n: int = 2) -> str:
    """What greedy decoding produces after the template with a secret trigger (so a trigger exists)."""
    task = PromptTask(lm, TEMPLATE, target="x")
    rows = task.encode(task.default_data(), secret).rows
    end = int(rows.predict_pos[0, 0]) + 1
    return lm.tokenizer.decode(lm.generate(rows.input_ids[0, :end], n))


def test_gcg_finds_a_planted_target_and_stops_early():
    lm = tiny_lm("gpt2", seed=2)
    target = _planted_target(lm, [101, 202, 303])
    task = PromptTask(lm, TEMPLATE, target=target)
    cfg = GCGConfig(iters=30, search_width=256, topk=64, n_replace=1, early_stop=True,
                       allow_non_ascii=True, filter_retokenized=False, seed=0)
    r = autoprompt.search(task, task.default_data(), task.default_data(), cfg, progress=False)
    assert r.metrics["dev"]["exact_match"] == 1.0 and r.iterations < 30  # stopped once greedy decoding matched
    assert r.metrics["generations"][0]["reproduces"] and r.metrics["generations"][0]["generated"].startswith(target)
    assert r.metrics["dev"]["loss"] < r.metrics["start_dev"]["loss"]


def test_gcg_buffer_resume_and_same_seed():
    lm = tiny_lm("gpt2")
    task = PromptTask(lm, TEMPLATE, target="great movie")
    data = task.default_data()
    cfg = dict(search_width=32, topk=16, buffer_size=3, seed=4, mellowmax=True)
    full = autoprompt.search(task, data, data, GCGConfig(iters=4, **cfg), progress=False)
    again = autoprompt.search(task, data, data, GCGConfig(iters=4, **cfg), progress=False)
    assert torch.equal(full.tensors["beam"], again.tensors["beam"]) and full.tensors["beam"].shape[0] == 3
    scores = full.tensors["beam_scores"]
    assert (scores[:-1] >= scores[1:]).all()  # the buffer is kept best first
    part = autoprompt.search(task, data, data, GCGConfig(iters=2, **cfg), progress=False)
    resumed = autoprompt.search(task, data, data, GCGConfig(iters=4, **cfg), resume=part, progress=False)
    assert resumed.trigger_ids == full.trigger_ids
    assert [h["trigger_ids"] for h in resumed.history] == [h["trigger_ids"] for h in full.history]


def test_fluency_term_is_read_in_the_same_passes_and_lowers_perplexity():
    lm = tiny_lm("llama", seed=1)
    task = PromptTask(lm, "{sentence} [T] [T] [P]", "0=terrible,1=great")
    rows = task.encode("demo:sentiment:dev").rows
    triggers = torch.randint(10, 200, (5, 2), generator=torch.Generator().manual_seed(0))
    plain = score_triggers(task, rows, triggers)
    fluent = score_triggers(task, rows, triggers, fluency=True)
    assert torch.allclose(plain.loglik, fluent.loglik) and (plain.fluency == 0).all() and (fluent.fluency < 0).all()
    packed = score_triggers(task, rows, triggers, packed=True, fluency=True)
    torch.testing.assert_close(packed.fluency, fluent.fluency, atol=1e-3, rtol=1e-4)
    for n in (0, 3):  # the mean trigger-token log-prob per example, by hand from full logits
        assert math.exp(-float(fluent.fluency[n]) / len(rows)) == pytest.approx(
            prompt_perplexity(lm, rows, triggers[n]), rel=1e-4)
    args = (task, "demo:sentiment:train", "demo:sentiment:dev")
    base = dict(iters=6, num_cand=20, slots="all", seed=0)
    loose = autoprompt.search(*args, AutoPromptConfig(**base), progress=False)
    fluent_run = autoprompt.search(*args, AutoPromptConfig(**base, fluency_weight=20.0), progress=False)
    assert fluent_run.metrics["prompt_perplexity"] < loose.metrics["prompt_perplexity"]


def test_probe_sampling_with_a_draft_model(tiny_folder):
    from frozen_lm import FrozenLM

    lm = FrozenLM.load(tiny_folder("gpt2"))
    task = PromptTask(lm, TEMPLATE, target="great movie")
    data = task.default_data()
    cfg = GCGConfig(iters=3, search_width=64, topk=32, probe_sampling=ProbeSamplingConfig(tiny_folder("gpt2")), seed=0)
    r = autoprompt.search(task, data, data, cfg, progress=False)
    assert r.iterations == 3 and r.metrics["dev"]["loss"] <= r.metrics["start_dev"]["loss"]
    with pytest.raises(UserError, match="another tokenizer"):
        autoprompt.search(task, data, data, GCGConfig(probe_sampling=ProbeSamplingConfig(tiny_folder("llama"))), progress=False)
    with pytest.raises(TypeError):
        AutoPromptConfig(draft_model="x")  # probe sampling is GCG's option group
    with pytest.raises(UserError, match="ProbeSamplingConfig.draft_model is empty"):
        ProbeSamplingConfig("")



@pytest.mark.parametrize("score", ["loglik", "accuracy", "margin", "auto"])
def test_probe_sampling_never_picks_a_candidate_the_model_did_not_score(monkeypatch, score):
    """Unscored candidates get -inf log-likelihood and margin, so no ranking puts one first (with
    margin ranking, all scored candidates wrong, a 0 margin on an unscored one used to win)."""
    from types import SimpleNamespace

    import autoprompt.probe as probe
    from autoprompt.scoring import Scores
    from autoprompt.search import Searcher

    def all_wrong(task, rows, triggers, *args, **kwargs):
        n = triggers.shape[0]
        return Scores(torch.full((n,), -5.0, dtype=torch.float64), torch.zeros(n, dtype=torch.long),
                      torch.full((n,), -1.0, dtype=torch.float64), torch.zeros(n, dtype=torch.float64),
                      torch.zeros(n, dtype=torch.float64))

    monkeypatch.setattr(probe, "score_triggers", all_wrong)
    cfg = GCGConfig(score=score, probe_sampling=ProbeSamplingConfig("draft"))
    searcher = SimpleNamespace(cfg=cfg, task=None, budget=None, kind="vocab", packed=True)
    proposer = SimpleNamespace(cfg=cfg, draft=None, share=True)
    pool = torch.arange(65 * 2).view(65, 2)
    out = probe.probe_sample(searcher, proposer, None, pool, 1, torch.Generator().manual_seed(0), False)
    scored = torch.isfinite(out.loglik)
    assert scored.sum() < 65 and torch.isneginf(out.margin[~scored]).all()
    ranker = SimpleNamespace(cfg=cfg, task=SimpleNamespace(is_facts=True))
    ranker.value = lambda scores: Searcher.value(ranker, scores)
    assert scored[Searcher._rank(ranker, out).argmax()]


# ---------------------------------------------------------------- the command line
def test_cli_gcg_on_a_target(cli, tiny_folder, tmp_path):
    out = tmp_path / "gcg"
    result = cli("search", "--model", tiny_folder("gpt2"), "--method", "gcg", "--template", TEMPLATE, "--target",
                 "great movie", "--iters", "2", "--search-width", "16", "--topk", "8", "--no-progress", "--out", out, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert {"exact_match_dev", "loss_dev"} <= set(summary)
    config = json.loads((out / "config.json").read_text())
    assert config["method"] == "gcg" and config["task"]["target"] == "great movie"
    scored = cli("evaluate", out, "--json")
    assert scored.exit_code == 0, scored.output
    assert json.loads(scored.output.strip().splitlines()[-1])["loss"] == pytest.approx(summary["loss_dev"])
    resumed = cli("search", "--resume", out, "--iters", "3", "--no-progress")
    assert resumed.exit_code == 0, resumed.output


@pytest.mark.parametrize("extra, fragment", [
    (["--target", ""], "target string is empty"),
    (["--target", "x", "--template", "write a review ."], "no [T] slots"),
    (["--target", "x", "--search-width", "0"], "--search-width must be at least 1"),
    (["--target", "x", "--fluency-weight", "-1"], "--fluency-weight must be 0 or more"),
])
def test_cli_bad_gcg_input(cli, tiny_folder, extra, fragment):
    args = ["search", "--model", tiny_folder("gpt2"), "--method", "gcg", "--template", TEMPLATE, "--no-progress"]
    for i in range(0, len(extra), 2):
        if extra[i] == "--template":
            args[args.index("--template") + 1] = extra[i + 1]
        else:
            args += extra[i:i + 2]
    assert_user_error(cli(*args), fragment)


def test_fluency_refused_on_a_masked_lm(tiny):
    task = PromptTask(tiny("bert"), "{sentence} [T] [P] .", "0=terrible,1=great")
    with pytest.raises(UserError, match="needs a causal LM"):
        autoprompt.search(task, "demo:sentiment:train", "demo:sentiment:dev", AutoPromptConfig(fluency_weight=1.0),
                          progress=False)
