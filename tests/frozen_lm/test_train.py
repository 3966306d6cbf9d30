"""The shared training loop (frozen_lm.train.Trainer) on plain tensors: what one optimizer step's
gradient is when its micro-batches differ in size or in loss weight."""

from __future__ import annotations

import pytest
import torch

from frozen_lm.train import Trainer, TrainSettings, batches


def _one_sgd_step(c: torch.Tensor, batch_size: int, grad_accum: int, weights: torch.Tensor | None = None) -> float:
    """w after one SGD step (lr 1) from 0 on loss(index) = mean over the batch of w * c[i] (weighted
    mean sum(v_i w c_i) / sum(v_i) when example weights v are given): minus the step's gradient."""
    w = {"w": torch.zeros(())}

    def loss(index):
        if weights is None:
            return (w["w"] * c[index]).mean()
        v = weights[index].double()
        return (w["w"].double() * c[index].double() * v).sum() / v.sum()

    s = TrainSettings(steps=1, batch_size=batch_size, lr=1.0, optimizer="sgd", grad_accum=grad_accum, seed=0)
    Trainer(w, loss, len(c), s, weights=weights).run()
    return float(w["w"])


@pytest.mark.parametrize("batch_size,grad_accum", [(2, 3), (2, 2), (5, 1), (1, 5), (4, 2)])
def test_a_step_over_micro_batches_is_the_gradient_of_their_whole_mean(batch_size, grad_accum):
    """5 examples; batches of 2 come as 2 + 2 + 1 (an epoch's short last batch): every example of a
    step counts the same, as in one batch holding them all (each micro-batch's mean used to count
    1 / grad_accum, so the lone example of (2, 3) counted 1/3 instead of 1/5)."""
    c = torch.tensor([1.0, 2.0, 4.0, 8.0, 16.0])
    stream = batches(5, batch_size, seed=0)
    drawn = torch.cat([next(stream) for _ in range(grad_accum)])
    assert _one_sgd_step(c, batch_size, grad_accum) == pytest.approx(-float(c[drawn].mean()), rel=1e-6)
    if (batch_size, grad_accum) == (2, 3):
        assert float(c[drawn].mean()) == pytest.approx(6.2)  # the whole epoch


def test_micro_batches_count_by_their_loss_weight():
    """A loss per target token: each micro-batch's weighted mean counts by its share of the step's
    tokens, so the step is the token-weighted mean over all its examples."""
    c = torch.tensor([1.0, 2.0, 4.0, 8.0, 16.0])
    tokens = torch.tensor([1, 3, 1, 1, 4])
    expected = float((c * tokens).sum() / tokens.sum())
    assert _one_sgd_step(c, 2, 3, weights=tokens) == pytest.approx(-expected, rel=1e-6)
