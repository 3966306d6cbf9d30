"""Random projections of intrinsic_dim: the Hadamard transform, seeds, agreement with the explicit
matrix (forward, transpose, autograd), norms, fastfood memory."""

from __future__ import annotations

import pytest
import torch

from intrinsic_dim.projections import PROJECTIONS, make_projection
from intrinsic_dim.projections.fastfood import fwht, hadamard

KINDS = list(PROJECTIONS)
TEMPLATE, LABELS = "{sentence} It was [P] .", "0=terrible,1=great"
TRAIN, DEV = "demo:sentiment:train", "demo:sentiment:dev"


# ----------------------------------------------------------------- projections
@pytest.mark.parametrize("n", [1, 2, 8, 64, 1024])
def test_fwht_is_the_hadamard_matrix(n):
    x = torch.randn(3, n, dtype=torch.float64)
    assert torch.allclose(fwht(x), x @ hadamard(n, torch.float64), atol=1e-9)


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_same_projection(kind):
    a, b = make_projection(kind, 300, 20, seed=5).matrix(), make_projection(kind, 300, 20, seed=5).matrix()
    assert torch.equal(a, b)
    assert not torch.equal(a, make_projection(kind, 300, 20, seed=6).matrix())


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("D,d", [(1000, 10), (37, 37), (600, 130)])
def test_forward_transpose_and_autograd_agree_with_the_matrix(kind, D, d):
    proj = make_projection(kind, D, d, seed=1)
    m = proj.matrix().double()
    x, g = torch.randn(d), torch.randn(D)
    assert torch.allclose(proj.forward(x).double(), m @ x.double(), atol=1e-5)
    assert torch.allclose(proj.transpose(g).double(), m.T @ g.double(), atol=1e-4)
    x.requires_grad_(True)
    proj(x).backward(g)
    assert torch.allclose(x.grad.double(), m.T @ g.double(), atol=1e-4)


@pytest.mark.parametrize("kind", KINDS)
def test_norms_are_kept_in_expectation(kind):
    D, d, x = 2000, 50, torch.randn(50)
    ratios = [(make_projection(kind, D, d, seed=s).forward(x).norm() / x.norm()).item() ** 2 for s in range(40)]
    assert abs(sum(ratios) / len(ratios) - 1) < 0.05


def test_fastfood_memory_is_linear_in_D_not_D_times_d():
    from intrinsic_dim.projections import memory_bytes

    assert memory_bytes("fastfood", 10**8, 10**4) < 20 * 1.1 * 10**8  # a few floats per parameter
    assert memory_bytes("dense", 10**8, 10**4) == 4 * 10**12
    proj = make_projection("fastfood", 5000, 100, seed=0)
    held = sum(t.numel() for t in (proj.signs, proj.perm, proj.gauss))
    assert held < 2 * 5000  # no D x d matrix
