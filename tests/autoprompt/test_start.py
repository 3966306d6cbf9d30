"""Search started from the user's hand-written template (--from-template, --keep, --extra-slots):
the slot mapping for BPE and WordPiece tokenizers, pinned words, and the never-below-start guarantee."""

from __future__ import annotations

import pytest
import torch

import autoprompt
from autoprompt import AutoPromptConfig
from autoprompt.start import slot_template
from frozen_lm import PromptTask, evaluate
from frozen_lm import data as data_mod
from frozen_lm.errors import UserError
from tests.conftest import assert_user_error

CAPITAL = "The capital of {sub_label} is [P] ."


@pytest.mark.parametrize("kind, manual", [
    ("gpt2", CAPITAL), ("llama", CAPITAL), ("bert", CAPITAL), ("bert", "[CLS] The capital of {sub_label} is [P] . [SEP]"),
    ("gpt2", "{sentence} It was really [P]"), ("bert", "Review: {sentence} overall it was [P] !")])
def test_slot_template_encodes_exactly_like_the_manual_template(tiny, kind, manual):
    lm = tiny(kind)
    task = PromptTask(lm, manual, multi_token="first") if "sub_label" in manual else PromptTask(lm, manual, "0=terrible,1=great")
    template, ids = slot_template(task, manual)
    words = [w for w in manual.replace("[P]", "").split() if not w.startswith(("{", "[")) and w not in ".!"]
    assert template.count("[T]") == len(ids) >= len(words)
    assert "[CLS]" not in template or template.startswith("[CLS]")  # special tokens stay text
    data = data_mod.load("demo:capitals:dev" if "sub_label" in manual else "demo:sentiment:dev")
    a = task.encode(data).rows
    b = task.derive(template=template).encode(data, torch.tensor(ids)).rows
    assert torch.equal(a.input_ids, b.input_ids) and torch.equal(a.predict_pos, b.predict_pos)


def test_bpe_slots_hold_leading_space_tokens(tiny):
    lm = tiny("gpt2")
    task = PromptTask(lm, CAPITAL, multi_token="first")
    template, ids = slot_template(task, CAPITAL)
    assert template.startswith("[T]") and "{sub_label}" in template and template.endswith("[P] .")
    texts = [lm.tokenizer.decode([i]) for i in ids]
    assert "".join(texts).replace(" ", "") == "Thecapitalofis" and texts[-1].startswith(" ")


def test_keep_pins_words_and_extra_slots(tiny):
    lm = tiny("llama")
    task = PromptTask(lm, CAPITAL)
    template, ids = slot_template(task, CAPITAL, keep={"is", "of"}, extra=2, fill=7)
    assert template == "[T] [T] of {sub_label} is [T] [T] [P] ." and ids[-2:] == [7, 7] and len(ids) == 4
    with pytest.raises(UserError, match="`keep` opposite: not a word"):
        slot_template(task, CAPITAL, keep={"opposite"})
    with pytest.raises(UserError, match="already has \\[T\\] slots"):
        slot_template(task, "{sub_label} [T] [P]")


def test_pinned_words_never_change_and_the_result_never_ends_below_its_start(tiny):
    lm = tiny("llama")
    base = PromptTask(lm, "{sub_label} [T] [P]")
    manual = base.derive(template=CAPITAL)
    for seed in (0, 1, 2):  # a noisy search: one example scores each candidate
        cfg = AutoPromptConfig(iters=5, num_cand=8, slots="all", eval_size=1, batch_size=4, seed=seed,
                           from_template=CAPITAL, keep="is")
        r = autoprompt.search(base, "demo:capitals:train", "demo:capitals:dev", cfg, test="demo:capitals:dev",
                              progress=False)
        assert r.task.template == "[T] [T] [T] {sub_label} is [P] ."
        assert all(len(h["trigger_ids"]) == 3 for h in r.history)  # 'is' is text, never a slot
        assert r.filled_template.endswith(" is [P] .")
        assert r.metrics["start_dev"] == evaluate(manual, "demo:capitals:dev")  # the start is the manual prompt
        assert r.metrics["dev"]["p_at_1"] >= r.metrics["start_dev"]["p_at_1"]
        assert r.metrics["test"] == r.metrics["dev"] and r.metrics["start_test"] == r.metrics["start_dev"]
        assert evaluate(manual, "demo:capitals:dev", prompt=r) == r.metrics["dev"]  # the manual task binds too


def test_cli_from_template(cli, tiny_folder, tmp_path):
    args = ("search", "--model", tiny_folder("llama"), "--train", "demo:capitals", "--iters", "1", "--num-cand", "3",
            "--no-progress")
    result = cli(*args, "--from-template", CAPITAL, "--keep", "is", "--extra-slots", "1", "--out", tmp_path / "r")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(line.startswith("manual") and CAPITAL in line for line in lines)
    assert_user_error(cli(*args, "--keep", "is"), "--keep shapes a start from a hand-written template; give --from-template too")
    assert_user_error(cli(*args, "--from-template", CAPITAL, "--keep", "nope"), "--keep nope: not a word")
    assert_user_error(cli(*args, "--from-template", "  "), "--from-template is empty")
