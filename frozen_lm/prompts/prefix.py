"""Prefix tuning (Li & Liang, 2021): trainable key/values that every layer attends to first.

A prefix is one tensor (n_layers, 2, n_kv_heads, P, head_dim) (index 0 keys, 1 values), so it has
the grouped-query layout of the model. With the MLP reparameterization the trained parameters are
a (P, H) input table and an MLP; the prefix is `base + MLP(table)`, where `base` is the
initialization (real tokens' key/values, or random) and the MLP's last layer starts at zero, so
training starts exactly at the initialization. `fold()` computes the plain key/values once: that
is what is saved and used for inference.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from frozen_lm.encode import Rows
from frozen_lm.errors import UserError
from frozen_lm.evaluate import Bound, FunctionBound
from frozen_lm.model import FrozenLM, Prefix


def as_prefix(kv: torch.Tensor, dtype: torch.dtype | None = None) -> Prefix:
    """(L, 2, kv, P, hd) -> a FrozenLM Prefix with one broadcast row."""
    kv = kv if dtype is None else kv.to(dtype)
    return Prefix([layer[0][None] for layer in kv], [layer[1][None] for layer in kv])


def prefix_logits(lm: FrozenLM, rows: Rows, kv: torch.Tensor) -> torch.Tensor:
    """Logits (R, M, V) at the rows' predict positions with the prefix in every layer."""
    return lm.logits_at(rows.predict_pos, input_ids=rows.input_ids, attention_mask=rows.attention_mask,
                        prefix=as_prefix(kv, lm.dtype))


class PrefixBound(Bound):
    """Prefix key/values (L, 2, kv, P, hd) that every layer attends to before the task's rows (the
    task keeps P positions free: see frozen_lm.prompts.effective)."""

    def __init__(self, task, kv: torch.Tensor):
        super().__init__(task)
        self.kv = kv

    def logits(self, rows: Rows) -> torch.Tensor:
        return prefix_logits(self.task.lm, rows, self.kv)


def check_prefix_support(lm: FrozenLM) -> None:
    """UserError when the model has no key/value cache to put a prefix in."""
    if not lm.supports_prefix:
        raise UserError(f"{type(lm.model).__name__}: a prefix needs key/value cache support, which this "
                        "architecture lacks; train a prompt at [T] slots instead")


def _uniform_(weight: torch.Tensor, bound: float, generator: torch.Generator) -> None:
    with torch.no_grad():
        weight.uniform_(-bound, bound, generator=generator)


class PrefixParams(nn.Module):
    """Trainable prefix key/values, directly or through the MLP reparameterization."""

    method = "prefix_tuning"

    def __init__(self, init: torch.Tensor, projection: bool = True, hidden: int = 512, input_size: int = 512,
                 generator: torch.Generator | None = None):
        super().__init__()
        init = init.detach().float()
        self.shape = tuple(init.shape)
        self.register_buffer("init", init.clone())
        self.projection = projection
        if not projection:
            self.kv = nn.Parameter(init.clone())
            return
        g = generator or torch.Generator().manual_seed(0)
        n_layers, _, kv_heads, length, head_dim = self.shape
        self.register_buffer("base", init.clone())
        self.table = nn.Parameter(torch.randn(length, input_size, generator=g))
        self.mlp = nn.Sequential(nn.Linear(input_size, hidden), nn.Tanh(), nn.Linear(hidden, n_layers * 2 * kv_heads * head_dim))
        _uniform_(self.mlp[0].weight, 1 / math.sqrt(input_size), g)
        _uniform_(self.mlp[0].bias, 1 / math.sqrt(input_size), g)
        nn.init.zeros_(self.mlp[2].weight)
        nn.init.zeros_(self.mlp[2].bias)

    def forward(self) -> torch.Tensor:
        """The current prefix (L, 2, kv, P, hd)."""
        if not self.projection:
            return self.kv
        n_layers, _, kv_heads, length, head_dim = self.shape
        out = self.mlp(self.table).view(length, n_layers, 2, kv_heads, head_dim).permute(1, 2, 3, 0, 4)
        return self.base + out

    @torch.no_grad()
    def fold(self) -> torch.Tensor:
        """The plain key/values the reparameterization currently produces (no MLP needed afterwards)."""
        return self().detach().clone()

    def logits(self, lm: FrozenLM, rows: Rows) -> torch.Tensor:
        return prefix_logits(lm, rows, self())

    def bind(self, task) -> FunctionBound:
        """The current prefix applied to `task` (recomputed through the MLP at every call)."""
        return FunctionBound(task, lambda rows: self.logits(task.lm, rows))

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"prefix": self.fold(), "prefix_init": self.init.clone()}
