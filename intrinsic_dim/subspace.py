"""theta = theta_0 + P(theta_d): the weight overrides for `FrozenLM.logits_at(params=...)`.

The selected tensors are treated as one flat vector of D numbers: one projection of all of D per
step, split into views per tensor and added to the frozen tensors (which are only read, never
modified). With SAID (Aghajanyan et al., 2020) each tensor i gets a learned scale:
theta_i = theta_0,i + lambda_i P(theta_d)_i, and lambda counts in d.

Speed: the overrides are written into one D-float buffer reused every step, and the backward pass
collects the tensors' gradients straight into the projection's work buffer, so a training step
allocates no new D-sized memory beyond the model's own gradients. Overrides from one call are valid
until the next call (autograd's version check refuses a backward through overwritten ones).
"""

from __future__ import annotations

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
        self._buffer: torch.Tensor | None = None
        self.last_flat: torch.Tensor | None = None  # the latest P(theta_d), until the projection's next call
        self.calls = 0
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
        """theta_d (d_proj,), said_scale (n_tensors,) -> {name: theta_0 + lambda * P(theta_d)}, differentiable."""
        if self.said and said_scale is None:
            raise ValueError("this subspace has SAID scales; pass said_scale")
        outs = _Overrides.apply(self, theta_d, said_scale)
        return dict(zip(self.names, outs))

    def output_views(self) -> list[torch.Tensor]:
        """Fresh views (one per tensor, its shape) of the reused D-float output buffer."""
        first = next(iter(self.base.values()))
        if self._buffer is None:
            self._buffer = torch.empty(self.D, dtype=first.dtype, device=first.device)
        return [p.view(t.shape) for p, t in zip(self._buffer.split(self.sizes), self.base.values())]


class _Overrides(torch.autograd.Function):
    """(theta_d, lambda) -> the override tensors; backward = P^T of the collected gradients."""

    @staticmethod
    def forward(ctx, space: Subspace, theta_d, said_scale):
        space.calls += 1
        ctx.space, ctx.call = space, space.calls
        ctx.save_for_backward(theta_d, said_scale)
        flat = space.last_flat = space.projection.forward(theta_d)
        outs = space.output_views()
        for i, (out, piece, base) in enumerate(zip(outs, flat.split(space.sizes), space.base.values())):
            delta = piece.view(base.shape).to(base.dtype)
            if said_scale is None:
                torch.add(base, delta, out=out)
            else:
                torch.addcmul(base, delta, said_scale[i].to(base.dtype), out=out)
        return tuple(outs)

    @staticmethod
    def backward(ctx, *grads):
        space, (theta_d, said_scale) = ctx.space, ctx.saved_tensors
        proj = space.projection
        grad_scale = None
        if said_scale is not None:  # d loss / d lambda_i = <g_i, P(theta_d)_i>, before the buffer is reused
            flat = space.last_flat if space.calls == ctx.call else proj.forward(theta_d)
            grad_scale = torch.stack([(g.reshape(-1).to(p.dtype) @ p) if g is not None else p.new_zeros(())
                                      for g, p in zip(grads, flat.split(space.sizes))])
        collect = proj.transpose_buffer(theta_d.device, theta_d.dtype)
        for i, (g, piece) in enumerate(zip(grads, collect.split(space.sizes))):
            if g is None:
                piece.zero_()
            elif said_scale is None:
                piece.copy_(g.reshape(-1))
            else:
                torch.mul(g.reshape(-1), said_scale[i], out=piece)
        return None, proj.transpose(collect), grad_scale


def projection_dim(d: int, n_tensors: int, said: bool) -> int:
    """Input size of the projection for a total budget d (SAID spends n_tensors of it on scales)."""
    if d < 1:
        raise UserError(f"d must be at least 1, got {d}")
    if said and d <= n_tensors:
        raise UserError(f"IntrinsicDimConfig.said spends one of d on each of the {n_tensors} selected tensors; "
                        f"d={d} leaves none for the projection (use d > {n_tensors} or fewer IntrinsicDimConfig.params)")
    return d - n_tensors if said else d
