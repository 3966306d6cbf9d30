"""The d90 sweep: scores for several d (and seeds), and the smallest d reaching 90% of the baseline.

Model-agnostic: `run_sweep` calls run_fn(d, seed) -> score. Dimensions are given, or found
automatically: a log grid (10, 30, 100, 300, ...) until the mean score passes, then bisection (on a
log scale) between the last failing and the first passing d. run_fn ends the sweep early by
raising `StopSweep` (the sweep keeps what is done and says `stopped`).
"""

from __future__ import annotations

import logging
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)


def log_grid(max_dim: int, start: int = 10, min_dim: int = 1) -> list[int]:
    """10, 30, 100, 300, ... (1 and 3 per decade) from `start`, kept within [min_dim, max_dim];
    max_dim is the last point."""
    out, base = [], start
    while base < max_dim:
        for m in (1, 3):
            if min_dim <= base * m < max_dim:
                out.append(base * m)
        base *= 10
    return [*out, max_dim] if max_dim >= min_dim else out


class StopSweep(Exception):
    """Raised by run_fn to end the sweep; `score`, when given, is recorded first (a finished run)."""

    def __init__(self, score: float | None = None):
        super().__init__("sweep stopped")
        self.score = score


@dataclass
class Sweep:
    """Scores per (d, seed) against a baseline; d90 from the mean over seeds, spread from each seed."""

    baseline: float
    threshold: float = 0.9
    scores: dict[int, list[float]] = field(default_factory=dict)
    stopped: bool = False

    @property
    def target(self) -> float:
        return self.threshold * self.baseline

    def add(self, d: int, score: float) -> None:
        self.scores.setdefault(d, []).append(score)

    def mean(self, d: int) -> float:
        return statistics.fmean(self.scores[d])

    def passed(self, d: int) -> bool:
        return self.mean(d) >= self.target - 1e-12

    @property
    def dims(self) -> list[int]:
        return sorted(self.scores)

    def d90(self) -> int | None:
        """Smallest d whose mean score reaches threshold * baseline (None if none did)."""
        return next((d for d in self.dims if self.passed(d)), None)

    def d90_per_seed(self) -> list[int | None]:
        """For each seed index, the smallest d where that seed's run reached the target."""
        n = max((len(s) for s in self.scores.values()), default=0)
        return [next((d for d in self.dims if len(self.scores[d]) > i and self.scores[d][i] >= self.target - 1e-12),
                     None) for i in range(n)]

    def summary(self) -> list[dict]:
        rows = []
        for d in self.dims:
            s = self.scores[d]
            rows.append({"d": d, "mean": self.mean(d), "std": statistics.pstdev(s), "min": min(s), "max": max(s),
                         "n_seeds": len(s), "reached": self.passed(d)})
        return rows

    def report(self) -> dict:
        per_seed = self.d90_per_seed()
        found = [d for d in per_seed if d is not None]
        return {"d90": self.d90(), "baseline": self.baseline, "threshold": self.threshold, "target": self.target,
                "d90_per_seed": per_seed, "d90_min": min(found, default=None), "d90_max": max(found, default=None),
                "per_dim": self.summary()}


def _run_dim(sweep: Sweep, run_fn: Callable[[int, int], float], d: int, seeds: int) -> bool:
    for s in range(seeds):
        try:
            score = run_fn(d, s)
        except StopSweep as stop:
            if stop.score is not None:
                sweep.add(d, float(stop.score))
            raise
        sweep.add(d, float(score))
    logger.info("d=%d: score %.4f (target %.4f)%s", d, sweep.mean(d), sweep.target,
                " reached" if sweep.passed(d) else "")
    return sweep.passed(d)


def bisect(sweep: Sweep, run_fn, lo: int, hi: int, seeds: int, steps: int) -> None:
    """Narrow (lo failing, hi passing) with up to `steps` runs at the geometric midpoint."""
    for _ in range(steps):
        mid = round(math.sqrt(max(lo, 1) * hi)) if lo > 0 else hi // 2
        if not lo < mid < hi:
            return
        if _run_dim(sweep, run_fn, mid, seeds):
            hi = mid
        else:
            lo = mid


def run_sweep(run_fn: Callable[[int, int], float], baseline: float, dims: list[int] | None = None, seeds: int = 1,
              threshold: float = 0.9, max_dim: int = 100_000, bisect_steps: int = 3, min_dim: int = 1,
              start: int = 10) -> Sweep:
    """Scores of run_fn(d, seed) for seed in range(seeds), over `dims` or the automatic search."""
    sweep = Sweep(baseline, threshold)
    try:
        _search(sweep, run_fn, dims, seeds, max_dim, bisect_steps, min_dim, start)
    except StopSweep:
        sweep.stopped = True
        logger.info("sweep stopped after %d runs", sum(len(s) for s in sweep.scores.values()))
    return sweep


def _search(sweep: Sweep, run_fn, dims, seeds, max_dim, bisect_steps, min_dim, start) -> None:
    if dims:
        for d in dims:
            _run_dim(sweep, run_fn, d, seeds)
        return
    lo = min_dim - 1
    for d in log_grid(max_dim, start, min_dim):
        if _run_dim(sweep, run_fn, d, seeds):
            bisect(sweep, run_fn, lo, d, seeds, bisect_steps)
            return
        lo = d
    logger.warning("no d up to %d reached %.0f%% of the baseline; raise IntrinsicDimConfig.max_dim", max_dim, 100 * sweep.threshold)
