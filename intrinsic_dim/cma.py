"""CMA-ES in the subspace: training theta_d without gradients, as Black-Box Tuning (Sun et al., 2022)
tunes a prompt A z with z in R^500.

Each generation asks the `cmaes` package (a maintained CMA-ES, Hansen's algorithm) for `popsize`
candidates z_i ~ m + sigma N(0, C) in R^d, scores every candidate's theta_0 + P(z_i) on one batch of
training examples (the same batch for all of them, so the ranking compares like with like) and tells
it the losses. The objective's `population_loss` scores a whole population in batched passes: in
prompt and prefix space the candidates' prompts are stacked along the batch (candidates x examples
rows, a few passes); in model space each candidate is one pass over the batch (its weights differ).
Forward passes are counted as examples x candidates. The sampler and the batch order are seeded, so
the same seed gives the same run on CPU. The run's result is the distribution's mean m, scored once
on the dev rows, like the final state of a gradient run.

The first step size is relative (config.sigma): a candidate moves each of the D numbers by about
sigma x their standard deviation in theta_0, which with a norm-keeping P is sigma_z = sigma * std *
sqrt(D / d) in z. `cmaes` is optional (`pip install cmaes`); it is imported when a run needs it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from frozen_lm.encode import Rows
from frozen_lm.errors import UserError
from frozen_lm.events import Callback, Event, notify
from frozen_lm.train import batches, metric_of
from intrinsic_dim.projections import make_projection
from intrinsic_dim.result import METHOD
from intrinsic_dim.subspace import Subspace
from intrinsic_dim.train import Run

BAD_LOSS = 1e30  # what a non-finite candidate loss is told as (ranked last)


def load_cmaes():
    """The `cmaes` module; a one-line UserError naming the install command when it is missing."""
    try:
        import cmaes
    except ImportError:
        raise UserError("IntrinsicDimConfig.optimizer cma needs the cmaes package: pip install cmaes "
                        "(or pip install 'autoprompt-suite[cma]')") from None
    return cmaes


def default_popsize(d: int) -> int:
    """CMA-ES's usual population size, 4 + floor(3 ln d)."""
    return 4 + int(math.floor(3 * math.log(d)))


def theta_std(base: dict[str, torch.Tensor]) -> float:
    """Standard deviation of all numbers of theta_0 together (float64 sums, no concatenated copy)."""
    n, total, squares = 0, 0.0, 0.0
    for t in base.values():
        t = t.detach().double()
        n, total, squares = n + t.numel(), total + float(t.sum()), squares + float(t.square().sum())
    mean = total / max(n, 1)
    return math.sqrt(max(squares / max(n, 1) - mean * mean, 0.0)) or 1.0


def sigma_in_z(relative: float, std: float, D: int, d: int) -> float:
    """The step size in z that moves each of the D numbers by about relative * std (E ||P z||^2 = ||z||^2)."""
    return relative * std * math.sqrt(D / d)


@dataclass
class CMASettings:
    """generations; batch_size: examples per generation (all candidates see the same); sigma: first
    step size in z; popsize; seed (sampler and batch order); rows_per_pass: rows per forward pass."""

    generations: int
    batch_size: int
    sigma: float
    popsize: int
    seed: int = 0
    rows_per_pass: int = 32


@dataclass
class CMAResult:
    mean: torch.Tensor  # (d,) the distribution's mean after the last generation
    generations: int
    forward_passes: int
    stopped: str  # "steps" or "callback"
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    cpu_seconds: float = 0.0


def run_cma(population_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], d: int, n_examples: int,
            s: CMASettings, *, callback: Callback | None = None, stage: str = "") -> CMAResult:
    """Minimize population_loss(thetas (N, d) float32, example index) -> (N,) losses by CMA-ES from
    z = 0. A 'step' event follows every generation (loss: the population's mean, best_loss, sigma,
    forward_passes); a callback returning True stops after that generation."""
    import numpy as np

    cmaes = load_cmaes()
    opt = cmaes.CMA(mean=np.zeros(d), sigma=s.sigma, seed=s.seed, population_size=s.popsize)
    stream = batches(n_examples, s.batch_size, s.seed)
    history, passes, stopped, seconds, cpu = [], 0, "steps", 0.0, 0.0
    for gen in range(1, s.generations + 1):
        start, start_cpu = time.perf_counter(), time.process_time()
        index = next(stream)
        xs = np.stack([opt.ask() for _ in range(opt.population_size)])
        losses = population_loss(torch.from_numpy(xs).float(), index).double().cpu().numpy()
        told = np.where(np.isfinite(losses), losses, BAD_LOSS)
        opt.tell(list(zip(xs, told.tolist())))
        passes += opt.population_size * len(index)
        seconds, cpu = seconds + time.perf_counter() - start, cpu + time.process_time() - start_cpu
        finite = losses[np.isfinite(losses)]
        entry = {"step": gen, "loss": float(finite.mean()) if finite.size else float("nan"),
                 "best_loss": float(told.min()), "sigma": float(getattr(opt, "_sigma", float("nan"))),
                 "forward_passes": passes}
        history.append(entry)
        if notify(callback, Event(METHOD, "step", gen, s.generations, {k: v for k, v in entry.items() if k != "step"},
                                  stage)):
            stopped = "callback"
            break
    mean = torch.from_numpy(np.asarray(opt.mean, dtype=np.float32).copy())
    return CMAResult(mean, len(history), passes, stopped, history, seconds, cpu)


def train_cma(objective, base: dict[str, torch.Tensor], kind: str, d: int, seed: int, s: CMASettings, train: Rows,
              dev: Rows, *, eval_batch_size: int = 32, callback: Callback | None = None, stage: str = "") -> Run:
    """A CMA-ES run of theta_d in R^d with projection `kind` drawn from `seed` (which also seeds the
    sampler and orders the batches); the mean is scored on dev. Returns the same Run as gradient runs."""
    start = time.perf_counter()
    device = objective.lm.device
    D = sum(t.numel() for t in base.values())
    space = Subspace(base, make_projection(kind, D, d, seed, device))

    def population_loss(thetas: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return objective.population_loss(space, thetas.to(device), train.subset(index), s.rows_per_pass)

    res = run_cma(population_loss, d, len(train), s, callback=callback, stage=stage or f"d={d} seed={seed}")
    theta = res.mean.to(device)
    with torch.no_grad():
        score_metrics = objective.metrics(space.params(theta), dev, eval_batch_size)
    losses = [h["loss"] for h in res.history]
    per = max(res.generations, 1)
    return Run(d, seed, metric_of(score_metrics), losses[-1] if losses else float("nan"), time.perf_counter() - start,
               res.generations, res.seconds / per, res.cpu_seconds / per, res.stopped == "callback", losses,
               {"theta_d": theta}, res.forward_passes, "cma")
