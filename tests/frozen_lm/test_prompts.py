"""The trainable prompt modules every method may use (frozen_lm.prompts): initial values, prefixes in
the model's key/value layout, the effective task, vectors at the [T] slots."""

from __future__ import annotations

import pytest
import torch

from frozen_lm import data as data_mod
from frozen_lm.data import Dataset
from frozen_lm.errors import UserError
from frozen_lm.prompts.effective import effective_task
from frozen_lm.prompts.init import (
    fit_ids,
    frequency_order,
    init_ids,
    parse_init,
    prefix_init,
    prompt_init,
    token_kv,
    typical_norm,
)
from frozen_lm.prompts.prefix import PrefixParams, as_prefix, prefix_logits
from frozen_lm.prompts.soft import place
from frozen_lm.task import PromptTask

LABELS = {"0": "terrible", "1": "great"}


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _task(lm, template="{sentence} [T] [T] [P]"):
    return PromptTask(lm, template, LABELS)


def _demo():
    return data_mod.load("demo:sentiment:dev")


# ------------------------------------------------------------------ inits
def test_init_random_is_scaled_to_embedding_norms(tiny):
    lm = tiny("llama")
    vectors, ids = prompt_init(lm, _task(lm), 4, "random", _gen())
    assert ids is None and vectors.shape == (4, lm.hidden_size)
    assert torch.allclose(vectors.norm(dim=-1), torch.full((4,), typical_norm(lm)), rtol=1e-5)


def test_init_vocab_samples_distinct_frequent_tokens(tiny):
    gpt2, llama = tiny("gpt2"), tiny("llama")
    assert frequency_order(gpt2.tokenizer, gpt2.vocab_size) is not None  # BPE: ids follow merge order
    assert frequency_order(llama.tokenizer, llama.vocab_size) is None  # word level: no known order
    ids = init_ids("vocab", None, 6, gpt2, _task(gpt2), _gen())
    assert len(set(ids)) == 6 and not set(ids) & set(gpt2.tokenizer.all_special_ids)
    vectors, same = prompt_init(gpt2, _task(gpt2), 6, "vocab", _gen())
    assert same == ids and torch.allclose(vectors, gpt2.embed(torch.tensor(ids)))


def test_init_text_repeats_or_cuts_and_labels_come_first(tiny):
    lm = tiny("llama")
    ids = lm.tokenizer("it was", add_special_tokens=False).input_ids
    assert init_ids("text", "it was", 5, lm, _task(lm), _gen()) == (ids * 3)[:5]
    assert init_ids("text", "it was", 1, lm, _task(lm), _gen()) == ids[:1]
    with pytest.raises(UserError, match="2 tokens but there are only 1 slots"):
        fit_ids(ids, 1, truncate=False, what="init text 'it was'")
    labels = init_ids("labels", None, 4, lm, _task(lm), _gen())
    words = lm.tokenizer("terrible great", add_special_tokens=False).input_ids
    assert labels[:2] == words and len(set(labels)) == 4
    assert parse_init('text:"a b"') == ("text", "a b")


# ------------------------------------------------------------------ prefixes and the effective task
@pytest.mark.parametrize("kind,layout", [("gpt2", (2, 2, 2, 3, 16)), ("llama", (2, 2, 1, 3, 8)), ("bert", (2, 2, 2, 3, 16))])
def test_prefix_shapes_follow_kv_layout(tiny, kind, layout):
    lm = tiny(kind)
    for spec in ("text:it was great", "random"):
        kv, _ = prefix_init(lm, _task(lm, "{sentence} [P]"), 3, spec, _gen())
        assert tuple(kv.shape) == layout
    rows = _task(lm, "{sentence} [P]").encode(_demo()).rows.subset([0, 1])
    logits = prefix_logits(lm, rows, kv)
    assert logits.shape == (*rows.predict_pos.shape, lm.vocab_size) and torch.isfinite(logits).all()


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_token_prefix_equals_prepended_text(tiny, kind):
    """Key/values of real tokens as a prefix give the same logits as those tokens in the input (GQA too)."""
    lm = tiny(kind)
    text = lm.tokenizer("it was great", add_special_tokens=False).input_ids
    row = lm.tokenizer(" a nice movie", add_special_tokens=False).input_ids
    kv = token_kv(lm, text)
    with_prefix = lm.logits_at(torch.tensor([[len(row) - 1]]), input_ids=torch.tensor([row]), prefix=as_prefix(kv))
    joined = lm.logits_at(torch.tensor([[len(text) + len(row) - 1]]), input_ids=torch.tensor([text + row]))
    assert torch.allclose(with_prefix, joined, atol=1e-4)


def test_long_rows_leave_room_for_the_prefix(tiny):
    lm = tiny("gpt2")  # 128 positions
    task, k = effective_task(_task(lm, "{sentence} [T] [P]"), "prefix", 20)
    assert k == 20 and task.spec.template == "{sentence} [P]" and task.spec.reserved_positions == 20
    rows = task.encode(Dataset("long", [{"sentence": "great movie " * 200, "label": 1}])).rows
    assert rows.input_ids.shape[1] <= 108
    assert torch.isfinite(prefix_logits(lm, rows, prefix_init(lm, task, 20, "random", _gen())[0])).all()


def test_effective_task_prepends_slots_and_keeps_an_effective_task(tiny):
    lm = tiny("llama")
    task = _task(lm, "{sentence} it was [P]")
    eff, k = effective_task(task, "prompt", 3)
    assert (eff.spec.template, k) == ("[T][T][T]{sentence} it was [P]", 3) and task.spec.template == "{sentence} it was [P]"
    same, k = effective_task(eff, "prompt", 3, effective=eff.spec.template)
    assert same is eff and k == 3
    with pytest.raises(UserError, match="has no \\[T\\] slots"):
        effective_task(task, "prompt")



def test_prefix_removes_every_slot_including_repeats():
    """'[T]x3' is three slots: prefix tuning removes them all, leaving no stray 'x3' in the text."""
    from frozen_lm.prompts.effective import effective_template

    assert effective_template("[T]x3 {sentence} It was [P]", "prefix") == ("{sentence} It was [P]", 3)
    assert effective_template("{sentence} [T] [T]x2 it was [P]", "prefix") == ("{sentence} it was [P]", 3)

def test_prefix_mlp_starts_at_init_and_folds(tiny):
    lm = tiny("llama")
    kv, _ = prefix_init(lm, None, 3, "random", _gen())
    params = PrefixParams(kv, projection=True, hidden=16, input_size=lm.hidden_size, generator=_gen())
    assert torch.equal(params(), kv)
    with torch.no_grad():
        params.mlp[2].weight.normal_(generator=_gen(1))
    folded = params.fold()
    assert not torch.allclose(folded, kv) and set(params.tensors()) == {"prefix", "prefix_init"}
    rows = _task(lm, "{sentence} [P]").encode(_demo()).rows.subset([0, 1])
    assert torch.allclose(params.logits(lm, rows), prefix_logits(lm, rows, folded))


def test_prompt_vectors_sit_at_the_slots(tiny):
    lm = tiny("llama")
    rows = _task(lm).encode(_demo()).rows.subset([0, 1])
    vectors = torch.randn(2, lm.hidden_size)
    embeds = place(lm, rows, vectors)
    assert torch.equal(embeds[1, rows.trigger_pos[1, 1]], vectors[1])
    assert torch.equal(embeds[0, 0], lm.embed(rows.input_ids[0, :1])[0])
