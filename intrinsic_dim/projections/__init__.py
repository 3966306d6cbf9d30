"""Random projections P: R^d -> R^D, regenerated from a seed (never stored or saved).

Every projection is a small module with one `Projection` subclass built from (D, d, seed, device)
that implements `forward` (x (d,) -> P x (D,)) and `transpose` (g (D,) -> P^T g (d,)) without
autograd; calling the projection is differentiable. Add one by writing a module and one entry in
`PROJECTIONS`. All of them keep norms in expectation: E ||P x||^2 = ||x||^2.
"""

from __future__ import annotations

import importlib

import torch

from frozen_lm.errors import UserError

# name -> "module:Class" (imported when used)
PROJECTIONS: dict[str, str] = {
    "dense": "intrinsic_dim.projections.dense:DenseProjection",
    "sparse": "intrinsic_dim.projections.sparse:SparseProjection",
    "fastfood": "intrinsic_dim.projections.fastfood:FastfoodProjection",
}


class Projection:
    """Base class: P (D, d) given by `forward` and `transpose`; `__call__` is differentiable."""

    D: int
    d: int
    seed: int

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (d,) -> P x (D,). May return a view of an internal buffer, valid until the next call."""
        raise NotImplementedError

    def transpose(self, g: torch.Tensor) -> torch.Tensor:
        """g (D,) -> P^T g (d,). `g` may be the tensor `transpose_buffer()` returned."""
        raise NotImplementedError

    def transpose_buffer(self, device, dtype) -> torch.Tensor:
        """A writable (D,) tensor to collect gradients into before `transpose`."""
        return torch.empty(self.D, device=device, dtype=dtype)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x (d,) -> P x (D,), a new tensor, differentiable in x."""
        return _Apply.apply(x, self)

    def matrix(self) -> torch.Tensor:
        """The explicit (D, d) matrix (for tests on small sizes)."""
        eye = torch.eye(self.d)
        return torch.stack([self.forward(e).clone().cpu() for e in eye], dim=1)


class _Apply(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, proj):
        ctx.proj = proj
        return proj.forward(x).clone()

    @staticmethod
    def backward(ctx, g):
        return ctx.proj.transpose(g.contiguous()), None


def projection_class(kind: str):
    if kind not in PROJECTIONS:
        raise UserError(f"unknown projection {kind!r}; choose one of: {', '.join(PROJECTIONS)}")
    module, _, name = PROJECTIONS[kind].partition(":")
    return getattr(importlib.import_module(module), name)


def make_projection(kind: str, D: int, d: int, seed: int, device=None, **kwargs):
    """The projection `kind` from R^d to R^D drawn from `seed` (same seed, same projection)."""
    if d < 1 or D < 1:
        raise UserError(f"projection sizes must be at least 1 (got d={d}, D={D})")
    return projection_class(kind)(D, d, seed, device=torch.device(device or "cpu"), **kwargs)


def memory_bytes(kind: str, D: int, d: int) -> int:
    """Estimated bytes the projection `kind` holds (its random factors and working buffers)."""
    return int(projection_class(kind).memory_bytes(D, d))


def generator(seed: int) -> torch.Generator:
    """A CPU generator for `seed`: the random factors are drawn on CPU, so every device gets the same."""
    return torch.Generator(device="cpu").manual_seed(int(seed))
