"""Candidate trigger tokens: which tokens may be triggers, HotFlip top-k, and candidate trigger sets.

Pure functions on tensors (plus one tokenizer pass to build the allowed-token mask).
"""

from __future__ import annotations

import torch


def allowed_tokens(tokenizer, vocab_size: int, exclude: list[int] | tuple[int, ...] = (),
                   no_capitalized: bool = False, ascii_only: bool = False) -> torch.Tensor:
    """(V,) bool: tokens that may be used as triggers.

    Removed: special tokens, `exclude` (the label words' tokens), tokens that do not survive
    decode -> re-encode (so a saved trigger reads back as the same ids), empty tokens, and optionally
    tokens with an upper-case letter, or (ascii_only) any character that is not printable ASCII:
    non-ASCII letters, and also newlines, tabs and control characters, as nanoGCG's filter.
    """
    ok = torch.ones(vocab_size, dtype=torch.bool)
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    texts = [tokenizer.decode([i]) for i in range(vocab_size)]
    encoded = tokenizer(texts, add_special_tokens=False).input_ids
    for i, (text, ids) in enumerate(zip(texts, encoded)):
        if (i in special or not text.strip() or list(ids) != [i]
                or (no_capitalized and any(c.isupper() for c in text))
                or (ascii_only and not (text.isascii() and text.isprintable()))):
            ok[i] = False
    if exclude:
        ok[torch.as_tensor(list(exclude), dtype=torch.long)] = False
    return ok


def hotflip_candidates(grad: torch.Tensor, allowed: torch.Tensor, k: int) -> torch.Tensor:
    """Top-k tokens per slot that most decrease the loss to first order.

    grad (S, V): d loss / d onehot (from FrozenLM.token_gradients); allowed (V,) bool.
    Returns (S, k) token ids, best first: argmax of -grad over the allowed tokens.
    """
    score = (-grad.float()).masked_fill(~allowed.to(grad.device)[None], float("-inf"))
    return score.topk(min(k, int(allowed.sum())), dim=-1).indices


def one_slot_variants(trigger: torch.Tensor, slot: int, tokens: torch.Tensor) -> torch.Tensor:
    """trigger (S,), tokens (k,) -> (k, S): the trigger with `slot` replaced by each token."""
    out = trigger[None].repeat(tokens.shape[0], 1)
    out[:, slot] = tokens
    return out


def all_slot_variants(trigger: torch.Tensor, cands: torch.Tensor) -> torch.Tensor:
    """trigger (S,), cands (S, k) -> (S*k, S): every single-slot replacement (slot-major)."""
    return torch.cat([one_slot_variants(trigger, s, cands[s]) for s in range(cands.shape[0])])


def dedupe(triggers: torch.Tensor, keep_first: torch.Tensor | None = None) -> torch.Tensor:
    """Unique rows of triggers (N, S) in first-seen order; rows equal to any of keep_first (M, S)
    are dropped (e.g. the current beam, already scored)."""
    seen = set() if keep_first is None else {tuple(t.tolist()) for t in keep_first}
    keep = []
    for i, t in enumerate(triggers.tolist()):
        if tuple(t) not in seen:
            seen.add(tuple(t))
            keep.append(i)
    return triggers[keep]
