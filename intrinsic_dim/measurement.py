"""The measurement itself, on encoded splits: the theta_0 score and the dev majority-class rate, full
training (unless its score is given), then subspace runs over d and seeds, and d90 (Li et al., 2018;
Aghajanyan et al., 2020), in model, prompt or prefix space.

The space's objective (intrinsic_dim.objective / intrinsic_dim.spaces) says what moves; gradient runs
train on the shared Trainer, CMA-ES runs in intrinsic_dim.cma. A d90 is reported only when full
training beats the theta_0 score and the majority-class rate by config.min_gain (intrinsic_dim.honest).
After every finished run the result so far (status 'running', with every finished run's tensors) goes
to the runner's checkpoint, so a crash loses at most the run in progress; a resumed run takes the
saved baseline and finished runs as they are (intrinsic_dim.resume). A callback gets the runs' 'step'
events and a 'run' event after each finished run; returning True stops the sweep.
"""

from __future__ import annotations

import logging

import torch
from tqdm.auto import tqdm

from frozen_lm import distributed, runner
from frozen_lm.configs import field_error, name_of
from frozen_lm.errors import UserError
from frozen_lm.events import Event, notify
from frozen_lm.train import TrainSettings, metric_of
from intrinsic_dim.cma import CMASettings, default_popsize, sigma_in_z, theta_std, train_cma
from intrinsic_dim.config import CMA_MAX_DIM
from intrinsic_dim.honest import majority_rate, refusal
from intrinsic_dim.memory import check_projection, limit_bytes
from intrinsic_dim.params import n_parameters
from intrinsic_dim.result import METHOD, D90Result
from intrinsic_dim.resume import Restored, run_tensors
from intrinsic_dim.subspace import projection_dim
from intrinsic_dim.sweep import StopSweep, Sweep, run_sweep
from intrinsic_dim.train import Run, steps_within, subspace_lr, train_full, train_subspace

logger = logging.getLogger(__name__)


class Measurement:
    """The baseline and the sweep on encoded splits (train, dev: Rows) of the runner's run `context`;
    keeps every run for the result. objective, base: the space's objective and theta_0 by name;
    trigger: the ids in the template's [T] slots (model space), or None; restored: a resumed run's
    finished work."""

    def __init__(self, context: runner.Run, objective, base: dict[str, torch.Tensor], train, dev,
                 trigger: list[int] | None = None, restored: Restored | None = None):
        config = context.config
        self.context, self.task, self.cfg, self.callback = context, context.task, config, context.callback
        self.train, self.dev, self.trigger = train, dev, trigger
        self.restored = restored or Restored()
        self.objective, self.base = objective, base
        self.D = sum(t.numel() for t in self.base.values())
        self.majority, self.manual, self.refused = majority_rate(dev), None, None
        self.limit = limit_bytes(config.max_projection_gib, self.task.lm.device)
        self.baseline: Run | None = None
        self.base_score = config.baseline_score
        self.runs: list[Run] = []
        self.stopped, self.done = False, 0
        self.planned = None if config.dims is None else len(config.dims) * config.seeds + (self.base_score is None)
        self.bar, self.std = None, None
        logger.info("%d tensors move (D = %s numbers); %d train / %d dev examples", len(self.base), f"{self.D:,}",
                    len(train), len(dev))

    @property
    def finished(self) -> int:
        """Subspace runs finished (not cut short by a callback)."""
        return sum(not r.stopped for r in self.runs)

    def run(self, progress: bool) -> None:
        cfg = self.cfg
        min_dim = len(self.base) + 1 if cfg.said else 1
        if cfg.dims and max(cfg.dims) > self.D:
            what = f"{name_of(cfg, 'params')} {cfg.params!r}" if cfg.space == "model" else f"the {cfg.space}"
            raise UserError(f"{name_of(cfg, 'dims')} {max(cfg.dims)} is more than the {self.D:,} numbers that move "
                            f"({what}); use d up to {self.D:,}")
        largest = max(cfg.dims) if cfg.dims else max(self._max_dim(), min_dim)
        if cfg.dims:  # refuse before any training
            check_projection(cfg.projection, self.D, projection_dim(largest, len(self.base), cfg.said), self.limit)
        self._steps(largest)
        self.bar = tqdm(total=self.planned, desc="intrinsic-dim", unit="run", disable=not progress or not distributed.is_main(),
                        dynamic_ncols=True)
        try:
            self.manual = metric_of(self.objective.metrics(self.base, self.dev, cfg.eval_batch_size))
            if self.base_score is None:
                self.base_score = self._baseline()
                if not self.stopped:
                    self.refused = refusal(self.base_score, self.majority, self.manual, cfg.min_gain, self.task.metric,
                                           cfg.threshold)
                    if self.refused:
                        logger.warning("no d90: %s", self.refused["reason"])
            if not self.stopped:
                sweep = run_sweep(self._run_fn, self.base_score, cfg.dims, cfg.seeds, cfg.threshold,
                                  max(self._max_dim(), min_dim), cfg.bisect_steps, min_dim)
                self.stopped = sweep.stopped
        finally:
            self.bar.close()

    def _max_dim(self) -> int:
        """The largest d the automatic search tries: config.max_dim, at most D (and CMA-ES's limit)."""
        cap = min(self.cfg.max_dim, self.D)
        return min(cap, CMA_MAX_DIM) if self.cfg.optimizer == "cma" else cap

    def _steps(self, d: int) -> int:
        """Steps (CMA-ES: generations) of a run at d within config.max_forward_passes; UserError when none fit."""
        cfg = self.cfg
        pop = (cfg.popsize or default_popsize(d)) if cfg.optimizer == "cma" else 1
        steps = steps_within(cfg.max_forward_passes, cfg.steps, len(self.train), cfg.batch_size, pop)
        if steps < 1:
            per = f"batch_size {cfg.batch_size} x popsize {pop}" if pop > 1 else f"batch_size {cfg.batch_size}"
            raise field_error(cfg, "max_forward_passes", f"{cfg.max_forward_passes} is less than one step at d={d} "
                              f"({per} = {cfg.batch_size * pop}); raise it")
        return steps

    def _baseline(self) -> float:
        cfg = self.cfg
        saved = self.restored.take_baseline()
        if saved is not None:
            self.baseline = saved
            self._taken(saved, "baseline")
            return saved.score
        settings = TrainSettings(cfg.baseline_steps or cfg.steps, cfg.batch_size, cfg.baseline_lr, seed=cfg.seed,
                                 optimizer="adam" if cfg.optimizer == "cma" else cfg.optimizer)
        run = train_full(self.objective, self.base, settings, self.train, self.dev,
                         eval_batch_size=cfg.eval_batch_size, callback=self.callback)
        run.tensors = {}  # not saved; frees the trained copy before the sweep
        self.baseline = run
        logger.info("full training: %s %.4f", self.task.metric, run.score)
        self._finished(run, "baseline")
        return run.score

    def _run_fn(self, d: int, s: int) -> float:
        cfg = self.cfg
        seed = cfg.seed + s
        saved = self.restored.take(d, seed)
        if saved is not None:
            self.runs.append(saved)
            self._taken(saved, f"d={d} seed={seed}")
            return saved.score
        d_proj = projection_dim(d, len(self.base), cfg.said)
        check_projection(cfg.projection, self.D, d_proj, self.limit)
        stage, steps = f"d={d} seed={seed}", self._steps(d)
        if cfg.optimizer == "cma":
            if self.std is None:
                self.std = theta_std(self.base)
            pop = cfg.popsize or default_popsize(d)
            settings = CMASettings(steps, cfg.batch_size, sigma_in_z(cfg.sigma_relative, self.std, self.D, d), pop,
                                   seed, cfg.eval_batch_size)
            run = train_cma(self.objective, self.base, cfg.projection, d, seed, settings, self.train, self.dev,
                            eval_batch_size=cfg.eval_batch_size, callback=self.callback, stage=stage)
        else:
            settings = TrainSettings(steps, cfg.batch_size, subspace_lr(cfg.lr, cfg.baseline_lr, self.D, d_proj),
                                     seed=seed, optimizer=cfg.optimizer)
            run = train_subspace(self.objective, self.base, cfg.projection, d, seed, settings, self.train, self.dev,
                                 cfg.said, eval_batch_size=cfg.eval_batch_size, callback=self.callback, stage=stage)
        self.runs.append(run)
        self._finished(run, stage)
        if run.stopped:
            raise StopSweep()  # cut short: not counted
        if self.stopped:
            raise StopSweep(run.score)
        return run.score

    def _finished(self, run: Run, stage: str) -> None:
        """Progress bar and the 'run' event; a run cut short by the callback stops the sweep."""
        self.bar.update(1)
        self.bar.set_postfix_str(f"{stage} score={run.score:.3f}")
        if run.stopped:
            self.stopped = True
            return
        self.done += 1
        self.context.checkpoint(self.result("running"))
        metrics = {"score": run.score, "train_loss": run.loss, "d": run.d, "seed": run.seed,
                   "forward_passes": run.forward_passes}
        if notify(self.callback, Event(METHOD, "run", self.done, self.planned, metrics, stage)):
            self.stopped = True

    def _taken(self, run: Run, stage: str) -> None:
        """A finished run taken from the resumed result: counted, no event."""
        self.bar.update(1)
        self.bar.set_postfix_str(f"{stage} score={run.score:.3f} (saved)")
        self.done += 1
        logger.info("%s: taken from the saved run (%s %.4f)", stage, self.task.metric, run.score)

    # ------------------------------------------------------------ the result
    def _sweep(self) -> Sweep | None:
        """The finished runs' scores against the baseline (None before there is a baseline)."""
        if self.base_score is None:
            return None
        sweep = Sweep(self.base_score, self.cfg.threshold)
        for run in self.runs:
            if not run.stopped:
                sweep.add(run.d, run.score)
        return sweep

    def _chosen(self, d90: int | None) -> Run | None:
        """The run to save: the best seed at d90, else the best run at the largest d."""
        done = [r for r in self.runs if not r.stopped]
        if not done:
            return None
        d = d90 or max(r.d for r in done)
        return max((r for r in done if r.d == d), key=lambda r: r.score)

    def _report(self) -> dict:
        """The sweep's numbers; no d90 (per seed neither) when the baseline was refused."""
        sweep = self._sweep()
        report = sweep.report() if sweep is not None else {"threshold": self.cfg.threshold}
        if self.refused and sweep is not None:
            report.update(d90=None, d90_per_seed=[None] * len(report["d90_per_seed"]), d90_min=None, d90_max=None)
        return report

    def result(self, status: str) -> D90Result:
        """The result so far; an unfinished one (status not 'done') keeps every finished run's tensors."""
        report = self._report()
        chosen = self._chosen(report.get("d90"))
        tensors = dict(chosen.tensors) if chosen else {}
        if status != "done":
            tensors.update(run_tensors(self.runs))
        if self.trigger is not None:
            tensors["trigger_ids"] = torch.tensor(self.trigger, dtype=torch.long)
        if self.cfg.space != "model":
            tensors["theta_0"] = next(iter(self.base.values()))
        metric = self.task.metric
        runs = ([self.baseline] if self.baseline else []) + self.runs
        history = [{"d": r.d, "seed": r.seed, "baseline": r is self.baseline, "loss": r.losses} for r in runs]
        return D90Result(
            **self.context.fields(), tensors=tensors,
            metrics={"dev": {metric: chosen.score, "n_scored": len(self.dev)}} if chosen else {},
            history=history, timings=self._timings(), status=status, metric=metric, **report, D=self.D,
            n_tensors=len(self.base), baseline_run=self.baseline.record() if self.baseline else None,
            runs=[r.record() for r in self.runs], saved_run=chosen.record() if chosen else None, trigger_ids=self.trigger,
            majority=self.majority, manual=self.manual, d90_refused=self.refused,
            forward_passes=sum(r.forward_passes for r in self.runs), template=self.objective.task.spec.template,
            init_ids=getattr(self.objective, "init_ids", None), parameters=n_parameters(self.task.lm))

    def _timings(self) -> dict:
        """Total seconds; mean seconds (wall and CPU) per training step of the baseline and of the subspace runs."""
        steps = sum(r.steps for r in self.runs)
        b = self.baseline

        def per_step(attr: str) -> float | None:
            return sum(getattr(r, attr) * r.steps for r in self.runs) / steps if steps else None

        return {"total_seconds": self.context.elapsed(),
                "baseline_forward_passes": b.forward_passes if b else None,
                "baseline_seconds_per_step": b.step_seconds if b else None,
                "baseline_cpu_seconds_per_step": b.step_cpu_seconds if b else None,
                "subspace_seconds_per_step": per_step("step_seconds"),
                "subspace_cpu_seconds_per_step": per_step("step_cpu_seconds")}
