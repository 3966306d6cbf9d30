"""GCG's pieces (Zou et al., 2023; nanoGCG): candidate sampling, the retokenization filter and probe
sampling's rank agreement. Pure functions on tensors (plus one tokenizer pass for the filter).
"""

from __future__ import annotations

import torch


def sample_candidates(trigger: torch.Tensor, grad: torch.Tensor, allowed: torch.Tensor, width: int, topk: int,
                      n_replace: int, generator: torch.Generator) -> torch.Tensor:
    """`width` candidates from trigger (S,): each changes `n_replace` distinct random slots to a token
    drawn uniformly from that slot's top-k of -grad (S, V) over the allowed tokens (V,) -> (width, S)."""
    n_slots = trigger.shape[0]
    k = min(topk, int(allowed.sum()))
    top = (-grad.float()).masked_fill(~allowed.to(grad.device)[None], float("-inf")).topk(k, dim=-1).indices.cpu()
    pos = torch.argsort(torch.rand(width, n_slots, generator=generator), dim=1)[:, : min(n_replace, n_slots)]
    choice = torch.randint(0, k, pos.shape, generator=generator)
    values = top[pos, choice]
    return trigger.cpu()[None].repeat(width, 1).scatter(1, pos, values)


def slot_windows(input_ids: torch.Tensor, trigger_pos: torch.Tensor) -> list[tuple[int, int]]:
    """(start, end) spans of one row covering each run of adjacent slots and one token on each side."""
    spans, slots = [], sorted(int(p) for p in trigger_pos)
    start = prev = slots[0]
    for p in slots[1:] + [None]:
        if p is not None and p == prev + 1:
            prev = p
            continue
        spans.append((max(start - 1, 0), min(prev + 2, int(input_ids.shape[0]))))
        if p is not None:
            start = prev = p
    return spans


def retokenizes(tokenizer, row_ids: torch.Tensor, trigger_pos: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """(N,) bool: candidates (N, S) whose text, decoded with the tokens around its slots in one row
    (row_ids (L,), trigger_pos (S,)), tokenizes back to the same ids (so the printed prompt is the
    prompt that was scored)."""
    spans = slot_windows(row_ids, trigger_pos)
    ok = torch.ones(candidates.shape[0], dtype=torch.bool)
    for start, end in spans:
        windows = row_ids[None, start:end].repeat(candidates.shape[0], 1)
        inside = trigger_pos[(trigger_pos >= start) & (trigger_pos < end)]
        cols = [int((trigger_pos == p).nonzero()[0, 0]) for p in inside]
        windows[:, inside - start] = candidates[:, cols]
        texts = tokenizer.batch_decode(windows.tolist())
        again = tokenizer(texts, add_special_tokens=False).input_ids
        ok &= torch.tensor([list(a) == w for a, w in zip(again, windows.tolist())])
    return ok


def rank_agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman's rank correlation of two score vectors (ties ranked by position)."""
    if a.numel() < 2:
        return 0.0
    ra = torch.argsort(torch.argsort(a)).double()
    rb = torch.argsort(torch.argsort(b)).double()
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = float(ra.norm() * rb.norm())
    return float((ra * rb).sum()) / denom if denom else 0.0
