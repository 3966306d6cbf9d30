"""Fluency of a discrete prompt: the log-probability a causal LM gives each trigger token after
everything before it in the row (the template text, data fields and earlier trigger tokens).

The logits that predict slot s are read at position `trigger_pos[s] - 1`, in the same forward pass
as the logits at [P] (`FrozenLM.logits_at` takes any positions). A slot at position 0 has nothing
before it and is left out. A prompt's perplexity is exp(-mean trigger-token log-probability). The
fluency terms of AutoPrompt, GCG and PEZ (FluentPrompt, ARCA) and their reports all come from here.
"""

from __future__ import annotations

import math

import torch

from frozen_lm.encode import Rows
from frozen_lm.model import FrozenLM


def fluency_positions(rows: Rows) -> tuple[torch.Tensor, torch.Tensor]:
    """(positions (R, S) whose logits predict each slot's token, valid (R, S): the slot has a position before it)."""
    return (rows.trigger_pos - 1).clamp(min=0), rows.trigger_pos > 0


def row_fluency(logits: torch.Tensor, ids: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """logits (R, S, V) read before each slot, ids (R, S) or (S,) the trigger tokens, valid (R, S) ->
    (R,) each row's mean log p(trigger token | everything before it) over its valid slots (0 if none)."""
    lp = torch.log_softmax(logits.float(), dim=-1)
    ids = ids.to(lp.device).expand(lp.shape[0], -1) if ids.dim() == 1 else ids.to(lp.device)
    tok = lp.gather(2, ids[..., None]).squeeze(2)
    valid = valid.float()
    return (tok * valid).sum(1) / valid.sum(1).clamp(min=1)


@torch.no_grad()
def prompt_perplexity(lm: FrozenLM, rows: Rows, ids: torch.Tensor, batch_size: int = 32) -> float | None:
    """exp(-mean log p(trigger token | before)) of a discrete prompt ids (S,) written into the rows'
    slots, pooled over every valid (row, slot) (causal LMs; None for a masked LM or when no slot has
    anything before it)."""
    if lm.is_masked or rows.trigger_pos.shape[1] == 0:
        return None
    ids = ids.long().to(lm.device)
    total, count = 0.0, 0
    for batch in rows.to(lm.device).batches(batch_size):
        positions, valid = fluency_positions(batch)
        logits = lm.logits_at(positions, input_ids=batch.with_triggers(ids), attention_mask=batch.attention_mask)
        per_row = row_fluency(logits, ids, valid)
        total += float((per_row.double() * valid.sum(1)).sum())
        count += int(valid.sum())
    return math.exp(-total / count) if count else None
