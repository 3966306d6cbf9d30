"""Text from a frozen causal LM: greedy continuation (what a target string is checked against) and
seeded temperature / nucleus sampling of several continuations (what an instruction proposer writes).
Both read the prompt once; sampling draws every token on the CPU from the caller's generator."""

from __future__ import annotations

import inspect

import torch

from frozen_lm.errors import UserError


@torch.no_grad()
def greedy(lm, input_ids: torch.Tensor, max_new_tokens: int) -> list[int]:
    """Greedy continuation (no sampling) of one row of token ids (L,) -> the new token ids."""
    from transformers import GenerationConfig

    ids = input_ids.reshape(1, -1).to(lm.device)
    config = GenerationConfig(do_sample=False, max_new_tokens=max_new_tokens, pad_token_id=lm.pad_id,
                              eos_token_id=getattr(lm.tokenizer, "eos_token_id", None))
    out = lm.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=config)
    return out[0, ids.shape[1]:].tolist()


@torch.no_grad()
def sample(lm, input_ids: torch.Tensor, max_new_tokens: int, *, temperature: float = 1.0, top_p: float = 1.0,
           generator: torch.Generator | None = None, n: int = 1) -> list[list[int]]:
    """`n` sampled continuations of one row of token ids (L,) -> n lists of new token ids, each
    cut after the end-of-sequence token when one comes. Temperature and nucleus (top_p)
    sampling, drawn on the CPU from `generator` (a CPU torch.Generator; None: torch's global
    one), so a seeded generator gives the same texts on any device; temperature 0 is greedy.
    Causal LMs only; the n rows share one prompt and reuse their key/value cache."""
    if lm.is_masked:
        raise UserError(f"{lm.name} is a masked LM; it cannot write text (use a causal LM)")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    eos = getattr(lm.tokenizer, "eos_token_id", None)
    last = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(lm.model.forward).parameters else {}
    out = lm.model(input_ids=input_ids.reshape(1, -1).to(lm.device), use_cache=True, **last)
    cache = getattr(out, "cache", None) or out.past_key_values
    cache.batch_repeat_interleave(n)  # the prompt is read once; its key/values serve the n rows
    logits = out.logits[:, -1].expand(n, -1)
    rows: list[list[int]] = [[] for _ in range(n)]
    done = [False] * n
    for step in range(max_new_tokens):
        drawn = _draw(logits.float().cpu(), temperature, top_p, generator)  # (n,)
        for i, token in enumerate(drawn.tolist()):
            if not done[i]:
                rows[i].append(token)
                done[i] = token == eos
        if all(done) or step == max_new_tokens - 1:
            break
        out = lm.model(input_ids=drawn[:, None].to(lm.device), use_cache=True, **{lm.cache_argument: cache}, **last)
        cache = getattr(out, "cache", None) or out.past_key_values
        logits = out.logits[:, -1]
    return rows


def _draw(logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator | None) -> torch.Tensor:
    """(n, V) next-token logits -> (n,) tokens: argmax at temperature 0, else a draw from the
    softmax at that temperature, restricted to the smallest set of top tokens holding top_p of it."""
    if temperature <= 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits / temperature, dim=-1)
    if top_p >= 1:
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
    ranked, order = probs.sort(dim=-1, descending=True, stable=True)
    ranked = ranked * (ranked.cumsum(-1) - ranked < top_p)  # the mass before a token is under top_p: the first stays
    return order.gather(-1, torch.multinomial(ranked, 1, generator=generator)).squeeze(-1)
