"""The two kinds of gradient run, both on the shared `frozen_lm.train.Trainer`: subspace training of
theta_d (and the SAID scales) and the full training baseline of the same tensors, in any space (the
objective says what theta is: model weights, a prompt or a prefix). CMA-ES runs are in
`intrinsic_dim.cma` and return the same `Run`.

The frozen weights are only read (overrides through functional_call); full fine-tuning trains one
copy of the selected tensors, made once. Both score their final state on the dev rows with the
shared evaluator (keep_best is off: no checkpoint copies). Runs count their forward passes of one
training example (`examples_seen`), the unit of IntrinsicDimConfig.max_forward_passes.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field, replace

import torch

from frozen_lm.encode import Rows
from frozen_lm.events import Callback
from frozen_lm.train import Trainer, TrainResult, TrainSettings, loss_weights, metric_of
from intrinsic_dim.apply import dev_metrics
from intrinsic_dim.projections import make_projection
from intrinsic_dim.result import METHOD
from intrinsic_dim.subspace import Subspace, projection_dim

logger = logging.getLogger(__name__)
SAID_LR = 1e-2  # learning rate of the SAID scales (they start at 1)


@dataclass
class Run:
    """One training run: its dimension, seed, dev score, final train loss, time and trained tensors.
    stopped: a callback ended it before its last step (its score is of the state it reached)."""

    d: int
    seed: int
    score: float
    loss: float
    seconds: float
    steps: int = 0
    step_seconds: float = 0.0
    step_cpu_seconds: float = 0.0
    stopped: bool = False
    losses: list[float] = field(default_factory=list, repr=False)
    tensors: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    forward_passes: int = 0  # training examples forwarded (CMA-ES: examples x candidates); dev scoring not counted
    optimizer: str = "adam"

    def record(self) -> dict:
        out = {"d": self.d, "seed": self.seed, "score": self.score, "train_loss": self.loss,
               "seconds": round(self.seconds, 3), "steps": self.steps, "s_per_step": round(self.step_seconds, 4),
               "cpu_s_per_step": round(self.step_cpu_seconds, 4), "forward_passes": self.forward_passes,
               "optimizer": self.optimizer}
        return {**out, "stopped": True} if self.stopped else out

    @classmethod
    def from_record(cls, record: dict, losses: list[float], tensors: dict[str, torch.Tensor]) -> Run:
        """A saved run back from its record, its losses (the result's history) and trained tensors;
        its record() equals the saved one."""
        return cls(record["d"], record["seed"], record["score"], record["train_loss"], record["seconds"],
                   record["steps"], record["s_per_step"], record.get("cpu_s_per_step", 0.0),
                   bool(record.get("stopped")), list(losses), tensors, record["forward_passes"],
                   record.get("optimizer", "adam"))


def examples_seen(n: int, batch_size: int, steps: int) -> int:
    """Examples that `steps` batches of the shared batch stream (frozen_lm.train.batches: epochs of
    n examples, the last batch of an epoch shorter) hold."""
    sizes = [batch_size] * (n // batch_size) + ([n % batch_size] if n % batch_size else [])
    epochs, rest = divmod(steps, len(sizes))
    return epochs * n + sum(sizes[:rest])


def steps_within(budget: int | None, steps: int, n: int, batch_size: int, per_example: int = 1) -> int:
    """The most steps (at most `steps`) whose batches cost no more than `budget` forward passes, each
    example counting `per_example` (CMA-ES: the population size); 0 when not even one fits."""
    if budget is None:
        return steps
    done = 0
    while done < steps and per_example * examples_seen(n, batch_size, done + 1) <= budget:
        done += 1
    return done


def _run(d: int, seed: int, res: TrainResult, start: float, tensors: dict[str, torch.Tensor], n: int,
         settings: TrainSettings) -> Run:
    losses = [h["loss"] for h in res.history if "loss" in h]
    score = metric_of(res.last_metrics) if res.last_metrics else float("nan")
    passes = examples_seen(n, settings.batch_size, res.steps_done)
    return Run(d, seed, score, losses[-1] if losses else float("nan"), time.perf_counter() - start, res.steps_done,
               res.step_seconds, res.step_cpu_seconds, res.stopped == "callback", losses, tensors, passes,
               settings.optimizer)


def _settings(settings: TrainSettings, **changes) -> TrainSettings:
    """The run's settings: the final state is scored once, after the last step."""
    return replace(settings, keep_best=False, eval_every=0, eval_first=False, **changes)


def train_subspace(objective, base: dict[str, torch.Tensor], kind: str, d: int, seed: int,
                   settings: TrainSettings, train: Rows, dev: Rows, said: bool = False, *, eval_batch_size: int = 32,
                   callback: Callback | None = None, stage: str = "", **proj_kw) -> Run:
    """Train theta_d in R^d (d includes the SAID scales) with projection `kind` drawn from `seed`
    (which also orders the batches). objective: any space's (see intrinsic_dim.objective)."""
    start = time.perf_counter()
    device = objective.lm.device
    D = sum(t.numel() for t in base.values())
    proj = make_projection(kind, D, projection_dim(d, len(base), said), seed, device, **proj_kw)
    space = Subspace(base, proj, said)
    values = space.init(device, torch.float32)

    def loss_fn(idx: torch.Tensor) -> torch.Tensor:
        return objective.loss(space.params(**values), train.subset(idx))

    def evaluate() -> dict:
        with torch.no_grad():
            return dev_metrics(objective, space.params(**values), dev, eval_batch_size)

    st = _settings(settings, seed=seed, lrs={"said_scale": SAID_LR, **settings.lrs})
    res = Trainer(values, loss_fn, len(train), st, evaluate, callback=callback, method=METHOD,
                  stage=stage or f"d={d} seed={seed}", weights=_weights(objective, train)).run()
    return _run(d, seed, res, start, values, len(train), st)


def train_full(objective, base: dict[str, torch.Tensor], settings: TrainSettings, train: Rows, dev: Rows,
               *, eval_batch_size: int = 32, callback: Callback | None = None, stage: str = "baseline") -> Run:
    """Full training of the same tensors with the same objective (one trainable copy, returned): full
    fine-tuning in model space, prompt tuning / direct prefix tuning in prompt / prefix space. The copy
    trains in float32 and is cast to the weights' dtype (bfloat16, say) at use."""
    start = time.perf_counter()
    values = {k: v.detach().float().clone() for k, v in base.items()}

    def cast() -> dict[str, torch.Tensor]:
        return {k: v.to(base[k].dtype) for k, v in values.items()}  # (float32 weights: the tensors themselves)

    def evaluate() -> dict:
        return dev_metrics(objective, cast(), dev, eval_batch_size)

    st = _settings(settings)
    res = Trainer(values, lambda idx: objective.loss(cast(), train.subset(idx)), len(train), st,
                  evaluate, callback=callback, method=METHOD, stage=stage, weights=_weights(objective, train)).run()
    D = sum(t.numel() for t in base.values())
    return _run(D, settings.seed, res, start, values, len(train), st)


def _weights(objective, train: Rows) -> torch.Tensor | None:
    """The examples' weights in the objective's batch loss (for several processes' shares)."""
    task = getattr(objective, "task", None)
    if task is None or getattr(objective, "head", "none") != "none":
        return None  # a plain mean (a linear head's cross-entropy)
    return loss_weights(task, train, getattr(objective, "loss_kind", "vocab"))


def subspace_lr(lr: float | None, baseline_lr: float, D: int, d_proj: int) -> float:
    """lr, or baseline_lr * sqrt(D / d): Adam moves theta_d by about lr per coordinate, so this
    gives steps in theta as long as full fine-tuning's."""
    return lr if lr is not None else baseline_lr * math.sqrt(D / d_proj)
