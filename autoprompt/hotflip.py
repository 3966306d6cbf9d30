"""AutoPrompt's proposer (Shin et al., 2020): the HotFlip top-k tokens of one random slot, or of every
slot, swapped into each trigger of the beam one at a time."""

from __future__ import annotations

import logging

import torch

from autoprompt.candidates import all_slot_variants, dedupe, hotflip_candidates, one_slot_variants
from autoprompt.config import AutoPromptConfig
from autoprompt.scoring import Scores, score_triggers
from frozen_lm.configs import name_of

logger = logging.getLogger(__name__)


class HotFlip:
    """Candidates from the one-hot gradient of each beam member; every candidate scored by the model.
    Scoring passes are not grouped by shared slots (AutoPrompt's README numbers were measured on
    the plain packed passes)."""

    share = False

    def __init__(self, config: AutoPromptConfig):
        self.cfg = config
        self.beam_size = config.beam_size

    def start(self, searcher) -> None:
        n_allowed = int(searcher.allowed.sum())
        if self.cfg.num_cand > n_allowed:
            logger.warning("%s %d is more than the %d tokens a trigger may use; each slot gets all %d",
                           name_of(self.cfg, "num_cand"), self.cfg.num_cand, n_allowed, n_allowed)

    def candidates(self, searcher, state, g: torch.Generator, grad_batches) -> tuple[torch.Tensor, int | None, float]:
        """(N, S) candidate triggers from every beam member, the slot flipped (None = all), the loss."""
        slot = None if self.cfg.slots == "all" else int(torch.randint(state.beam.shape[1], (1,), generator=g))
        out, losses = [], []
        for trigger in state.beam:
            grad, loss = searcher.gradient(trigger, grad_batches)
            losses.append(loss)
            cands = hotflip_candidates(grad, searcher.allowed, self.cfg.num_cand).cpu()
            out.append(all_slot_variants(trigger, cands) if slot is None else one_slot_variants(trigger, slot, cands[slot]))
        return dedupe(torch.cat(out), keep_first=state.beam), slot, losses[0]

    def score(self, searcher, rows, pool: torch.Tensor, n_beam: int, g: torch.Generator) -> Scores:
        return score_triggers(searcher.task, rows, pool, searcher.packed, searcher.budget, searcher.kind,
                              self.cfg.fluency_weight > 0, self.share)
