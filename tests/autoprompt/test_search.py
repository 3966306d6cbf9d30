"""AutoPrompt search: candidates, the planted task, resume, determinism, errors (scoring: test_scoring.py;
label-word search internals: test_label_search.py)."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from autoprompt.candidates import (
    all_slot_variants,
    allowed_tokens,
    dedupe,
    hotflip_candidates,
    one_slot_variants,
)
from autoprompt.config import AutoPromptConfig
from autoprompt.hotflip import HotFlip
from autoprompt.scoring import Scores
from autoprompt.search import Searcher
from autoprompt_cli import main
from frozen_lm import data as data_mod
from frozen_lm.task import PromptTask
from frozen_lm.testing import save_tiny, tiny_lm

LABELS = "0=terrible,1=great"


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    return str(save_tiny("gpt2", tmp_path_factory.mktemp("gpt2")))


def _ap(cfg):
    """(config, its AutoPrompt proposer) for a Searcher."""
    return cfg, HotFlip(cfg)


def run_cli(*args):
    result = CliRunner().invoke(main, list(args))
    return result


# ---------------------------------------------------------------- candidates (pure functions)
def test_hotflip_picks_most_negative_allowed_gradient():
    grad = torch.tensor([[0.5, -2.0, -1.0, 0.0, -3.0], [1.0, 2.0, -0.5, -0.1, 0.3]])
    allowed = torch.tensor([True, True, True, True, False])  # token 4 is filtered
    assert hotflip_candidates(grad, allowed, 2).tolist() == [[1, 2], [2, 3]]


def test_slot_variants_and_dedupe():
    trigger = torch.tensor([7, 8, 9])
    one = one_slot_variants(trigger, 1, torch.tensor([1, 2]))
    assert one.tolist() == [[7, 1, 9], [7, 2, 9]]
    every = all_slot_variants(trigger, torch.tensor([[1, 7], [2, 3], [4, 5]]))
    assert every.shape == (6, 3)
    assert dedupe(every, keep_first=trigger[None]).tolist() == [[1, 8, 9], [7, 2, 9], [7, 3, 9], [7, 8, 4], [7, 8, 5]]


def test_allowed_tokens_filters_specials_labels_and_case():
    lm = tiny_lm("llama")
    tok = lm.tokenizer
    great = tok.convert_tokens_to_ids("great")
    ok = allowed_tokens(tok, lm.vocab_size, exclude=[great])
    assert not ok[tok.all_special_ids].any()
    assert not ok[great]
    assert ok[tok.convert_tokens_to_ids("movie")]



def test_ascii_only_keeps_printable_ascii_tokens_only():
    """--ascii-only (GCG's default) drops non-ASCII letters and also tabs, newlines and control
    characters inside a token, as nanoGCG's filter does."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "ok": 1, "tab\there": 2, "line\n": 3, "caf\u00e9": 4, "bell\x07": 5}
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="[UNK]")),
                                  unk_token="[UNK]")
    assert allowed_tokens(tok, 6).tolist() == [False, True, True, True, True, True]
    assert allowed_tokens(tok, 6, ascii_only=True).tolist() == [False, True, False, False, False, False]


@pytest.mark.parametrize("n,batch,eval_size,accum", [(40, 32, 32, 1), (10, 4, 3, 3), (32, 32, 32, 1), (7, 7, 7, 2)])
def test_search_batches_never_hold_an_example_twice(n, batch, eval_size, accum):
    """Gradient and scoring batches are slices of random permutations; one that would cross into the
    next permutation starts it instead (40 rows, 32 + 32: the scoring batch used to repeat 24)."""
    rows = [{"sentence": f"film {i}", "label": i % 2} for i in range(n)]
    task = PromptTask(tiny_lm("gpt2"), "{sentence} [T] [P]", {"0": "terrible", "1": "great"})
    cfg = AutoPromptConfig(batch_size=batch, eval_size=eval_size, accumulation_steps=accum)
    searcher = Searcher(task, cfg, HotFlip(cfg), task.encode(rows), task.encode(rows))
    for it in range(1, 6):
        _, grads, scoring = searcher._batches(it)
        assert [len(b) for b in grads] == [min(batch, n)] * accum and len(scoring) == min(eval_size, n)
        for b in [*grads, scoring]:
            assert len(set(b.tolist())) == len(b)


def test_search_batches_are_the_old_draws_when_no_batch_crosses_a_permutation():
    """32 rows, batches of 32 and 32 (the SST-2 16-shot setting): the same draws as one concatenation of
    permutations, so no earlier result changes."""
    rows = [{"sentence": f"film {i}", "label": i % 2} for i in range(32)]
    task = PromptTask(tiny_lm("gpt2"), "{sentence} [T] [P]", {"0": "terrible", "1": "great"})
    searcher = Searcher(task, *_ap(AutoPromptConfig()), task.encode(rows), task.encode(rows))
    g, grads, scoring = searcher._batches(3)
    ref = torch.Generator().manual_seed(0 * 1_000_003 + 3)
    order = torch.cat([torch.randperm(32, generator=ref) for _ in range(2)])
    assert torch.equal(grads[0], order[:32]) and torch.equal(scoring, order[32:])
    assert torch.equal(torch.rand(4, generator=g), torch.rand(4, generator=ref))

# ---------------------------------------------------------------- the planted task
def test_search_finds_the_planted_trigger():
    """Labels are what the model predicts with a secret trigger token; the search must find a
    trigger that is right on every example (the secret one, or one as good)."""
    lm = tiny_lm("llama", seed=3)
    task = PromptTask(lm, "{sentence} [T] [P]", LABELS)
    data = data_mod.load("demo:sentiment:all")
    rows = task.encode(data).rows
    the = lm.tokenizer.convert_tokens_to_ids("the")
    secret, planted = None, None
    for token in range(10, lm.vocab_size):
        logits = lm.logits_at(rows.predict_pos, input_ids=rows.with_triggers(torch.tensor([token])))
        pred = task.log_probs(logits, rows).argmax(-1)
        base = task.log_probs(lm.logits_at(rows.predict_pos, input_ids=rows.with_triggers(torch.tensor([the]))), rows)
        if 0.3 < pred.float().mean() < 0.7 and (base.argmax(-1) != pred).float().mean() > 0.2:
            secret, planted = token, pred
            break
    assert secret is not None
    for row, label in zip(data.rows, planted.tolist()):
        row["label"] = label
    encoded = task.encode(data)
    cfg = AutoPromptConfig(iters=3, num_cand=lm.vocab_size, score="accuracy", eval_size=len(data), batch_size=16)
    searcher = Searcher(task, cfg, HotFlip(cfg), encoded, encoded)
    state = searcher.start(torch.tensor([the]))
    assert state.best_dev < 1.0
    while not searcher.finished(state):
        state = searcher.step(state)
    assert state.best_dev == 1.0


def test_equal_dev_scores_keep_the_trigger_with_the_best_dev_loglik():
    """On a fact task where P@1 stays 0, the best trigger is still the most likely one on dev, not the
    initial one (the T-REx P30 failure: loss fell from 12 to 5 and the search kept 'the the the')."""
    lm = tiny_lm("llama", seed=1)
    task = PromptTask(lm, "{sub_label} [T] [T] [P]", None, label_field="obj_label")
    encoded = task.encode(data_mod.load("demo:capitals"))
    searcher = Searcher(task, *_ap(AutoPromptConfig(iters=4, num_cand=8, slots="all", eval_size=16, batch_size=16)),
                        encoded, encoded)
    start = searcher.start(torch.tensor([5, 6]))
    state = start
    while not searcher.finished(state):
        state = searcher.step(state)
    seen = [(start.best_dev, start.best_dev_loglik, start.best.tolist())]
    seen += [(h["dev"], h["dev_loglik"], h["trigger_ids"]) for h in state.history if h["accepted"]]
    top = max(seen, key=lambda t: (t[0], t[1]))
    assert state.best.tolist() == top[2] and (state.best_dev, state.best_dev_loglik) == top[:2]
    assert any(h["accepted"] for h in state.history)
    assert state.best_dev_loglik > start.best_dev_loglik  # an accepted change was more likely on dev


@pytest.mark.parametrize("facts, score, best", [
    (True, "auto", 2), (False, "auto", 0), (True, "loglik", 0), (False, "accuracy", 1), (False, "margin", 2)])
def test_candidate_rank(facts, score, best):
    """auto ranks facts by accuracy then margin, label words by log-likelihood."""
    lm = tiny_lm("llama", seed=1)
    task = (PromptTask(lm, "{sub_label} [T] [P]", None, label_field="obj_label") if facts
            else PromptTask(lm, "{sentence} [T] [P]", LABELS))
    encoded = task.encode(data_mod.load("demo:capitals" if facts else "demo:sentiment"))
    searcher = Searcher(task, *_ap(AutoPromptConfig(score=score)), encoded, encoded)
    scores = Scores(torch.tensor([-1.0, -8.0, -9.0], dtype=torch.float64), torch.tensor([0, 3, 3]),
                    torch.tensor([-5.0, -4.0, -2.0], dtype=torch.float64), torch.zeros(3, dtype=torch.float64),
                    torch.zeros(3, dtype=torch.float64))
    assert int(searcher._rank(scores).argmax()) == best


# ---------------------------------------------------------------- CLI: artifact, determinism, resume
def test_search_cli_writes_artifact_and_evaluates(gpt2_dir, tmp_path):
    out = tmp_path / "run"
    res = run_cli("search", "--model", gpt2_dir, "--iters", "3", "--num-cand", "4", "--out", str(out),
                  "--no-progress", "--json")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output.strip().splitlines()[-1])
    config = json.loads((out / "config.json").read_text())
    results = json.loads((out / "results.json").read_text())
    assert config["method"] == "autoprompt" and config["seed"] == 0 and config["model"]["name"] == gpt2_dir
    assert config["config"]["num_cand"] == 4 and "package" in config["versions"]
    assert len(results["history"]) == 3 and results["status"] == "done"
    assert {"loss", "train_accuracy", "dev", "trigger", "seconds"} <= set(results["history"][0])
    assert "[T]" not in results["filled_template"]
    ev = run_cli("evaluate", str(out), "--json")
    assert ev.exit_code == 0, ev.output
    assert json.loads(ev.output.strip().splitlines()[-1])["accuracy"] == summary["accuracy_dev"]


def _trigger_and_losses(out):
    results = json.loads((out / "results.json").read_text())
    return results["trigger_ids"], [h["loss"] for h in results["history"]], [h["trigger_ids"] for h in results["history"]]


def test_same_seed_same_trigger_bit_for_bit(gpt2_dir, tmp_path):
    args = ["search", "--model", gpt2_dir, "--iters", "4", "--num-cand", "5", "--no-progress", "--seed", "7"]
    assert run_cli(*args, "--out", str(tmp_path / "a")).exit_code == 0
    assert run_cli(*args, "--out", str(tmp_path / "b")).exit_code == 0
    assert _trigger_and_losses(tmp_path / "a") == _trigger_and_losses(tmp_path / "b")


def test_resume_equals_uninterrupted(gpt2_dir, tmp_path):
    base = ["search", "--model", gpt2_dir, "--num-cand", "5", "--no-progress", "--seed", "3", "--slots", "all"]
    assert run_cli(*base, "--iters", "4", "--out", str(tmp_path / "full")).exit_code == 0
    assert run_cli(*base, "--iters", "2", "--out", str(tmp_path / "part")).exit_code == 0
    res = run_cli("search", "--resume", str(tmp_path / "part"), "--iters", "4", "--no-progress")
    assert res.exit_code == 0, res.output
    assert _trigger_and_losses(tmp_path / "part") == _trigger_and_losses(tmp_path / "full")


def test_ctrl_c_saves_best_so_far_and_resumes(gpt2_dir, tmp_path, monkeypatch):
    real_step, calls = Searcher.step, {"n": 0}

    def step(self, state):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_step(self, state)

    monkeypatch.setattr(Searcher, "step", step)
    out = tmp_path / "run"
    res = run_cli("search", "--model", gpt2_dir, "--iters", "5", "--num-cand", "3", "--no-progress", "--out", str(out))
    assert res.exit_code == 130
    assert "interrupted after iteration 2" in res.output and "--resume" in res.output
    results = json.loads((out / "results.json").read_text())
    assert results["status"] == "interrupted" and len(results["history"]) == 2
    monkeypatch.setattr(Searcher, "step", real_step)
    res = run_cli("search", "--resume", str(out), "--no-progress")
    assert res.exit_code == 0, res.output
    assert len(json.loads((out / "results.json").read_text())["history"]) == 5


def test_facts_mode_reports_p_at_1(tmp_path):
    folder = str(save_tiny("llama", tmp_path / "llama"))
    res = run_cli("search", "--model", folder, "--train", "demo:capitals", "--iters", "2", "--num-cand", "3",
                  "--no-progress", "--out", str(tmp_path / "facts"), "--json")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output.strip().splitlines()[-1])
    assert "p_at_1_dev" in summary and summary["n_scored"] + summary["n_skipped"] == 34


def test_label_search_prints_words_and_writes_label_map(gpt2_dir, tmp_path):
    out = tmp_path / "words.json"
    res = run_cli("label-search", "--model", gpt2_dir, "--k", "3", "--out", str(out))
    assert res.exit_code == 0, res.output
    assert "label words" in res.output
    words = json.loads(out.read_text())
    assert set(words) == {"0", "1"} and all(isinstance(w, str) and w for w in words.values())


# ---------------------------------------------------------------- bad input: one line, exit 2
@pytest.mark.parametrize("extra,needle", [
    (["--num-cand", "0"], "--num-cand must be at least 1"),
    (["--template", "{sentence} It was [P]"], "no [T] slots"),
    (["--label-map", '{"0": "<|endoftext|>", "1": "great"}'], "special token"),
    (["--initial-trigger", "a b c d e"], "--initial-trigger"),
    (["--template", "{sentence} [T] [P] [T]"], "[P] must be the last slot"),
])
def test_bad_input_is_one_line(gpt2_dir, extra, needle):
    res = run_cli("search", "--model", gpt2_dir, "--iters", "1", "--no-progress", *extra)
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:") and needle in lines[0], res.output
    assert "Traceback" not in res.output


def test_empty_train_set_is_one_line(gpt2_dir, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    res = run_cli("search", "--model", gpt2_dir, "--train", str(empty), "--dev", "demo:sentiment:dev",
                  "--template", "{sentence} [T] [P]", "--label-map", LABELS, "--no-progress")
    assert res.exit_code == 2 and "empty" in res.output and len(res.output.strip().splitlines()) == 1, res.output


# ---------------------------------------------------------------- the Python API
def test_api_search_writes_nothing_without_out_and_reports_events(tmp_path, monkeypatch):
    import autoprompt
    from frozen_lm import evaluate

    monkeypatch.chdir(tmp_path)
    lm = tiny_lm("llama")
    task = PromptTask(lm, "{sentence} [T] [T] [P]", LABELS)
    events = []
    r = autoprompt.search(task, "demo:sentiment:train", "demo:sentiment:dev", AutoPromptConfig(iters=3, num_cand=4),
                          callback=events.append, progress=False)
    assert list(tmp_path.iterdir()) == []
    assert [(e.kind, e.step, e.total) for e in events] == [("iteration", i, 3) for i in (1, 2, 3)]
    assert r.status == "done" and r.iterations == 3 and len(r.history) == 3 and r.seed == 0
    assert r.metrics["dev"] == evaluate(task, "demo:sentiment:dev", prompt=r) == evaluate(task, "demo:sentiment:dev",
                                                                                           prompt=r.prompt)
    assert r.data["train"]["rows"] == 64 and len(r.data["dev"]["sha256"]) == 64
    assert r.filled_template.endswith("[P]") and r.filled_template.count("[T]") == 0


def test_api_callback_stops_the_run_and_lists_of_dicts_are_data():
    import autoprompt

    lm = tiny_lm("llama")
    task = PromptTask(lm, "{sentence} [T] [P]", LABELS)
    rows = data_mod.load("demo:sentiment:all").rows
    r = autoprompt.search(task, rows[:60], rows[60:], AutoPromptConfig(iters=5, num_cand=3),
                          callback=lambda e: e.step == 2, progress=False)
    assert r.status == "stopped" and r.iterations == 2
    assert r.data["train"]["source"] == "<list of 60 rows>"


def test_api_resume_refuses_a_different_run(tmp_path):
    import autoprompt
    from frozen_lm.errors import UserError

    lm = tiny_lm("llama")
    task = PromptTask(lm, "{sentence} [T] [T] [P]", LABELS)
    args = (task, "demo:sentiment:train", "demo:sentiment:dev")
    autoprompt.search(*args, AutoPromptConfig(iters=2, num_cand=3), out=tmp_path / "a", progress=False)
    with pytest.raises(UserError, match=r"AutoPromptConfig.num_cand \(3 saved, 4 now\)"):
        autoprompt.search(*args, AutoPromptConfig(iters=3, num_cand=4), resume=tmp_path / "a", progress=False)
    other = PromptTask(lm, "{sentence} [T] [T] it was [P]", LABELS)
    with pytest.raises(UserError, match="template"):
        autoprompt.search(other, *args[1:], AutoPromptConfig(iters=3, num_cand=3), resume=tmp_path / "a", progress=False)
    r = autoprompt.search(*args, AutoPromptConfig(iters=3, num_cand=3), resume=tmp_path / "a", progress=False)
    assert r.iterations == 3


def test_cli_resume_refuses_other_options_and_extends_with_iters(gpt2_dir, tmp_path):
    out = str(tmp_path / "run")
    assert run_cli("search", "--model", gpt2_dir, "--iters", "2", "--num-cand", "3", "--no-progress", "--out", out).exit_code == 0
    res = run_cli("search", "--resume", out, "--num-cand", "5", "--beam-size", "2")
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1, res.output
    assert "--num-cand (3 saved, 5 now)" in res.output and "--beam-size (1 saved, 2 now)" in res.output
    assert run_cli("search", "--resume", out, "--iters", "3", "--num-cand", "3", "--no-progress").exit_code == 0
    assert len(json.loads((tmp_path / "run" / "results.json").read_text())["history"]) == 3


def test_demo_search_prints_the_manual_template_beside_the_found_prompt(gpt2_dir, tmp_path):
    res = run_cli("search", "--model", gpt2_dir, "--iters", "1", "--num-cand", "2", "--no-progress",
                  "--out", str(tmp_path / "d"))
    assert res.exit_code == 0, res.output
    lines = res.output.strip().splitlines()
    manual = next(i for i, line in enumerate(lines) if line.startswith("manual"))
    assert lines[0].startswith("prompt: ") and lines[manual + 1].startswith("found")
    assert "{sentence} It was [P] ." in lines[manual] and lines[manual - 1].startswith("prompt ")
