"""Fastfood projection (Le, Sarlos and Smola, 2013), as used for intrinsic dimension by Li et al.
(2018) and Aghajanyan et al. (2020): P x = H G Pi H B [x; 0], stacked over chunks of D.

The flat D-vector is cut into n = ceil(D / L) chunks of L = 2^ceil(log2 d) entries (the last chunk
padded). The inner transform u = Pi H B [x; 0] (B random signs, H the L x L Walsh-Hadamard matrix,
Pi a random permutation) is an orthogonal mix of x (times sqrt(L)) computed once, O(L log L); chunk b
is then H G_b u with its own Gaussian diagonal G_b. The result is cut to D and scaled by
1 / sqrt(D L), so E ||P x||^2 = ||x||^2, and P^T P concentrates at the identity as chunks add up.

Cost per call: one (n, L) broadcast product and one FWHT over all of D at once, O(D log d); the
FWHT applies H_L = H_a (x) H_b (x) ... as a few small matrix products over the whole tensor. Memory:
G (D floats) and two (n, L) work buffers reused between calls (no page faults per step); never a
D x d matrix.
"""

from __future__ import annotations

import functools
import math

import torch

from intrinsic_dim.projections import Projection, generator

MAX_FACTOR_BITS = 5  # Hadamard factors of at most 32 x 32, applied as small matrix products
SMALL = 1 << 16  # below this many numbers, avoid batched matmul (its thread start-up dominates)


@functools.lru_cache(maxsize=32)
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


def fwht_(x: torch.Tensor, tmp: torch.Tensor) -> torch.Tensor:
    """Unnormalized Walsh-Hadamard transform of the rows of x (R, n), n a power of two, using tmp
    (R, n) as scratch; returns whichever of x and tmp holds x @ H_n (the other is overwritten)."""
    rows, n = x.shape
    if n & (n - 1):
        raise ValueError(f"fwht needs a power-of-two length, got {n}")
    sizes = _factor_sizes(n)
    src, dst = x, tmp
    for i, m in enumerate(sizes):
        h = hadamard(m, x.dtype, x.device)
        pre, post = math.prod(sizes[:i]), math.prod(sizes[i + 1:])
        if post == 1:
            torch.matmul(src.view(-1, m), h, out=dst.view(-1, m))
        elif x.numel() <= SMALL:
            dst.view(rows * pre, m, post).copy_(torch.einsum("ij,bjk->bik", h, src.view(rows * pre, m, post)))
        else:
            torch.matmul(h, src.view(rows * pre, m, post), out=dst.view(rows * pre, m, post))
        src, dst = dst, src
    return src


def fwht(x: torch.Tensor) -> torch.Tensor:
    """Unnormalized Walsh-Hadamard transform along the last axis: (..., n) -> (..., n) = x @ H_n."""
    flat = x.reshape(-1, x.shape[-1]).clone()
    return fwht_(flat, torch.empty_like(flat)).reshape(x.shape)


def chunk_length(d: int) -> int:
    """L = the smallest power of two >= d."""
    return 1 << max(0, (d - 1).bit_length())


class FastfoodProjection(Projection):
    """x (d,) -> P x (D,) with the stacked Fastfood transform of the module docstring."""

    def __init__(self, D: int, d: int, seed: int, device=None):
        self.D, self.d, self.seed = D, d, seed
        self.L = L = chunk_length(d)
        self.n = n = math.ceil(D / L)
        g = generator(seed)
        self.signs = (torch.randint(0, 2, (L,), generator=g).float() * 2 - 1).to(device)
        self.perm = torch.randperm(L, generator=g).to(device)
        self.gauss = (torch.randn(n, L, generator=g) / math.sqrt(D * L)).to(device)  # scale folded in
        self._work: tuple[torch.Tensor, torch.Tensor] | None = None

    @staticmethod
    def memory_bytes(D: int, d: int) -> int:
        """G and two work buffers over the padded length, plus the subspace's output buffer (4 bytes each)."""
        return 16 * math.ceil(D / chunk_length(d)) * chunk_length(d)

    def _buffers(self, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        if self._work is None or self._work[0].dtype != dtype:
            self._work = tuple(torch.empty(self.n, self.L, dtype=dtype, device=self.gauss.device) for _ in range(2))
        return self._work

    def _gauss(self, dtype) -> torch.Tensor:
        return self.gauss if self.gauss.dtype == dtype else self.gauss.to(dtype)

    def mix(self, x: torch.Tensor) -> torch.Tensor:
        """u = Pi H B [x; 0]: (d,) -> (L,)."""
        xp = torch.nn.functional.pad(x, (0, self.L - self.d))
        return fwht(self.signs.to(x.dtype) * xp)[self.perm]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (d,) -> (D,), a view of a work buffer (valid until the next call)."""
        a, b = self._buffers(x.dtype)
        torch.mul(self._gauss(x.dtype), self.mix(x), out=a)
        return fwht_(a, b).view(-1)[: self.D]

    def transpose_buffer(self, device, dtype) -> torch.Tensor:
        a, _ = self._buffers(dtype)
        a.view(-1)[self.D:].zero_()
        return a.view(-1)[: self.D]

    def transpose(self, g: torch.Tensor) -> torch.Tensor:
        """g (D,) -> P^T g = B H Pi^T sum_b G_b H g_b (d,)."""
        a, b = self._buffers(g.dtype)
        if g.data_ptr() != a.data_ptr():
            a.view(-1)[: self.D].copy_(g)
            a.view(-1)[self.D:].zero_()
        s = fwht_(a, b).mul_(self._gauss(g.dtype)).sum(0)  # (L,)
        w = torch.empty_like(s)
        w[self.perm] = s
        return (self.signs.to(g.dtype) * fwht(w))[: self.d]
