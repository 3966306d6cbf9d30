"""Prompt tuning (Lester et al., 2021): one trainable input vector per [T] slot of the template.

The vectors live in the embedding output space (what `FrozenLM.embed` returns, embed_scale
included) and replace the placeholder embeddings at `rows.trigger_pos`, so a slot may sit anywhere
in the template, not only in front of it.
"""

from __future__ import annotations

import torch
from torch import nn

from frozen_lm.encode import Rows
from frozen_lm.evaluate import Bound
from frozen_lm.model import FrozenLM


def place(lm: FrozenLM, rows: Rows, vectors: torch.Tensor) -> torch.Tensor:
    """Input embeddings (R, L, H) of the rows with vectors (S, H) at the slots trigger_pos (R, S)."""
    embeds = lm.embed(rows.input_ids)
    index = rows.trigger_pos.unsqueeze(-1).expand(-1, -1, embeds.shape[-1])
    slots = vectors.to(embeds.dtype)[None].expand(embeds.shape[0], -1, -1)
    return embeds.scatter(1, index, slots)


def prompt_logits(lm: FrozenLM, rows: Rows, vectors: torch.Tensor) -> torch.Tensor:
    """Logits (R, M, V) at the rows' predict positions with the soft prompt in place."""
    return lm.logits_at(rows.predict_pos, inputs_embeds=place(lm, rows, vectors), attention_mask=rows.attention_mask)


class PromptBound(Bound):
    """Prompt vectors (S, H) placed at the S [T] slots of the task's rows."""

    def __init__(self, task, vectors: torch.Tensor):
        super().__init__(task)
        self.vectors = vectors

    def logits(self, rows: Rows) -> torch.Tensor:
        return prompt_logits(self.task.lm, rows, self.vectors)


class SoftPrompt(nn.Module):
    """Trainable (S, H) prompt vectors, kept in float32 whatever the model's dtype."""

    method = "prompt_tuning"

    def __init__(self, init: torch.Tensor):
        super().__init__()
        self.vectors = nn.Parameter(init.detach().float().clone())
        self.register_buffer("init", init.detach().float().clone())

    def logits(self, lm: FrozenLM, rows: Rows) -> torch.Tensor:
        return prompt_logits(lm, rows, self.vectors)

    def bind(self, task) -> PromptBound:
        """The current vectors applied to `task` (they follow the training)."""
        return PromptBound(task, self.vectors)

    def tensors(self) -> dict[str, torch.Tensor]:
        """What the artifact saves: the learned vectors and where they started."""
        return {"prompt_embeddings": self.vectors.detach().clone(), "init_embeddings": self.init.clone()}
