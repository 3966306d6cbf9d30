"""PEZ, "hard prompts made easy" (Wen et al., 2023): a continuous prompt trained at its projection.

One vector per [T] slot (the slots and inits of prompt tuning). Every step projects each vector
onto its nearest allowed token embedding (`Projector`: cosine or l2 in the embedding output space;
special tokens and ids past the tokenizer are never chosen), runs forward and backward AT those
token embeddings, and applies that gradient to the continuous vectors (straight-through: the
forward value is exactly the token's embedding, the gradient passes to the vector unchanged). The
prompt the run returns is discrete: token ids for the [T] slots (softprompt.pez_fit keeps the best).

With a fluency weight w (causal LMs), the objective is the task loss minus w times the mean
log-probability of the projected trigger tokens after everything before them (softprompt.fluency),
read in the same forward pass as the logits at [P]. Its straight-through gradient reaches the
vectors only through the context that later slots read: which token a slot holds is the projection's
argmin, which has no gradient, so unlike AutoPrompt's one-hot gradient (autoprompt.search
`_direct_fluency`) it does not pull a slot toward likely tokens (README, "Fluency").
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from frozen_lm.encode import Rows
from frozen_lm.evaluate import TriggerBound
from frozen_lm.fluency import fluency_positions, row_fluency
from frozen_lm.model import FrozenLM
from softprompt.init import special_ids
from softprompt.prompt import place
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


def pez_loss(lm: FrozenLM, task, rows: Rows, prompt: torch.Tensor, ids: torch.Tensor, kind: str = "vocab",
             fluency_weight: float = 0.0) -> torch.Tensor:
    """Task loss of the rows with `prompt` (S, H) at their slots, minus fluency_weight times the mean
    log p(trigger token | everything before it) of `ids` (S,), from one forward pass."""
    positions, valid = fluency_positions(rows) if fluency_weight else (rows.predict_pos[:, :0], None)
    n = positions.shape[1]
    logits = lm.logits_at(torch.cat([positions, rows.predict_pos], dim=1), inputs_embeds=place(lm, rows, prompt),
                          attention_mask=rows.attention_mask)
    loss = task.loss(logits[:, n:], rows, kind)
    if fluency_weight:
        loss = loss - fluency_weight * row_fluency(logits[:, :n], ids, valid).mean()
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

    def loss(self, task, rows: Rows, kind: str = "vocab", fluency_weight: float = 0.0) -> torch.Tensor:
        """The PEZ objective of a batch: evaluated at the projection, its gradient lands on the vectors."""
        ids = self.project()
        prompt = straight_through(task.lm, self.vectors, ids)
        return pez_loss(task.lm, task, rows, prompt, ids, kind, fluency_weight)

    def bind(self, task) -> TriggerBound:
        """The current projection written into the task's [T] slots (what the shared evaluator scores)."""
        return TriggerBound(task, self.project())

    def tensors(self, trigger_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """What the artifact saves: the kept discrete prompt, the final vectors and where they started."""
        return {"trigger_ids": trigger_ids.detach().long().cpu(), "prompt_embeddings": self.vectors.detach().clone(),
                "init_embeddings": self.init.clone()}
