"""D90Result: the d90 sweep's numbers, every run's record, and the saved run's theta_d.

`evaluate(task, data, prompt=result)` scores theta_0 + P(theta_d) of the saved run (the best seed
at d90, else the best run at the largest d) in its space: model weights (theta_0 = the model's own),
a prompt or a prefix (theta_0 saved as the tensor `theta_0`, since it comes from an init). The
projection is regenerated from its seed. `result.plot(path)` draws score against d; `save(dir)` also
writes it as d90.png when config.plot and the run ended with a sweep.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from frozen_lm import distributed
from frozen_lm.errors import UserError
from frozen_lm.results import Result

logger = logging.getLogger(__name__)

METHOD = "intrinsic_dim"
PLOT = "d90.png"


@dataclass
class D90Result(Result):
    """metric: 'accuracy' or 'p_at_1'. d90: the smallest d whose mean score over seeds reaches
    threshold * baseline (None if none did, or if the baseline was refused); d90_per_seed and its
    min/max: the same per seed. baseline: the full training score (or the one given); target =
    threshold * baseline. majority: the dev majority-class rate; manual: the dev score at theta_0
    (d = 0: the manual template, or the prompt at its init); d90_refused: why there is no d90 when
    full training did not beat both by config.min_gain (reason and numbers), else None.
    forward_passes: training examples forwarded by all subspace runs (CMA-ES: x candidates).
    template: the template the runs were scored with (a prompt's or prefix's effective template).
    init_ids: the tokens a prompt or prefix started from (None for model space or a random init).
    per_dim: one row per d (mean, std, min, max, n_seeds, reached). D: numbers in the moving
    tensors; n_tensors: how many tensors. baseline_run, runs: each run's record (d, seed, score,
    train_loss, seconds, steps, s_per_step, cpu_s_per_step, forward_passes, optimizer; stopped when
    a callback cut it short). saved_run: the record of the run whose theta_d (+ said_scale) the
    tensors hold; an unfinished result (status not 'done') also holds every finished run's as
    `runs.{i}.theta_d` (i: its index in runs), so `measure(..., resume=)` can continue it. plot_path: the plot written with the artifact (None if none).
    trigger_ids: the prompt tokens that filled the template's [T] slots (None without slots).
    parameters: the model's parameter count (tied weights once), what d90 against model size reads."""

    module = "intrinsic_dim"

    metric: str = "accuracy"
    d90: int | None = None
    d90_per_seed: list = field(default_factory=list)
    d90_min: int | None = None
    d90_max: int | None = None
    baseline: float | None = None
    threshold: float = 0.9
    target: float | None = None
    per_dim: list[dict] = field(default_factory=list)
    D: int = 0
    n_tensors: int = 0
    baseline_run: dict | None = None
    runs: list[dict] = field(default_factory=list)
    saved_run: dict | None = None
    plot_path: str | None = None
    trigger_ids: list[int] | None = None
    majority: float | None = None
    manual: float | None = None
    d90_refused: dict | None = None
    forward_passes: int = 0
    template: str = ""
    init_ids: list[int] | None = None
    parameters: int | None = None

    @property
    def d90_range(self) -> str:
        return f"{self.d90_min}-{self.d90_max}"

    @property
    def space(self) -> str:
        """'model', 'prompt' or 'prefix'."""
        return getattr(self.config, "space", "model")

    def bind(self, task):
        """theta_0 + P(theta_d) of the saved run on `task` (a Bound for the shared evaluator)."""
        from intrinsic_dim.apply import check_slots, saved_params
        from intrinsic_dim.objective import WeightsBound

        self.check_model(task.lm)
        if self.space != "model":
            from intrinsic_dim.spaces import saved_bound

            return saved_bound(self, task)
        check_slots(task, self.trigger_ids)
        objective, params = saved_params(self, task)
        return WeightsBound(task, objective, params, self.trigger_ids)

    def save(self, out) -> Path:
        """Write the artifact directory `out` and, when config.plot and a finished or stopped run has a
        sweep, its d90.png (plot_path; a run still going or interrupted gets its plot at the end).
        Without matplotlib the artifact is written without the plot (a run with an out folder
        refuses to start instead)."""
        out = Path(out)
        if self.config.plot and self.per_dim and self.status not in ("running", "interrupted") and distributed.is_main():
            out.mkdir(parents=True, exist_ok=True)
            try:
                self.plot_path = str(self.plot(out / PLOT))
            except UserError as e:  # no matplotlib
                logger.warning("%s: not written (%s)", out / PLOT, e)
        return super().save(out)

    def plot(self, path) -> Path:
        """Write the d90 plot (PNG, needs matplotlib) to `path`; returns the path."""
        from intrinsic_dim.plot import plot_d90

        cfg = self.config
        what = f"params={cfg.params}" if self.space == "model" else f"{self.space} space, D={self.D:,}"
        how = " (CMA-ES)" if cfg.optimizer == "cma" else ""
        title = f"{self.model.get('name')}: {cfg.projection}{' + SAID' if cfg.said else ''}{how}, {what}"
        report = {"per_dim": self.per_dim, "baseline": self.baseline, "target": self.target,
                  "threshold": self.threshold, "d90": self.d90, "majority": self.majority, "manual": self.manual,
                  "refused": bool(self.d90_refused)}
        return plot_d90(report, path, title, self.metric)

    @classmethod
    def from_artifact(cls, art, config) -> D90Result:
        """Also reads package 0.1's artifacts, whose config.json kept the saved run's d and seed."""
        result = super().from_artifact(art, config)
        saved = art.meta["config"]
        if result.saved_run is None and "d" in saved:
            result.saved_run = {"d": saved["d"], "seed": saved.get("projection_seed", config.seed)}
        result.D = result.D or int(saved.get("D") or 0)
        result.n_tensors = result.n_tensors or int(saved.get("n_tensors") or 0)
        result.template = result.template or result.task.template
        return result
