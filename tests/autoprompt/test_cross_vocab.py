"""autoprompt.cross_vocab: a model of another tokenizer adds its gradient through the tokens the two
vocabularies share. Pure tensor checks, then TextModel.gradient on tiny models: a model read as text
that has the same vocabulary gives exactly the first model's gradient on every shared token, and
another vocabulary (byte-level BPE) moves the proposals."""

from __future__ import annotations

import torch

import autoprompt
from autoprompt.config import AutoPromptConfig
from autoprompt.cross_vocab import VocabMap, mapped_gradient, slot_template
from autoprompt.hotflip import HotFlip
from autoprompt.models import MultiSearcher, TextModel
from frozen_lm import PromptTask
from frozen_lm.transfer import TextPrompt

LABELS = {"0": "terrible", "1": "great"}
TRIG = "{sentence} [T] [T] [T] [P]"
TRAIN, DEV = "demo:sentiment:train", "demo:sentiment:dev"


def test_slot_template_writes_each_slot_as_its_token_count():
    assert slot_template("[T]x3 {sentence} It was [P] .", [1, 2, 1]) == "[T] [T] [T] [T] {sentence} It was [P] ."
    assert slot_template("{sentence} [T] [T] [P]", [0, 3]) == "{sentence} [T] [T] [T] [P]"


def test_mapped_gradient_reads_the_other_vocabulary_and_leaves_the_rest_neutral():
    grad = torch.arange(3 * 5, dtype=torch.float32).view(3, 5)  # 3 tokens there (slot 0: 1, slot 1: 2), V2 = 5
    maps = [torch.tensor([4, -1, 0, 2]), torch.tensor([0, 1, 2, 3])]  # V1 = 4
    out = mapped_gradient(grad, [1, 2], torch.tensor([3, 1, 2]), maps, 4)
    assert out.shape == (2, 4)
    assert out[0].tolist() == [4.0, 3.0, 0.0, 2.0]  # token 1 has no single token there: the current one's value
    assert out[1].tolist() == [0.0] * 4  # a slot of two tokens there: a constant row
    assert mapped_gradient(grad, [1, 2], torch.tensor([3, 1, 2]), [None, None], 4).abs().sum() == 0


def test_the_vocabulary_map_follows_the_slot_rule(tiny):
    tok = tiny("gpt2").tokenizer  # byte-level BPE: a token that is part of a character reads back as others
    vocab = VocabMap(tok, tok, 300)
    raw = vocab.of(("", False, False))
    assert (raw == torch.arange(300))[raw >= 0].all() and int((raw >= 0).sum()) > 150
    spaced = vocab.of((" ", True, False))  # ' ' + the text without its own space: another token where one exists
    assert not torch.equal(spaced, raw)


def test_a_text_model_of_the_same_vocabulary_gives_the_first_models_gradient(tiny):
    cfg = AutoPromptConfig(batch_size=8)
    first = PromptTask(tiny("llama"), TRIG, LABELS)
    both = MultiSearcher(first, cfg, HotFlip(cfg), first.encode(TRAIN), first.encode(DEV), [], [first], TRAIN, DEV)
    trigger, batches = torch.tensor([5, 6, 7]), [torch.arange(0, 8)]
    own, loss = super(MultiSearcher, both).gradient(trigger, batches)  # the first model's alone
    text = both.texts[0]
    carried, text_loss = text.gradient(both, trigger, batches)
    assert abs(text_loss - loss) < 1e-5
    shared = torch.stack([text.vocab.of(rule) for rule in text.text(trigger).slot_rules()]) >= 0
    assert shared.float().mean() > 0.5
    assert torch.allclose(carried[shared], own[shared], atol=1e-5)
    current = own.gather(1, trigger[:, None]).expand_as(own)
    assert torch.allclose(carried[~shared], current[~shared], atol=1e-5)  # no single token: neutral


def test_another_vocabulary_moves_the_proposals_and_can_be_turned_off(tiny):
    task = PromptTask(tiny("llama"), TRIG, LABELS)
    cfg = AutoPromptConfig(batch_size=8)
    text = TextModel(PromptTask(tiny("gpt2"), TRIG, LABELS), task, TRAIN, DEV)
    both = MultiSearcher(task, cfg, HotFlip(cfg), task.encode(TRAIN), task.encode(DEV), [],
                         [PromptTask(tiny("gpt2"), TRIG, LABELS)], TRAIN, DEV)
    trigger, batches = torch.tensor([40, 52, 60]), [torch.arange(0, 8)]  # armenia (several tokens there), bad, beautiful
    grad, loss = text.gradient(both, trigger, batches)
    assert grad.shape == (3, tiny("llama").vocab_size) and torch.isfinite(grad).all() and loss > 0
    assert grad[0].abs().sum() == 0 and grad[1].abs().sum() > 0 and grad[2].abs().sum() > 0
    assert len(grad[1].unique()) > 10  # the words one token there get their own values
    runs = [autoprompt.search(task, TRAIN, DEV, AutoPromptConfig(iters=3, num_cand=4, seed=2, cross_gradients=on),
                              progress=False, models=[tiny("gpt2")]) for on in (True, True, False)]
    ids = [[h["trigger_ids"] for h in r.history] for r in runs]
    assert ids[0] == ids[1]  # same seed, same result
    assert [h["loss"] for h in runs[0].history] != [h["loss"] for h in runs[2].history]  # the mean over 2 models' losses
    assert runs[0].config.cross_gradients and not runs[2].config.cross_gradients


def test_text_prompt_rules_write_the_pieces():
    p = TextPrompt.from_tokens("[T] [T] {sentence} [T] [P]", [1, 2, 3], ["Ġa", " b", "c"], "Ġa bc")
    assert p.slot_rules() == [("", False, True), (" ", True, False), (" ", True, False)]
