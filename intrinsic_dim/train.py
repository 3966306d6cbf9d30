"""Training loops: subspace training of theta_d (and SAID scales) and the full fine-tuning baseline.

`optimize` is model-agnostic: it minimizes loss_fn(values, batch_index) over a few named tensors.
The language-model runs wrap it: the frozen weights are only read (overrides through
functional_call); full fine-tuning trains one copy of the selected tensors, made once.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch

from frozen_lm.encode import Rows
from intrinsic_dim.objective import Objective
from intrinsic_dim.projections import generator, make_projection
from intrinsic_dim.subspace import Subspace, projection_dim

logger = logging.getLogger(__name__)
SAID_LR = 1e-2  # learning rate of the SAID scales (they start at 1)


@dataclass
class Settings:
    steps: int = 100
    batch_size: int = 8
    lr: float = 1e-2
    optimizer: str = "adam"
    seed: int = 0
    eval_batch_size: int = 32


@dataclass
class Run:
    """One training run: its dimension, seed, dev score, final train loss, time and trained tensors."""

    d: int
    seed: int
    score: float
    loss: float
    seconds: float
    tensors: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    def record(self) -> dict:
        return {"d": self.d, "seed": self.seed, "score": self.score, "train_loss": self.loss,
                "seconds": round(self.seconds, 3)}


def batch_indices(n: int, batch_size: int, seed: int) -> Iterator[torch.Tensor]:
    """Endless batches of example indices, reshuffled each epoch from `seed`."""
    g = generator(seed)
    while True:
        order = torch.randperm(n, generator=g)
        for start in range(0, n, batch_size):
            yield order[start: start + batch_size]


def make_optimizer(groups: list[dict], kind: str) -> torch.optim.Optimizer:
    if kind == "sgd":
        return torch.optim.SGD(groups)
    return torch.optim.Adam(groups)


def optimize(values: dict[str, torch.Tensor], loss_fn: Callable[[dict, torch.Tensor], torch.Tensor],
             n_examples: int, settings: Settings, lrs: dict[str, float] | None = None,
             progress: Callable[[int, float], None] | None = None) -> list[float]:
    """Minimize loss_fn(values, batch_index) in place over `values` (leaf tensors); loss history."""
    for v in values.values():
        v.requires_grad_(True)
    lrs = lrs or {}
    groups = [{"params": [v], "lr": lrs.get(k, settings.lr)} for k, v in values.items()]
    opt = make_optimizer(groups, settings.optimizer)
    history = []
    batches = batch_indices(n_examples, settings.batch_size, settings.seed)
    for step in range(settings.steps):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(values, next(batches))
        loss.backward()
        opt.step()
        history.append(float(loss.detach()))
        if not math.isfinite(history[-1]):
            logger.warning("loss is %s at step %d; lower the learning rate", history[-1], step)
            break
        if progress:
            progress(step, history[-1])
    for v in values.values():
        v.requires_grad_(False)
    return history


def train_subspace(objective: Objective, base: dict[str, torch.Tensor], kind: str, d: int, seed: int,
                   settings: Settings, train: Rows, dev: Rows, said: bool = False, **proj_kw) -> Run:
    """Train theta_d in R^d (d includes the SAID scales) with projection `kind` drawn from `seed`."""
    start = time.perf_counter()
    torch.manual_seed(seed)
    D = sum(t.numel() for t in base.values())
    proj = make_projection(kind, D, projection_dim(d, len(base), said), seed, objective.lm.device, **proj_kw)
    space = Subspace(base, proj, said)
    values = space.init(objective.lm.device, torch.float32)
    lrs = {"said_scale": SAID_LR}

    def loss_fn(v, idx):
        return objective.loss(space.params(**v), train.subset(idx))

    hist = optimize(values, loss_fn, len(train), Settings(**{**vars(settings), "seed": seed}), lrs)
    with torch.no_grad():
        score = objective.score(space.params(**values), dev, settings.eval_batch_size)
    return Run(d, seed, score, hist[-1] if hist else float("nan"), time.perf_counter() - start, values)


def train_full(objective: Objective, base: dict[str, torch.Tensor], settings: Settings,
               train: Rows, dev: Rows) -> Run:
    """Full fine-tuning of the same tensors with the same objective (one trainable copy, returned)."""
    start = time.perf_counter()
    torch.manual_seed(settings.seed)
    values = {k: v.detach().clone() for k, v in base.items()}
    hist = optimize(values, lambda v, idx: objective.loss(v, train.subset(idx)), len(train), settings)
    score = objective.score(values, dev, settings.eval_batch_size)
    D = sum(t.numel() for t in base.values())
    return Run(D, settings.seed, score, hist[-1] if hist else float("nan"), time.perf_counter() - start, values)
