"""Sparse random projection (Li, Hastie and Church, 2006): each column has about sqrt(D) nonzero
entries of value +-1/sqrt(k), so columns have unit norm in expectation and memory is O(d sqrt(D)).

Stored as (row, column, value) triples and applied with index_add (deterministic on CPU).
"""

from __future__ import annotations

import math

import torch

from intrinsic_dim.projections import Projection, generator


def nonzeros_per_column(D: int) -> int:
    """k = ceil(sqrt(D)): the 'very sparse' density 1/sqrt(D) of Li et al."""
    return max(1, math.ceil(math.sqrt(D)))


def sparse_triples(D: int, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """rows (d*k,) int64 in [0, D), cols (d*k,), values (d*k,) +-1/sqrt(k); k = nonzeros_per_column(D).

    Rows are drawn with replacement; a repeated row adds two independent signs, which keeps
    E ||column||^2 = 1 exactly.
    """
    k = nonzeros_per_column(D)
    g = generator(seed)
    rows = torch.randint(0, D, (d, k), generator=g).reshape(-1)
    signs = torch.randint(0, 2, (d * k,), generator=g).float() * 2 - 1
    cols = torch.arange(d).repeat_interleave(k)
    return rows, cols, signs / math.sqrt(k)


class SparseProjection(Projection):
    """x (d,) -> P x (D,) with the sparse P of `sparse_triples`."""

    def __init__(self, D: int, d: int, seed: int, device=None):
        self.D, self.d, self.seed = D, d, seed
        rows, cols, values = sparse_triples(D, d, seed)
        self.rows, self.cols, self.values = rows.to(device), cols.to(device), values.to(device)

    @staticmethod
    def memory_bytes(D: int, d: int) -> int:
        return 20 * d * nonzeros_per_column(D) + 4 * D  # two int64 + one float per nonzero, the output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (d,) -> (D,)."""
        contrib = self.values.to(x.dtype) * x[self.cols]
        return torch.zeros(self.D, dtype=x.dtype, device=x.device).index_add(0, self.rows, contrib)

    def transpose(self, g: torch.Tensor) -> torch.Tensor:
        """g (D,) -> (d,)."""
        contrib = self.values.to(g.dtype) * g[self.rows]
        return torch.zeros(self.d, dtype=g.dtype, device=g.device).index_add(0, self.cols, contrib)
