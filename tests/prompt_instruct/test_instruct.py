"""prompt_instruct ('instruct'): instructions proposed by a language model and chosen on data.

A tiny random proposer writes gibberish, so most tests give the pipeline fixed texts (the sampler
monkeypatched) and check what it does with them: candidate zero is the hand-written template, the
best on dev is chosen and never worse than it, template characters are made harmless, OPRO rounds
show the best so far lowest first; then determinism, artifacts, transfer, Ctrl-C, the CLI and the
registry, with real (tiny) sampling where it matters."""

from __future__ import annotations

import json
from dataclasses import fields

import pytest

import frozen_lm
import prompt_instruct
from frozen_lm import PromptTask, evaluate, load_result
from frozen_lm.errors import Interrupted, UserError
from prompt_instruct import InstructConfig, InstructResult, instruct
from prompt_instruct.pool import Pool, candidate_template
from prompt_instruct.propose import Demo, Proposer, ape_message, clean, harmless, opro_message
from tests.conftest import assert_user_error

LABELS = {"0": "terrible", "1": "great"}
TRAIN, DEV = "demo:sentiment:train", "demo:sentiment:dev"
TEMPLATE = "{sentence} It was [P] ."
SMALL = {"n_candidates": 4, "n_demos": 2, "max_new_tokens": 6, "eval_size": 16}
ROUND_TEXTS = [
    ["Decide whether the review is positive or negative.", "  2. \"Classify {sentence} as [P] or [T].\" more",
     "Decide whether the review is positive or negative.", "###"],
    ["Instruction: Say if the movie review is great or terrible.\nsecond line", "Read [X] and answer [Y] {label}."],
    ["Judge the sentiment of the review."],
]


@pytest.fixture
def task(tiny):
    return PromptTask(tiny("llama"), TEMPLATE, LABELS)


@pytest.fixture
def fake(monkeypatch):
    """The proposer returns ROUND_TEXTS[round] (the meta-prompts it was given are in .messages)."""
    seen = {"messages": [], "calls": 0}

    def prompt_ids(self, build, n_demos):
        seen["messages"].append(build(n_demos))
        return [1, 2, 3]

    def sample_texts(self, ids, n):
        seen["calls"] += 1
        return ROUND_TEXTS[seen["calls"] - 1][:n]

    monkeypatch.setattr(Proposer, "prompt_ids", prompt_ids)
    monkeypatch.setattr(Proposer, "sample_texts", sample_texts)
    return seen


def run(task, **kw):
    return instruct(task, TRAIN, DEV, InstructConfig(**{**SMALL, **kw}), progress=False)


# ---------------------------------------------------------------- the pipeline on fixed texts
def test_candidates_escaped_deduplicated_and_manual_first(task, fake):
    r = run(task, rounds=3)
    h = r.history
    assert h[0] == {**h[0], "round": 0, "instruction": "", "template": TEMPLATE}  # candidate zero: the template alone
    assert [x["instruction"] for x in h[1:]] == [
        "Decide whether the review is positive or negative.", "Classify (sentence) as (P) or (T).",
        "Say if the movie review is great or terrible.", "Read (X) and answer (Y) (label).",
        "Judge the sentiment of the review."]
    assert [x["round"] for x in h] == [0, 1, 1, 2, 2, 3]
    for x in h[1:]:
        assert x["template"] == x["instruction"] + "\n" + TEMPLATE
        derived = task.derive(template=x["template"])
        assert derived.template.fields == ("sentence",) and derived.template.n_triggers == 0
    assert r.rounds_done == 3 and r.status == "done" and r.proposer == "tiny-llama"


def test_best_on_dev_is_chosen_and_never_worse_than_the_template(task, fake):
    r = run(task, rounds=3, dev_top=2)
    scored = [x for x in r.history if x["dev"] is not None]
    assert r.history[0] in scored and len(scored) >= 3
    best = max(scored, key=lambda x: (x["dev"], x["train"], x["train_loglik"], -len(x["instruction"])))
    assert (r.instruction, r.template) == (best["instruction"], best["template"])
    assert r.metrics["dev"]["accuracy"] == best["dev"] >= r.history[0]["dev"]
    assert evaluate(task, DEV, prompt=r) == r.metrics["dev"]
    assert r.filled_template == r.template


def test_every_candidate_is_scored_on_the_same_examples(task, fake, monkeypatch):
    batches, add = [], Pool.add

    def spy(self, round_, instruction, batch):
        batches.append(batch)
        return add(self, round_, instruction, batch)

    monkeypatch.setattr(Pool, "add", spy)
    run(task, rounds=3, eval_size=8)
    assert len(batches) == 6 and all(b is batches[0] for b in batches) and len(batches[0]) == 8


def test_choice_rules(task):
    """Best dev score; ties: the training score, then the shorter instruction; only the best
    dev_top by training score (and candidate zero) take part."""
    pool = Pool(task, InstructConfig(dev_top=2), dev=None)

    def rec(instruction, train, dev, loglik=-1.0):
        r = {"round": 1, "instruction": instruction, "template": instruction, "train": train, "train_loglik": loglik,
             "dev": dev, "dev_metrics": {"accuracy": dev}}
        pool.records.append(r)
        return r

    manual = rec("", 0.5, 0.6)
    rec("a much longer instruction", 0.9, 0.7)
    short = rec("short one", 0.9, 0.7)
    rec("low train, best dev", 0.1, 0.99)  # not among the best 2 by training score: never scored on dev
    assert pool.choose() is short
    pool.records[1]["dev"] = pool.records[2]["dev"] = 0.6
    assert pool.choose() is short  # ties with the template on dev; better on train
    pool.records[1]["train"] = pool.records[2]["train"] = 0.5
    assert pool.choose() is manual  # ties everywhere: the shortest (no instruction)


def test_opro_rounds_show_the_best_so_far_lowest_first(task, fake):
    r = run(task, rounds=2, keep=2)
    ape, opro = fake["messages"]
    assert "Here are the input-output pairs" in ape and ape.count("Input: ") == 2 and "Output: " in ape
    assert ape.rstrip().endswith("The instruction was:")  # the tiny model has no chat template: plain text
    shown = sorted((x for x in r.history if x["round"] == 1), key=Pool.train_key, reverse=True)[:2]
    lines = [ln for ln in opro.splitlines() if ln.startswith(("Instruction: ", "Score: "))]
    assert lines == [f"Instruction: {shown[1]['instruction']}", f"Score: {round(100 * shown[1]['train'])}",
                     f"Instruction: {shown[0]['instruction']}", f"Score: {round(100 * shown[0]['train'])}"]
    assert opro.rstrip().endswith("New instruction:")


def test_meta_prompts_and_cleaning():
    demos = [Demo("a fine movie", "great"), Demo("a bad film", "terrible")]
    chat = ape_message(demos, chat=True)
    assert "Input: a fine movie\nOutput: great" in chat and chat.endswith("in one sentence.")
    opro = opro_message([("B", 0.9), ("A", 0.25)], demos, "p_at_1", chat=False)
    assert opro.index("Instruction: A\nScore: 25") < opro.index("Instruction: B\nScore: 90") and "p at 1" in opro
    assert clean('- "Rate the review." He said.') == "Rate the review."
    assert clean("the new instruction: label it {x}[T]!\nmore") == "Label it (x)(T)!"
    assert clean("<|im_end|> ... <|im_end|>", ("<|im_end|>",)) == ""
    assert clean("Here's a possible instruction:\n\n1. \"Do you like it? Not") == "Do you like it?"
    assert clean("The Instructions:") == ""
    assert clean("word " * 200).count("Word") == 1 and len(clean("word " * 200)) <= 300
    assert harmless("{a} [P] [CLS]") == "(a) (P) (CLS)"
    assert candidate_template("[CLS] {s} [P] . [SEP]", "Do it.", "space", ("[CLS]", "[SEP]")) == \
        "[CLS] Do it. {s} [P] . [SEP]"
    assert candidate_template(TEMPLATE, "", "newline") == TEMPLATE


def test_same_seed_same_result(task, fake):
    a = run(task, rounds=2, seed=3)
    fake["calls"] = 0
    b = run(task, rounds=2, seed=3)
    assert a.history == b.history and a.template == b.template


def test_real_sampling_is_seeded(task):
    """The tiny model's own (gibberish) instructions: the same seed samples and scores the same."""
    a, b = run(task, rounds=2, seed=1), run(task, rounds=2, seed=1)
    assert a.history == b.history and len(a.history) > 1
    assert run(task, rounds=2, seed=2).history != a.history
    assert a.metrics["dev"]["accuracy"] >= a.history[0]["dev"]


# ---------------------------------------------------------------- artifacts, transfer, events
def test_round_trip_and_transfer(task, fake, tiny, tmp_path):
    r = instruct(task, TRAIN, DEV, InstructConfig(**SMALL, rounds=2), test=DEV, out=tmp_path / "run", progress=False)
    again = load_result(tmp_path / "run")
    assert type(again) is InstructResult and again.config == r.config and again.method == "instruct"
    assert (again.instruction, again.template, again.history, again.proposer, again.status) == \
        (r.instruction, r.template, r.history, r.proposer, "done")
    assert evaluate(task, DEV, prompt=again) == r.metrics["dev"] == r.metrics["test"]
    other = PromptTask(tiny("gpt2"), TEMPLATE, LABELS)  # the prompt is text: another model scores it
    scored = evaluate(other, DEV, prompt=again)
    assert scored["accuracy"] == evaluate(other.derive(template=r.template), DEV)["accuracy"]
    assert scored.get("transfer", {}).get("target_model", "tiny-gpt2") == "tiny-gpt2"


def test_checkpoints_events_and_stop(task, fake, tmp_path):
    events, saved = [], []

    def callback(event):
        events.append(event)
        saved.append(json.loads((tmp_path / "run" / "results.json").read_text())["status"])
        return event.step == 2

    r = instruct(task, TRAIN, DEV, InstructConfig(**SMALL, rounds=3), out=tmp_path / "run", callback=callback,
                 progress=False)
    assert [(e.kind, e.step, e.total, e.stage) for e in events] == [("iteration", 1, 3, "ape"), ("iteration", 2, 3, "opro")]
    assert saved == ["running", "running"] and "best_dev" in events[0].metrics
    assert r.status == "stopped" and r.rounds_done == 2
    assert load_result(tmp_path / "run").status == "stopped"


def test_ctrl_c_keeps_the_rounds_done(task, fake, monkeypatch, tmp_path):
    def sample_texts(self, ids, n):
        fake["calls"] += 1
        if fake["calls"] == 2:
            raise KeyboardInterrupt
        return ROUND_TEXTS[0]

    monkeypatch.setattr(Proposer, "sample_texts", sample_texts)
    with pytest.raises(Interrupted, match="after round 1") as info:
        instruct(task, TRAIN, DEV, InstructConfig(**SMALL, rounds=3), out=tmp_path / "run", progress=False)
    kept = load_result(tmp_path / "run")
    assert kept.status == "interrupted" and kept.rounds_done == 1 and len(kept.history) == 3
    assert info.value.result.template == kept.template


# ---------------------------------------------------------------- proposers, bad input
def test_proposer_model_from_a_folder(task, tiny_folder):
    r = run(task, rounds=1, proposer_model=tiny_folder("gpt2"))
    assert r.proposer == tiny_folder("gpt2") and r.history[0]["instruction"] == ""


def test_bad_input_names_the_field(tiny, task, tiny_folder):
    with pytest.raises(UserError, match=r"InstructConfig.rounds must be at least 1, got 0"):
        InstructConfig(rounds=0)
    with pytest.raises(UserError, match=r"InstructConfig.top_p must be at most 1"):
        InstructConfig(top_p=1.5)
    with pytest.raises(UserError, match=r"InstructConfig.separator is 'tab'"):
        InstructConfig(separator="tab")
    with pytest.raises(UserError, match=r"InstructConfig.proposer_model is empty"):
        InstructConfig(proposer_model=" ")
    masked = PromptTask(tiny("bert"), TEMPLATE, LABELS)
    with pytest.raises(UserError, match=r"InstructConfig.proposer_model is not given.*masked LM"):
        instruct(masked, TRAIN, DEV, InstructConfig(**SMALL))
    with pytest.raises(UserError, match=r"InstructConfig.proposer_model is '.*', a masked LM"):
        run(task, proposer_model=tiny_folder("bert"))
    with pytest.raises(UserError, match=r"\[T\] slots"):
        instruct(task.derive(template="{sentence} [T] [P]"), TRAIN, DEV)
    with pytest.raises(UserError, match="give dev="):
        instruct(task, TRAIN, None)


def test_registered_method():
    m = frozen_lm.methods()["instruct"]
    assert m.module == "prompt_instruct" and m.config is InstructConfig and m.result is InstructResult
    assert (m.trains, m.template, m.resumable, m.needs_dev) == ("tokens", "manual", None, True)
    assert m.space == {"rounds": [1, 3]} and m.command.name == "instruct" and m.command.default
    assert all(f.metadata.get("help") for f in fields(InstructConfig))
    assert prompt_instruct.__all__ == ["InstructConfig", "InstructResult", "instruct"]


# ---------------------------------------------------------------- the command line
def test_cli_instruct_then_evaluate(cli, tiny_folder, tmp_path):
    model = tiny_folder("llama")
    help_ = cli("instruct", "--help")
    assert help_.exit_code == 0 and "--proposer-model" in help_.output and "--rounds" in help_.output
    out = cli("instruct", "--model", model, "--out", tmp_path / "ins", "--rounds", "1", "--n-candidates", "2",
              "--n-demos", "1", "--max-new-tokens", "4", "--no-progress", "--json")
    assert out.exit_code == 0, out.output
    row = json.loads(out.output.strip().splitlines()[-1])
    assert row["out"] == str(tmp_path / "ins") and row["rounds"] == 1 and row["proposer"] == model
    assert row["manual"]["accuracy_dev"] <= row["accuracy_dev"]
    scored = cli("evaluate", tmp_path / "ins", "--data", DEV, "--json")
    assert scored.exit_code == 0, scored.output
    assert json.loads(scored.output)["accuracy"] == row["accuracy_dev"]
    assert_user_error(cli("instruct", "--model", model, "--rounds", "0", "--out", tmp_path / "x"),
                      "--rounds must be at least 1, got 0")
    assert_user_error(cli("instruct", "--model", model, "--template", "{sentence} [T] [P]", "--out", tmp_path / "y"),
                      "[T] slots")
