"""Fastfood projection (Le, Sarlos and Smola, 2013), as used for intrinsic dimension by Li et al.
(2018) and Aghajanyan et al. (2020).

The flat D-vector is cut into n = ceil(D / L) chunks of L = 2^ceil(log2 d) entries (the last chunk
padded); chunk b is  V_b x = H G_b Pi_b H B_b [x; 0]  with H the L x L Walsh-Hadamard matrix, B_b
random signs, Pi_b a random permutation and G_b Gaussian. The chunks are concatenated, cut to D and
scaled by 1 / sqrt(D L), so E ||P x||^2 = ||x||^2. All chunks are transformed at once as an (n, L)
tensor: O(D log d) work per call, and about 4 D numbers of memory (B, G, Pi), never a D x d matrix.
"""

from __future__ import annotations

import math

import torch

from intrinsic_dim.projections import generator

MAX_FACTOR_BITS = 5  # Hadamard factors of at most 32 x 32, applied as small matrix products


def hadamard(n: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """(n, n) unnormalized Walsh-Hadamard matrix (entries +-1), n a power of two."""
    h = torch.ones(1, 1, dtype=dtype, device=device)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h


def _factor_sizes(n: int) -> list[int]:
    """Split n = 2^k into near-equal power-of-two factors of at most 2^MAX_FACTOR_BITS."""
    k = n.bit_length() - 1
    parts = max(1, math.ceil(k / MAX_FACTOR_BITS))
    bits = [k // parts + (i < k % parts) for i in range(parts)]
    return [1 << b for b in bits if b > 0]


def fwht(x: torch.Tensor) -> torch.Tensor:
    """Unnormalized fast Walsh-Hadamard transform along the last axis: (..., n) -> (..., n) = x @ H_n.

    H_n = H_a (x) H_b (x) ... (Kronecker factors of at most 32), so each factor is one batched
    matrix product over the whole tensor: a few passes over memory instead of log2(n) butterflies.
    """
    shape, n = x.shape, x.shape[-1]
    if n & (n - 1):
        raise ValueError(f"fwht needs a power-of-two length, got {n}")
    sizes = _factor_sizes(n)
    y = x.reshape(-1, n)
    rows = y.shape[0]
    for i, m in enumerate(sizes):
        h = hadamard(m, x.dtype, x.device)
        pre, post = math.prod(sizes[:i]), math.prod(sizes[i + 1:])
        if post == 1:
            y = (y.reshape(-1, m) @ h).reshape(rows, n)
        else:
            y = torch.matmul(h, y.reshape(rows * pre, m, post)).reshape(rows, n)
    return y.reshape(shape)


def chunk_length(d: int) -> int:
    """L = the smallest power of two >= d."""
    return 1 << max(0, (d - 1).bit_length())


class _Fastfood(torch.autograd.Function):
    """Forward P x and backward P^T g, both with two FWHTs; nothing of size D is saved."""

    @staticmethod
    def forward(ctx, x, signs, perm, gauss, D: int, scale: float):
        n, L = signs.shape
        xp = torch.nn.functional.pad(x, (0, L - x.shape[0]))
        v = fwht(signs * xp[None, :])
        v = fwht(v.gather(1, perm) * gauss)
        ctx.save_for_backward(signs, perm, gauss)
        ctx.d, ctx.scale = x.shape[0], scale
        return v.reshape(-1)[:D] * scale

    @staticmethod
    def backward(ctx, g):
        signs, perm, gauss = ctx.saved_tensors
        n, L = signs.shape
        gp = torch.nn.functional.pad(g * ctx.scale, (0, n * L - g.shape[0])).reshape(n, L)
        w = fwht(gp) * gauss
        w = torch.empty_like(w).scatter_(1, perm, w)  # Pi^T
        w = (fwht(w) * signs).sum(0)[: ctx.d]
        return w, None, None, None, None, None


class FastfoodProjection:
    """x (d,) -> P x (D,) with the stacked Fastfood transform described in the module docstring."""

    def __init__(self, D: int, d: int, seed: int, device=None):
        self.D, self.d, self.seed = D, d, seed
        self.L = chunk_length(d)
        n = math.ceil(D / self.L)
        g = generator(seed)
        self.signs = (torch.randint(0, 2, (n, self.L), generator=g).float() * 2 - 1).to(device)
        self.perm = torch.argsort(torch.rand(n, self.L, generator=g), dim=1).to(device)
        self.gauss = torch.randn(n, self.L, generator=g).to(device)
        self.scale = 1.0 / math.sqrt(D * self.L)

    @staticmethod
    def memory_bytes(D: int, d: int) -> int:
        """Signs, Gaussians (4 bytes each), permutation (8 bytes) over the padded length, plus about
        three D-float working buffers while it runs."""
        padded = math.ceil(D / chunk_length(d)) * chunk_length(d)
        return 16 * padded + 12 * padded

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x (d,) -> (D,)."""
        return _Fastfood.apply(x, self.signs.to(x.dtype), self.perm, self.gauss.to(x.dtype), self.D, self.scale)

    def matrix(self) -> torch.Tensor:
        """The explicit (D, d) matrix (for tests on small sizes)."""
        eye = torch.eye(self.d, dtype=self.gauss.dtype, device=self.gauss.device)
        return torch.stack([self(e) for e in eye], dim=1)
