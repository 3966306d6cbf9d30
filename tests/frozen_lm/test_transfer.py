"""frozen_lm.transfer: a result of one model evaluated on another. Discrete prompts (search, PEZ, the
manual template, demonstrations) go as text, with the drift of their tokens counted; the same
tokenizer keeps the ids; a soft prompt, prefix or fine-tuned weights on another shape is refused in
one line. Tiny models of two vocabularies: GPT-2 byte-level BPE and Llama word-level."""

from __future__ import annotations

import pytest

import frozen_lm
from frozen_lm import PromptTask, configs, evaluate, load_result
from frozen_lm.errors import UserError
from frozen_lm.evaluate import DiscretePrompt
from frozen_lm.model import FrozenLM
from frozen_lm.testing import tiny_model
from frozen_lm.transfer import TextPrompt, drift, sourced

LABELS = {"0": "terrible", "1": "great"}
TRIG, MANUAL = "{sentence} [T] [T] [T] [P]", "{sentence} It was [P] ."
TRAIN, DEV = "demo:sentiment:train", "demo:sentiment:dev"


def run(method: str, lm, template: str, **values):
    m = frozen_lm.methods()[method]
    task = PromptTask(lm, template, LABELS)
    return frozen_lm.run(m, task, TRAIN, DEV, configs.from_dict(m.config, values), progress=False)


@pytest.fixture(scope="module")
def other_llama():
    """A tiny Llama with other weights and the same word-level tokenizer, under another name."""
    model, tok = tiny_model("llama", seed=1)
    return FrozenLM(model, tok, name="other-llama")


def test_search_result_goes_as_text_and_counts_the_drift(tiny, tmp_path):
    found = run("autoprompt", tiny("gpt2"), TRIG, iters=2, num_cand=5)
    on_llama = PromptTask(tiny("llama"), TRIG, LABELS)
    m = evaluate(on_llama, DEV, prompt=found)
    moved = m["transfer"]
    assert moved["source_model"] == "tiny-gpt2" and moved["target_model"] == "tiny-llama"
    d = moved["drift"]
    assert d["how"] == "text" and d["source_tokens"] == found.trigger_tokens
    # the text is kept: each slot's token, written where its [T] was (the template's space before it)
    assert [w.strip() for w in d["written"]] == [t.strip() for t in found.trigger_tokens]
    assert d["template"] == found.filled_template
    assert d["n_tokens_before"] == 3 and d["n_tokens_after"] == sum(len(t) for t in d["target_tokens"])
    assert d["n_one_token"] == sum(d["one_token"]) and len(d["one_token"]) == 3
    # the score is the template with the text written in, on the other model
    plain = evaluate(PromptTask(tiny("llama"), d["template"], LABELS), DEV)
    assert m["accuracy"] == plain["accuracy"] and m["n_scored"] == plain["n_scored"]
    # a saved and loaded result moves the same way
    found.save(tmp_path / "run")
    assert evaluate(on_llama, DEV, prompt=load_result(tmp_path / "run"))["transfer"] == moved


def test_drift_counts_split_and_unknown_tokens(tiny):
    bpe, words = tiny("gpt2").tokenizer, tiny("llama").tokenizer
    text = TextPrompt.from_tokens("{sentence} [T] [T] [P]", [0, 1], ["great", "documentary"], "great documentary")
    assert text.written() == "{sentence} great documentary [P]"
    d = drift(text, bpe)
    assert d["target_tokens"][0] == [" great"] and len(d["target_tokens"][1]) > 1  # split into pieces there
    assert d["one_token"] == [True, False] and d["n_tokens_after"] == 1 + len(d["target_tokens"][1])
    unknown = drift(TextPrompt.from_tokens("{sentence} [T] [P]", [0], [" zyxw"], " zyxw"), words)
    assert unknown["target_tokens"] == [["[UNK]"]] and unknown["n_unknown"] == 1
    # glued slots: byte-level tokens carry their own spaces; word-level ones are written with a space between
    glued = TextPrompt.from_tokens("[T][T]{sentence} [P]", [0, 1], [" great", " film"], " great film")
    assert glued.written() == "great film{sentence} [P]"
    spaced = TextPrompt.from_tokens("[T][T]{sentence} [P]", [0, 1], ["great", "film"], "great film")
    assert spaced.written() == "great film{sentence} [P]"
    assert drift(spaced, words)["target_tokens"] == [["great"], ["film"]]
    with pytest.raises(UserError, match="template syntax"):
        TextPrompt.from_tokens("{sentence} [T] [P]", [0], ["{x}"], "{x}").written()


def test_same_tokenizer_keeps_the_ids(tiny, other_llama):
    found = run("autoprompt", tiny("llama"), TRIG, iters=2, num_cand=5)
    m = evaluate(PromptTask(other_llama, TRIG, LABELS), DEV, prompt=found)
    assert m["transfer"]["drift"]["how"] == "ids" and m["transfer"]["drift"]["n_tokens_after"] == 3
    direct = evaluate(PromptTask(other_llama, TRIG, LABELS), DEV, prompt=DiscretePrompt(found.trigger_ids, [], ""))
    assert m["accuracy"] == direct["accuracy"]


def test_manual_pez_and_demonstrations_move_as_text(tiny):
    llama = tiny("llama")
    manual = run("manual", tiny("gpt2"), MANUAL)
    m = evaluate(PromptTask(llama, MANUAL, LABELS), DEV, prompt=manual)
    assert m["transfer"]["drift"]["template"] == MANUAL and m["transfer"]["drift"]["n_tokens_before"] == 0
    assert m["accuracy"] == evaluate(PromptTask(llama, MANUAL, LABELS), DEV)["accuracy"]
    pez = run("pez", llama, TRIG, steps=2, eval_every=1)
    p = evaluate(PromptTask(tiny("gpt2"), TRIG, LABELS), DEV, prompt=pez)["transfer"]["drift"]
    assert p["how"] == "text" and p["source_tokens"] == pez.trigger_tokens and p["n_tokens_before"] == 3
    demos = run("icl", tiny("gpt2"), MANUAL)
    d = evaluate(PromptTask(llama, MANUAL, LABELS), DEV, prompt=demos)
    assert d["n_scored"] == 32 and d["transfer"]["target_model"] == "tiny-llama"


@pytest.mark.parametrize("method, values, why", [
    ("prompt", {"steps": 2, "eval_every": 1}, "soft prompt"),
    ("prefix", {"steps": 2, "eval_every": 1, "num_virtual_tokens": 2}, "prefix"),
    ("lora", {"steps": 2, "eval_every": 1}, "trained weights"),
])
def test_soft_prompts_prefixes_and_weights_are_refused_on_another_shape(tiny, method, values, why):
    trained = run(method, tiny("llama"), TRIG if method == "prompt" else MANUAL, **values)
    other = PromptTask(tiny("gpt2"), TRIG if method == "prompt" else MANUAL, LABELS)
    with pytest.raises(UserError) as e:
        evaluate(other, DEV, prompt=trained)
    message = str(e.value)
    assert "\n" not in message and why in message and "was made with model 'tiny-llama'" in message
    assert "only discrete prompts" in message
    with pytest.raises(UserError, match=why):
        frozen_lm.transfer.task_for(trained, tiny("gpt2"))


def test_a_reading_marked_with_its_model_moves_as_text(tiny):
    llama = tiny("llama")
    trained = run("prompt", llama, TRIG, steps=2, eval_every=1)
    source = PromptTask(llama, TRIG, LABELS)
    reading = next(d.prompt for d in frozen_lm.methods()["prompt"].derived(trained, source))
    m = evaluate(PromptTask(tiny("gpt2"), TRIG, LABELS), DEV, prompt=sourced(reading, source))
    d = m["transfer"]["drift"]
    assert d["how"] == "text" and d["source_tokens"] == list(reading.tokens) and m["n_scored"] == 32
    same = evaluate(source, DEV, prompt=sourced(reading, source))  # its own model: the ids as they are
    assert "transfer" not in same and same["accuracy"] == evaluate(source, DEV, prompt=reading)["accuracy"]


def test_a_soft_prompt_on_a_model_of_the_same_shape_binds_as_before(tiny, other_llama):
    trained = run("prompt", tiny("llama"), TRIG, steps=2, eval_every=1)
    m = evaluate(PromptTask(other_llama, TRIG, LABELS), DEV, prompt=trained)
    assert "transfer" not in m and m["n_scored"] == 32
