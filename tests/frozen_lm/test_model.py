"""FrozenLM on tiny random models: frozen weights, logits/hidden at positions, one-hot token gradients
against finite differences, prefix key/values against the full pass, functional weight overrides."""

from __future__ import annotations

import pytest
import torch

from frozen_lm.errors import UserError
from frozen_lm.model import FrozenLM
from frozen_lm.testing import tiny_lm, tiny_model

KINDS = ["bert", "gpt2", "llama"]


def batch(lm, lengths=(7, 5, 9), seed=0):
    """Right-padded random rows (R, L), their mask, and 2 read positions per row inside the row."""
    g = torch.Generator().manual_seed(seed)
    length = max(lengths)
    ids = torch.randint(5, lm.vocab_size, (len(lengths), length), generator=g)
    mask = (torch.arange(length)[None] < torch.tensor(lengths)[:, None]).long()
    ids = ids.masked_fill(mask == 0, lm.pad_id)
    positions = torch.tensor([[1, n - 1] for n in lengths])
    return ids, mask, positions


def full_logits(lm, ids, mask):
    with torch.no_grad():
        return lm.model(input_ids=ids, attention_mask=mask).logits


@pytest.mark.parametrize("kind", KINDS)
def test_frozen_and_kind(tiny, kind):
    lm = tiny(kind)
    assert not lm.model.training
    assert all(not p.requires_grad for p in lm.model.parameters())
    assert lm.kind == ("masked" if kind == "bert" else "causal") and lm.is_masked == (kind == "bert")
    model, tok = tiny_model(kind)
    assert FrozenLM(model, tok).kind == lm.kind  # detected from the class name


@pytest.mark.parametrize("kind", KINDS)
def test_embed_and_embedding_matrix(tiny, kind):
    lm = tiny(kind)
    ids = torch.tensor([[5, 6, 7], [8, 9, 10]])
    assert lm.embedding_matrix.shape == (lm.vocab_size, lm.hidden_size) == (len(lm.tokenizer), 32)
    assert lm.embed_scale == 1.0
    assert torch.equal(lm.embed(ids), lm.embedding_matrix[ids] * lm.embed_scale)
    assert lm.embedding_matrix is lm.model.get_input_embeddings().weight
    assert lm.device.type == "cpu" and lm.dtype == torch.float32


@pytest.mark.parametrize("kind", KINDS)
def test_logits_and_hidden_at_positions(tiny, kind):
    lm = tiny(kind)
    ids, mask, pos = batch(lm)
    with torch.no_grad():
        logits = lm.logits_at(pos, input_ids=ids, attention_mask=mask)
        hidden = lm.hidden_at(pos, input_ids=ids, attention_mask=mask)
        from_embeds = lm.logits_at(pos, inputs_embeds=lm.embed(ids), attention_mask=mask)
    assert logits.shape == (3, 2, lm.vocab_size) and hidden.shape == (3, 2, lm.hidden_size)
    want = full_logits(lm, ids, mask).gather(1, pos[..., None].expand(-1, -1, lm.vocab_size))
    torch.testing.assert_close(logits, want, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(lm.head(hidden), logits, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(from_embeds, logits, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="exactly one"):
        lm.logits_at(pos, input_ids=ids, inputs_embeds=lm.embed(ids))


# ------------------------------------------------------------------ token gradients
@pytest.fixture(scope="module")
def double_lm():
    made = {}

    def get(kind):
        if kind not in made:
            lm = tiny_lm(kind, seed=1)
            lm.model.double()
            made[kind] = lm
        return made[kind]

    return get


def _slot_setup(lm):
    ids, mask, _ = batch(lm, lengths=(8, 8), seed=2)
    slot_pos = torch.tensor([[2, 4], [2, 4]])
    ids[:, 2], ids[:, 4] = 11, 12  # the same slot tokens in every row
    read = torch.tensor([[7], [6]])
    target = torch.tensor([20, 30])

    def loss_fn(logits):
        return -logits[:, 0].log_softmax(-1).gather(1, target[:, None]).mean()

    return ids, mask, slot_pos, read, loss_fn


@pytest.mark.parametrize("kind", KINDS)
def test_token_gradients_are_directional_derivatives(double_lm, kind):
    lm = double_lm(kind)
    ids, mask, slot_pos, read, loss_fn = _slot_setup(lm)
    grads = lm.token_gradients(ids, mask, slot_pos, read, loss_fn)
    assert grads.shape == (2, lm.vocab_size)
    E = lm.embedding_matrix

    def loss_at(slot, delta):
        embeds = lm.embed(ids).clone()
        embeds[:, slot_pos[0, slot]] += delta
        with torch.no_grad():
            return float(loss_fn(lm.logits_at(read, inputs_embeds=embeds, attention_mask=mask)))

    # Llama's RMSNorm computes in float32 even for a float64 model: a larger step keeps that rounding small
    eps, rel = (1e-2, 2e-3) if kind == "llama" else (1e-4, 1e-5)
    for s, cur in enumerate(ids[0, slot_pos[0]].tolist()):
        for v in (3, 50, 100, lm.vocab_size - 1):
            d = E[v] - E[cur]
            numeric = (loss_at(s, eps * d) - loss_at(s, -eps * d)) / (2 * eps)
            linear = float(grads[s, v] - grads[s, cur])
            assert linear == pytest.approx(numeric, rel=rel, abs=1e-9), (kind, s, v)


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_token_gradients_predict_token_swaps(double_lm, kind):
    """The HotFlip linearization ranks real swaps: its predicted loss change correlates with the true one."""
    lm = double_lm(kind)
    ids, mask, slot_pos, read, loss_fn = _slot_setup(lm)
    grads = lm.token_gradients(ids, mask, slot_pos, read, loss_fn)
    cands = torch.arange(5, lm.vocab_size, 5)
    swapped = ids[None].repeat(len(cands), 1, 1)
    swapped[:, :, slot_pos[0, 0]] = cands[:, None]
    n, r = len(cands), ids.shape[0]
    with torch.no_grad():  # every swap in one batched pass: (N * R) rows, loss averaged per candidate
        base = loss_fn(lm.logits_at(read, input_ids=ids, attention_mask=mask))
        logits = lm.logits_at(read.repeat(n, 1), input_ids=swapped.reshape(n * r, -1), attention_mask=mask.repeat(n, 1))
        true = torch.stack([loss_fn(chunk) for chunk in logits.split(r)]) - base
    predicted = grads[0, cands] - grads[0, ids[0, slot_pos[0, 0]]]
    corr = torch.corrcoef(torch.stack([predicted, true.to(predicted.dtype)]))[0, 1]
    assert corr > 0.8, float(corr)


# ------------------------------------------------------------------ prefix key/values
@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_prefix_equals_full_pass(tiny, kind):
    lm = tiny(kind)
    ids, _, _ = batch(lm, lengths=(9, 9, 9), seed=3)
    p = 4
    prefix = lm.compute_prefix(ids[:, :p])
    n_layers, kv_heads, head_dim = lm.kv_layout()
    assert len(prefix.keys) == n_layers and prefix.keys[0].shape == (3, kv_heads, p, head_dim)
    pos = torch.tensor([[0, 4]] * 3)
    with torch.no_grad():
        tail = lm.logits_at(pos, input_ids=ids[:, p:], prefix=prefix)
        full = lm.logits_at(pos + p, input_ids=ids)
    torch.testing.assert_close(tail, full, atol=1e-5, rtol=1e-4)
    # one prefix row broadcast to every row
    one = lm.compute_prefix(ids[:1, :p])
    shared = ids[:1, :p].expand(3, -1)
    with torch.no_grad():
        tail = lm.logits_at(pos, input_ids=ids[:, p:], prefix=one)
        full = lm.logits_at(pos + p, input_ids=torch.cat([shared, ids[:, p:]], 1))
    torch.testing.assert_close(tail, full, atol=1e-5, rtol=1e-4)


def test_llama_has_one_kv_head(tiny):
    assert tiny("llama").kv_layout() == (2, 1, 8)


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_right_padded_prefixes_of_different_lengths(tiny, kind):
    lm = tiny(kind)
    g = torch.Generator().manual_seed(4)
    lens = [2, 5, 3]
    pre = torch.randint(5, lm.vocab_size, (3, 5), generator=g)
    pmask = (torch.arange(5)[None] < torch.tensor(lens)[:, None]).long()
    pre = pre.masked_fill(pmask == 0, lm.pad_id)
    tail_lens = [4, 2, 3]
    tail = torch.randint(5, lm.vocab_size, (3, 4), generator=g)
    tmask = (torch.arange(4)[None] < torch.tensor(tail_lens)[:, None]).long()
    prefix = lm.compute_prefix(pre, pmask)
    assert prefix.lengths(3, "cpu").tolist() == lens
    pos = torch.tensor([[0, n - 1] for n in tail_lens])
    with torch.no_grad():
        got = lm.logits_at(pos, input_ids=tail, attention_mask=tmask, prefix=prefix)
        for r in range(3):
            row = torch.cat([pre[r, : lens[r]], tail[r, : tail_lens[r]]])[None]
            want = lm.logits_at(pos[r: r + 1] + lens[r], input_ids=row)
            torch.testing.assert_close(got[r: r + 1], want, atol=1e-5, rtol=1e-4)


def test_masked_lm_has_no_computed_prefix(tiny):
    with pytest.raises(UserError, match="causal LM"):
        tiny("bert").compute_prefix(torch.tensor([[5, 6]]))


# ------------------------------------------------------------------ params overrides
@pytest.mark.parametrize("kind", KINDS)
def test_params_overrides(tiny, kind):
    lm = tiny(kind)
    ids, mask, pos = batch(lm)
    params = lm.named_parameters()
    before = {k: v.clone() for k, v in params.items()}
    with torch.no_grad():
        base = lm.logits_at(pos, input_ids=ids, attention_mask=mask)
        same = lm.logits_at(pos, input_ids=ids, attention_mask=mask, params=dict(params))
    assert torch.equal(same, base)
    name = next(k for k in params if "layers.0" in k or ".h.0." in k or "layer.0." in k)
    zeros = {name: torch.zeros_like(params[name])}
    with torch.no_grad():
        changed = lm.logits_at(pos, input_ids=ids, attention_mask=mask, params=zeros)
    assert not torch.allclose(changed, base)
    # overrides carry gradients (subspace training) while the model stays frozen
    emb_name = next(k for k, v in params.items() if v is lm.embedding_matrix)
    theta = params[emb_name].clone().requires_grad_(True)
    lm.logits_at(pos, input_ids=ids, attention_mask=mask, params={emb_name: theta}).square().sum().backward()
    assert theta.grad is not None and theta.grad.abs().sum() > 0
    assert all(torch.equal(v, before[k]) and not v.requires_grad for k, v in lm.named_parameters().items())
    with torch.no_grad():
        assert torch.equal(lm.logits_at(pos, input_ids=ids, attention_mask=mask), base)


def test_prefix_with_embeds_and_params(tiny):
    lm = tiny("llama")
    ids, _, _ = batch(lm, lengths=(8, 8), seed=5)
    prefix = lm.compute_prefix(ids[:, :3])
    pos = torch.tensor([[0, 4], [1, 4]])
    with torch.no_grad():
        by_ids = lm.logits_at(pos, input_ids=ids[:, 3:], prefix=prefix)
        by_embeds = lm.logits_at(pos, inputs_embeds=lm.embed(ids[:, 3:]), prefix=prefix)
        by_params = lm.logits_at(pos, input_ids=ids[:, 3:], prefix=prefix, params=lm.named_parameters())
    torch.testing.assert_close(by_embeds, by_ids)
    assert torch.equal(by_params, by_ids)
