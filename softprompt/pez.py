"""PEZ, "hard prompts made easy" (Wen et al., 2023): a continuous prompt trained at its projection.

One vector per [T] slot (the slots and inits of prompt tuning). Every step projects each vector
onto its nearest allowed token embedding (`Projector`: cosine or l2 in the embedding output space;
special tokens and ids past the tokenizer are never chosen), runs forward and backward AT those
token embeddings, and applies that gradient to the continuous vectors (straight-through: the
forward value is exactly the token's embedding, the gradient passes to the vector unchanged). The
prompt the run returns is discrete: token ids for the [T] slots (softprompt.pez_fit keeps the best).

With a fluency weight w (causal LMs), the objective is the task loss minus w times the mean
log-probability of the projected trigger tokens after everything before them (softprompt.fluency),
read in the same forward pass as the logits at [P]. Through the straight-through pass, that term's
gradient reaches a slot's vector only through the context later slots read: which token the slot
holds is the projection's argmin, which has no gradient. So the loss adds a term worth zero whose
gradient is the slot's own share, the linear extension of log p(v | before) = f . W[v] - lse(f W^T)
from output embeddings W[v] to any vector u: d/du = f X, where X maps the prompt's space to the
output embedding space (`output_map`; tied embeddings: the identity over the embedding scale). This
is the embedding-space counterpart of AutoPrompt's one-hot fluency gradient
(autoprompt.search `_direct_fluency`): it pulls each slot toward tokens likely after its context.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from frozen_lm.encode import Rows
from frozen_lm.evaluate import TriggerBound
from frozen_lm.fluency import fluency_positions, row_fluency
from frozen_lm.model import FrozenLM
from frozen_lm.prompts.init import special_ids
from frozen_lm.prompts.soft import place
from softprompt.reading import token_table

logger = logging.getLogger(__name__)


class Projector:
    """Maps vectors (S, H) in the embedding output space to their nearest allowed token ids (S,)."""

    def __init__(self, lm: FrozenLM, metric: str = "cosine"):
        table = token_table(lm)
        self.metric = metric
        self.keys = torch.nn.functional.normalize(table, dim=-1) if metric == "cosine" else table
        usable = min(len(lm.tokenizer), lm.vocab_size)
        blocked = torch.arange(lm.vocab_size) >= usable
        specials = [i for i in special_ids(lm.tokenizer) if i < lm.vocab_size]
        blocked[torch.tensor(specials, dtype=torch.long)] = True
        self.blocked = blocked.to(table.device)

    @torch.no_grad()
    def __call__(self, vectors: torch.Tensor) -> torch.Tensor:
        v = vectors.detach().float().to(self.keys.device)
        if self.metric == "cosine":
            d = -(torch.nn.functional.normalize(v, dim=-1) @ self.keys.T)
        else:
            d = torch.cdist(v[None], self.keys[None])[0]
        return d.masked_fill(self.blocked[None], float("inf")).argmin(dim=-1)


def straight_through(lm: FrozenLM, vectors: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """(S, H) float32 whose value is exactly the embeddings of `ids` (as the model's embedding layer
    makes them) and whose gradient flows to `vectors` unchanged: v + (E[ids] - v).detach(), written
    so that no rounding separates the value from E[ids]."""
    exact = lm.embed(ids.to(lm.device)).detach().float()
    return exact + (vectors - vectors.detach())


def output_map(lm: FrozenLM) -> torch.Tensor:
    """(H, H') X with token_table(lm) @ X = the output embeddings (V, H'): exact for tied embeddings
    (the identity over the embedding scale), least squares otherwise."""
    table = token_table(lm)
    out = lm.output_embedding_matrix.detach()
    if out.data_ptr() == lm.embedding_matrix.data_ptr():
        return torch.eye(table.shape[1], device=table.device) / lm.embed_scale
    return torch.linalg.lstsq(table, out.float().to(table.device)).solution


def own_token_map(lm: FrozenLM) -> torch.Tensor | None:
    """`output_map(lm)` for `pez_loss`'s own-token fluency gradient, or None (with a logged notice)
    for a model whose head cannot run on its own: its fluency gradient is then context-only."""
    if lm.splits_head:
        return output_map(lm)
    logger.warning("%s computes its logits in one piece, so the fluency gradient reaches each slot only through "
                   "the context later slots read, not through its own token", type(lm.model).__name__)
    return None


def own_token_term(feats: torch.Tensor, prompt: torch.Tensor, valid: torch.Tensor,
                   to_output: torch.Tensor) -> torch.Tensor:
    """Zero-valued scalar whose gradient with respect to `prompt` (S, H) is that of the rows' mean
    log p(slot s's token | before) through the token itself: feats (R, S, H') what the output
    embedding layer sees where each slot is predicted (FrozenLM.head_and_features), valid (R, S),
    to_output (H, H') from `output_map`. Per row, slots are averaged as in
    frozen_lm.fluency.row_fluency."""
    feats = feats.detach().float()
    moved = (prompt - prompt.detach()).float().to(feats.device) @ to_output.to(feats.device)  # (S, H'), zero
    per_slot = (feats * moved[None]).sum(-1)                                                # (R, S)
    v = valid.float().to(per_slot.device)
    return ((per_slot * v).sum(1) / v.sum(1).clamp(min=1)).mean()


def pez_loss(lm: FrozenLM, task, rows: Rows, prompt: torch.Tensor, ids: torch.Tensor, kind: str = "vocab",
             fluency_weight: float = 0.0, to_output: torch.Tensor | None = None) -> torch.Tensor:
    """Task loss of the rows with `prompt` (S, H) at their slots, minus fluency_weight times the mean
    log p(trigger token | everything before it) of `ids` (S,), from one forward pass. With to_output
    (`own_token_map`), the fluency gradient also reaches each slot through its own token
    (`own_token_term`; the loss's value is the same)."""
    embeds = place(lm, rows, prompt)
    if not fluency_weight:
        logits = lm.logits_at(rows.predict_pos, inputs_embeds=embeds, attention_mask=rows.attention_mask)
        return task.loss(logits, rows, kind)
    positions, valid = fluency_positions(rows)
    n = positions.shape[1]
    reads = torch.cat([positions, rows.predict_pos], dim=1)
    own = to_output is not None
    if own:
        hidden = lm.hidden_at(reads, inputs_embeds=embeds, attention_mask=rows.attention_mask)
        logits, feats = lm.head_and_features(hidden)
    else:
        logits = lm.logits_at(reads, inputs_embeds=embeds, attention_mask=rows.attention_mask)
    loss = task.loss(logits[:, n:], rows, kind) - fluency_weight * row_fluency(logits[:, :n], ids, valid).mean()
    if own:
        loss = loss - fluency_weight * own_token_term(feats[:, :n], prompt, valid, to_output)
    return loss


class PezPrompt(nn.Module):
    """Trainable continuous vectors (S, H), float32, whose projection is the discrete prompt."""

    method = "pez"

    def __init__(self, init: torch.Tensor, projector: Projector):
        super().__init__()
        self.vectors = nn.Parameter(init.detach().float().clone())
        self.register_buffer("init", init.detach().float().clone())
        self.projector = projector

    def project(self) -> torch.Tensor:
        """(S,) the nearest allowed token of each vector now."""
        return self.projector(self.vectors)

    def loss(self, task, rows: Rows, kind: str = "vocab", fluency_weight: float = 0.0,
             to_output: torch.Tensor | None = None) -> torch.Tensor:
        """The PEZ objective of a batch: evaluated at the projection, its gradient lands on the vectors
        (to_output: see `pez_loss`)."""
        ids = self.project()
        prompt = straight_through(task.lm, self.vectors, ids)
        return pez_loss(task.lm, task, rows, prompt, ids, kind, fluency_weight, to_output)

    def bind(self, task) -> TriggerBound:
        """The current projection written into the task's [T] slots (what the shared evaluator scores)."""
        return TriggerBound(task, self.project())

    def tensors(self, trigger_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """What the artifact saves: the kept discrete prompt, the final vectors and where they started."""
        return {"trigger_ids": trigger_ids.detach().long().cpu(), "prompt_embeddings": self.vectors.detach().clone(),
                "init_embeddings": self.init.clone()}
