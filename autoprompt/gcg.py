"""GCG (Zou et al., 2023; nanoGCG): candidate sampling and the retokenization filter (pure functions on
tensors, plus one tokenizer pass for the filter), and `GCGProposer`, what GCG adds to the shared
search loop (autoprompt.search); probe sampling is in autoprompt.probe.
"""

from __future__ import annotations

import logging

import torch

from autoprompt.candidates import dedupe
from autoprompt.probe import load_draft, probe_sample
from autoprompt.scoring import Scores, score_triggers

logger = logging.getLogger(__name__)


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


class GCGProposer:
    """GCG's proposer: search_width samples around the best trigger of the buffer, each with n_replace
    slots set to one of their top-k tokens, retokenization-filtered and deduplicated; scored in groups
    behind their shared leading slots, or by probe sampling when the config has a draft model."""

    share = True

    def __init__(self, config):
        self.cfg = config
        self.beam_size = config.buffer_size
        self.draft = None

    def start(self, searcher) -> None:
        probe = self.cfg.probe_sampling
        if probe is not None:
            self.draft = load_draft(probe.draft_model, searcher.task, searcher.train)

    def candidates(self, searcher, state, g: torch.Generator, grad_batches) -> tuple[torch.Tensor, None, float]:
        cfg, trigger = self.cfg, state.beam[0]
        grad, loss = searcher.gradient(trigger, grad_batches)
        cands = sample_candidates(trigger, grad, searcher.allowed, cfg.search_width, cfg.topk, cfg.n_replace, g)
        return dedupe(self.filtered(searcher, cands), keep_first=state.beam), None, loss

    def filtered(self, searcher, cands: torch.Tensor, warn: bool = True) -> torch.Tensor:
        """The candidates (N, S) that tokenize back to themselves in the first training row's context
        (all of them when the filter is off, or, with a warning, when none does)."""
        if not self.cfg.filter_retokenized:
            return cands
        n = int(searcher.train.attention_mask[0].sum())
        ids, pos = searcher.train.input_ids[0, :n], searcher.train.trigger_pos[0]
        keep = retokenizes(searcher.task.lm.tokenizer, ids.cpu(), pos.cpu(), cands)
        if keep.any():
            return cands[keep]
        if warn:
            logger.warning("no candidate tokenizes back to itself in context; keeping them all this iteration")
        return cands

    def score(self, searcher, rows, pool: torch.Tensor, n_beam: int, g: torch.Generator) -> Scores:
        """Every candidate scored by the model, or (probe sampling) a probe set and the draft's best;
        unscored candidates get -inf log-likelihood."""
        fluency = self.cfg.fluency_weight > 0
        if self.draft is None or pool.shape[0] - n_beam < 2:
            return score_triggers(searcher.task, rows, pool, searcher.packed, searcher.budget, searcher.kind, fluency,
                                  self.share)
        return probe_sample(searcher, self, rows, pool, n_beam, g, fluency)
