"""Dense Gaussian projection: P (D, d) with i.i.d. N(0, 1) entries, each column scaled to unit norm.

Memory is D * d floats, so it suits small models; `fastfood` does the same job in O(D).
"""

from __future__ import annotations

import torch

from intrinsic_dim.projections import Projection, generator


def dense_matrix(D: int, d: int, seed: int, orthogonal: bool = False) -> torch.Tensor:
    """(D, d) Gaussian matrix with unit-norm columns; orthonormal columns (QR) when `orthogonal`."""
    m = torch.randn(D, d, generator=generator(seed))
    if orthogonal:
        if d > D:
            raise ValueError(f"an orthogonal projection needs d <= D (got d={d}, D={D})")
        q, r = torch.linalg.qr(m)
        return q * torch.sign(torch.diagonal(r))[None, :]  # unique (sign-fixed) factor
    return m / m.norm(dim=0, keepdim=True)


class DenseProjection(Projection):
    """x (d,) -> P x (D,) with P from `dense_matrix`."""

    def __init__(self, D: int, d: int, seed: int, device=None, orthogonal: bool = False):
        self.D, self.d, self.seed = D, d, seed
        self.weight = dense_matrix(D, d, seed, orthogonal).to(device)

    @staticmethod
    def memory_bytes(D: int, d: int) -> int:
        return 4 * D * d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (d,) -> (D,)."""
        return self.weight.to(x.dtype) @ x

    def transpose(self, g: torch.Tensor) -> torch.Tensor:
        """g (D,) -> (d,)."""
        return self.weight.to(g.dtype).T @ g

    def matrix(self) -> torch.Tensor:
        return self.weight
