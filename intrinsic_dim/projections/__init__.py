"""Random projections P: R^d -> R^D, regenerated from a seed (never stored or saved).

Every projection is a small module with one class that takes (D, d, seed, device) and maps
theta_d (d,) to a flat offset (D,) differentiably. Add one by writing a module and one entry in
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
