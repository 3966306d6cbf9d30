"""theta = theta_0 + P(theta_d): the weight overrides for `FrozenLM.logits_at(params=...)`.

The selected tensors are treated as one flat vector of D numbers: one projection of all of D per
step, split into views per tensor and added to the frozen tensors (which are only read, never
copied or modified). With SAID (Aghajanyan et al., 2020) each tensor i gets a learned scale:
theta_i = theta_0,i + lambda_i P(theta_d)_i, and lambda counts in d.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from frozen_lm.errors import UserError


class Subspace:
    """Frozen tensors theta_0 by name + a projection from R^d_proj to R^D (D = their total size)."""

    def __init__(self, base: Mapping[str, torch.Tensor], projection, said: bool = False):
        self.base = dict(base)
        self.names = list(self.base)
        self.sizes = [t.numel() for t in self.base.values()]
        self.projection = projection
        self.said = said
        if projection.D != self.D:
            raise ValueError(f"projection maps to {projection.D} numbers, the selected tensors hold {self.D}")

    @property
    def D(self) -> int:
        return sum(self.sizes)

    @property
    def d(self) -> int:
        """Trainable numbers: the projection's input plus one scale per tensor with SAID."""
        return self.projection.d + (len(self.names) if self.said else 0)

    def init(self, device=None, dtype=torch.float32) -> dict[str, torch.Tensor]:
        """Starting values: theta_d = 0 (so theta = theta_0), SAID scales = 1."""
        out = {"theta_d": torch.zeros(self.projection.d, device=device, dtype=dtype)}
        if self.said:
            out["said_scale"] = torch.ones(len(self.names), device=device, dtype=dtype)
        return out

    def params(self, theta_d: torch.Tensor, said_scale: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """theta_d (d_proj,), said_scale (n_tensors,) -> {name: theta_0 + lambda * P(theta_d) view}."""
        flat = self.projection(theta_d)  # (D,)
        out = {}
        for i, (name, piece) in enumerate(zip(self.names, flat.split(self.sizes))):
            base = self.base[name]
            delta = piece.view(base.shape).to(base.dtype)
            out[name] = base + (delta * said_scale[i] if said_scale is not None else delta)
        return out


def projection_dim(d: int, n_tensors: int, said: bool) -> int:
    """Input size of the projection for a total budget d (SAID spends n_tensors of it on scales)."""
    if d < 1:
        raise UserError(f"d must be at least 1 (got {d})")
    if said and d <= n_tensors:
        raise UserError(f"--said spends one of d on each of the {n_tensors} selected tensors; "
                        f"d={d} leaves none for the projection (use d > {n_tensors} or fewer --params)")
    return d - n_tensors if said else d


def numel(base: Mapping[str, torch.Tensor]) -> int:
    return sum(math.prod(t.shape) for t in base.values())
