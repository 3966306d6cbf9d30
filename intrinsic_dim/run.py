"""`intrinsic_dim.measure`: full training (unless its score is given), then subspace runs over d and
seeds, and d90 (Li et al., 2018; Aghajanyan et al., 2020), in model, prompt or prefix space.

The space's objective (intrinsic_dim.objective / intrinsic_dim.spaces) says what moves; gradient runs
train on the shared Trainer, CMA-ES runs in intrinsic_dim.cma. Before the baseline, the theta_0
score (d = 0) and the dev majority-class rate are measured; a d90 is reported only when full
training beats both by config.min_gain (intrinsic_dim.honest).

Nothing is written unless `out` is given; then the artifact (the saved run's theta_d, and theta_0 of
a prompt or prefix) and, when config.plot, d90.png (under torchrun by process 0 alone; every
process trains on its share of each batch through the shared Trainer). The artifact is also written
after every finished run (status 'running', with every finished run's tensors), so Ctrl-C or a crash
loses at most the run in progress, and `resume=` continues it (intrinsic_dim.resume). A callback
gets the runs' 'step' events and a 'run' event after each finished run; returning True stops the
sweep, and the result keeps what is done.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from frozen_lm import data as data_mod
from frozen_lm import distributed
from frozen_lm.artifact import claim_out
from frozen_lm.errors import Interrupted, UserError
from frozen_lm.evaluate import DiscretePrompt
from frozen_lm.events import Callback, Event, notify
from frozen_lm.results import base_fields, resumes_into
from frozen_lm.task import PromptTask
from frozen_lm.train import TrainSettings, metric_of
from intrinsic_dim.cma import CMASettings, default_popsize, load_cmaes, sigma_in_z, theta_std, train_cma
from intrinsic_dim.config import CMA_MAX_DIM, IntrinsicDimConfig
from intrinsic_dim.honest import majority_rate, refusal
from intrinsic_dim.memory import check_projection, limit_bytes
from intrinsic_dim.result import METHOD, D90Result
from intrinsic_dim.resume import Restored, check_inputs, load_previous, restore, run_tensors
from intrinsic_dim.spaces import make_objective
from intrinsic_dim.subspace import projection_dim
from intrinsic_dim.sweep import StopSweep, Sweep, run_sweep
from intrinsic_dim.train import Run, steps_within, subspace_lr, train_full, train_subspace

logger = logging.getLogger(__name__)


def measure(task: PromptTask, train, dev, config: IntrinsicDimConfig | None = None, *, prompt=None, out=None,
            resume=None, overwrite: bool = False, callback: Callback | None = None,
            progress: bool = True) -> D90Result:
    """Measure the task's intrinsic dimension d90 in config.space (see IntrinsicDimConfig): the model's
    weights, a soft prompt at the template's [T] slots, or a prefix.

    train, dev: any data source (path, demo:/hf: source, list of dicts, datasets.Dataset); every run
    is scored on dev with the shared evaluator. prompt (model space): fills the template's [T] slots
    (a DiscretePrompt, trigger text or a search result); needed when the template has slots.
    out: the artifact folder to write (nothing is written without it; a folder holding another run
    is refused unless overwrite=True or it is the run being resumed, and an unwritable one before any
    training). resume: a D90Result or its folder (interrupted, stopped, or written while running) to
    continue: its baseline and finished runs are taken as they are, the rest trained, and the result
    equals an uninterrupted run's (timings aside; a finished run gives back an equal result without
    training). Task, data, prompt (default: the saved one) and config must equal the saved run's,
    except plot and max_projection_gib (IntrinsicDimConfig.RESUMABLE). callback(event): 'step'
    events of each run (an optimizer step, or a CMA-ES generation) and a 'run' event after each
    finished run (stage 'baseline' or 'd=D seed=S'; runs taken from `resume` send none); returning
    True stops the sweep (status 'stopped'). No d90 is reported when full training does not beat the
    dev majority-class rate and the theta_0 score by config.min_gain (result.d90_refused says why).
    Ctrl-C raises `frozen_lm.errors.Interrupted` carrying the runs done so far (saved first when
    `out` is given, to be continued with resume=out).
    """
    config = config or IntrinsicDimConfig()
    previous = load_previous(resume, task, config)
    if previous is not None and prompt is None and previous.trigger_ids:
        prompt = DiscretePrompt.from_ids(task.lm.tokenizer, previous.trigger_ids)  # the saved run's
    trigger = prompt_ids(task, prompt) if config.space == "model" else _no_prompt(config, prompt)
    if config.space == "model":
        check_movable(task.lm)
    if dev is None:
        raise UserError("give a dev split: every run is scored on it")
    if config.optimizer == "cma":
        load_cmaes()  # a missing package: say so before any work
    objective, base = make_objective(task, config)
    if out is not None:
        claim_out(out, overwrite, resume=resumes_into(resume, out))
    if out is not None and config.plot:
        from intrinsic_dim.plot import pyplot

        pyplot()  # no matplotlib: say so before any training
    train_rows, dev_rows, data = _splits(objective.task, train, dev, config, trigger)
    restored = None
    if previous is not None:
        check_inputs(previous, trigger, data, next(iter(base.values())) if config.space != "model" else None)
        restored = restore(previous, task.lm.device)
    job = _Measure(task, config, objective, base, train_rows, dev_rows, callback, restored)
    started = time.perf_counter() - (restored.seconds if restored else 0.0)  # the saved run's time counts too
    if out is not None:
        job.checkpoint = lambda: job.result(data, trigger, "running", started).save(out)
    try:
        job.run(progress)
    except KeyboardInterrupt:
        raise _interrupted(job.result(data, trigger, "interrupted", started), job, out) from None
    result = job.result(data, trigger, "stopped" if job.stopped else "done", started)
    if out is not None:
        save(result, out)
    return result


def _interrupted(result: D90Result, job: _Measure, out) -> Interrupted:
    """Interrupted carrying the runs done so far, saved first (when `out` is given) to be resumed."""
    where = ""
    if out is not None:
        result.save(out)
        where = f"; the runs done are saved in {out}; continue with: autoprompt intrinsic-dim --resume {out}"
    done = sum(not r.stopped for r in job.runs)
    return Interrupted(f"interrupted after {done} finished subspace runs{where}", result)


def save(result: D90Result, out) -> Path:
    """Write the artifact and, when the config asks for it and there is a sweep, d90.png."""
    out = Path(out)
    if result.config.plot and result.per_dim and distributed.is_main():
        out.mkdir(parents=True, exist_ok=True)
        result.plot_path = str(result.plot(out / "d90.png"))
    return result.save(out)


def check_movable(lm) -> None:
    """UserError when model space cannot move the weights: bitsandbytes-quantized ones, or ones spread
    over several devices or offloaded by a device map."""
    if getattr(lm, "quantized", None):
        raise UserError(f"--space model moves the model's weights, which are {lm.quantized}-quantized (bitsandbytes) "
                        "and cannot take theta_0 + P(theta_d); load it without --quantize (e.g. --dtype bfloat16), "
                        "or use --space prompt / prefix")
    if getattr(lm, "sharded", False) or getattr(lm, "offloaded", False):
        raise UserError("--space model moves the model's weights, which --device-map spread over several devices "
                        "(theta_0 + P(theta_d) is built on one); use one device (--dtype bfloat16, or several "
                        "processes with torchrun), or --space prompt / prefix")


def prompt_ids(task: PromptTask, prompt) -> list[int] | None:
    """The trigger ids that fill the template's [T] slots; UserError when slots and prompt disagree."""
    n = task.template.n_triggers
    if prompt is None:
        if n:
            raise UserError(f"template {task.spec.template!r} has {n} [T] slots and intrinsic-dim trains weights, "
                            "not prompt slots: give prompt= (a DiscretePrompt, trigger text or a search result) "
                            "to fill them, remove [T] from the template, or train the slots with --space prompt")
        return None
    if not n:
        raise UserError(f"a prompt was given, but template {task.spec.template!r} has no [T] slots to fill")
    if isinstance(prompt, str):
        prompt = DiscretePrompt.from_text(task, prompt)
    ids = getattr(prompt, "trigger_ids", None)
    if ids is None and hasattr(prompt, "bind"):
        ids = getattr(prompt.bind(task), "trigger_ids", None)
    if ids is None:
        raise UserError(f"intrinsic-dim fills [T] slots with trigger tokens only (a DiscretePrompt, trigger text or "
                        f"a search result); a {type(prompt).__name__} has none")
    ids = [int(i) for i in ids]
    if len(ids) != n:
        raise UserError(f"the prompt has {len(ids)} trigger tokens, but template {task.spec.template!r} has {n} [T] slots")
    return ids


def _no_prompt(config: IntrinsicDimConfig, prompt) -> None:
    if prompt is not None:
        raise UserError(f"--space {config.space} trains the prompt itself; prompt= fills [T] slots with tokens only in "
                        "model space (leave it out)")
    return None


def _splits(task: PromptTask, train, dev, config: IntrinsicDimConfig, trigger):
    """(train rows, dev rows, data description); at most max_train / max_dev examples (seeded sample)."""
    datasets = {"train": (train, data_mod.load(train), config.max_train), "dev": (dev, data_mod.load(dev), config.max_dev)}
    data, rows = {}, {}
    for split, (source, ds, limit) in datasets.items():
        data[split] = data_mod.describe(source, ds)
        encoded = task.encode(ds.sample(limit, config.seed), trigger)
        for note in encoded.notes:
            logger.info("%s: %s", split, note)
        rows[split] = encoded.rows.to(task.lm.device)
    return rows["train"], rows["dev"], data


class _Measure:
    """The baseline and the sweep on encoded splits; keeps every run for the result."""

    def __init__(self, task: PromptTask, config: IntrinsicDimConfig, objective, base, train, dev,
                 callback: Callback | None, restored: Restored | None = None):
        self.task, self.cfg, self.train, self.dev, self.callback = task, config, train, dev, callback
        self.restored = restored or Restored()
        self.checkpoint = None  # called after each trained run (measure: rewrite the artifact)
        self.objective, self.base = objective, base
        self.D = sum(t.numel() for t in self.base.values())
        self.majority, self.manual, self.refused = majority_rate(dev), None, None
        self.limit = limit_bytes(config.max_projection_gib, task.lm.device)
        self.baseline: Run | None = None
        self.base_score = config.baseline_score
        self.runs: list[Run] = []
        self.stopped, self.done = False, 0
        self.planned = None if config.dims is None else len(config.dims) * config.seeds + (self.base_score is None)
        self.bar, self.std = None, None
        logger.info("%d tensors move (D = %s numbers); %d train / %d dev examples", len(self.base), f"{self.D:,}",
                    len(train), len(dev))

    def run(self, progress: bool) -> None:
        cfg = self.cfg
        min_dim = len(self.base) + 1 if cfg.said else 1
        if cfg.dims and max(cfg.dims) > self.D:
            what = f"--params {cfg.params!r}" if cfg.space == "model" else f"the {cfg.space}"
            raise UserError(f"--dims {max(cfg.dims)} is more than the {self.D:,} numbers that move ({what}); "
                            f"use d up to {self.D:,}")
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
        """The largest d the automatic search tries: --max-dim, at most D (and CMA-ES's limit)."""
        cap = min(self.cfg.max_dim, self.D)
        return min(cap, CMA_MAX_DIM) if self.cfg.optimizer == "cma" else cap

    def _steps(self, d: int) -> int:
        """Steps (CMA-ES: generations) of a run at d within --max-forward-passes; UserError when none fit."""
        cfg = self.cfg
        pop = (cfg.popsize or default_popsize(d)) if cfg.optimizer == "cma" else 1
        steps = steps_within(cfg.max_forward_passes, cfg.steps, len(self.train), cfg.batch_size, pop)
        if steps < 1:
            per = f"--batch-size {cfg.batch_size} x popsize {pop}" if pop > 1 else f"--batch-size {cfg.batch_size}"
            raise UserError(f"--max-forward-passes {cfg.max_forward_passes} is less than one step at d={d} "
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
        if self.checkpoint is not None:
            self.checkpoint()
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

    def result(self, data: dict, trigger, status: str, started: float) -> D90Result:
        """The result so far; an unfinished one (status not 'done') keeps every finished run's tensors."""
        report = self._report()
        chosen = self._chosen(report.get("d90"))
        tensors = dict(chosen.tensors) if chosen else {}
        if status != "done":
            tensors.update(run_tensors(self.runs))
        if trigger is not None:
            tensors["trigger_ids"] = torch.tensor(trigger, dtype=torch.long)
        if self.cfg.space != "model":
            tensors["theta_0"] = next(iter(self.base.values()))
        metric = self.task.metric
        runs = ([self.baseline] if self.baseline else []) + self.runs
        history = [{"d": r.d, "seed": r.seed, "baseline": r is self.baseline, "loss": r.losses} for r in runs]
        return D90Result(
            **base_fields(METHOD, self.cfg, self.task, data), tensors=tensors,
            metrics={"dev": {metric: chosen.score, "n_scored": len(self.dev)}} if chosen else {},
            history=history, timings=self._timings(started), status=status, metric=metric, **report, D=self.D,
            n_tensors=len(self.base), baseline_run=self.baseline.record() if self.baseline else None,
            runs=[r.record() for r in self.runs], saved_run=chosen.record() if chosen else None, trigger_ids=trigger,
            majority=self.majority, manual=self.manual, d90_refused=self.refused,
            forward_passes=sum(r.forward_passes for r in self.runs), template=self.objective.task.spec.template,
            init_ids=getattr(self.objective, "init_ids", None))

    def _timings(self, started: float) -> dict:
        """Total seconds; mean seconds (wall and CPU) per training step of the baseline and of the subspace runs."""
        steps = sum(r.steps for r in self.runs)
        b = self.baseline

        def per_step(attr: str) -> float | None:
            return sum(getattr(r, attr) * r.steps for r in self.runs) / steps if steps else None

        return {"total_seconds": time.perf_counter() - started,
                "baseline_forward_passes": b.forward_passes if b else None,
                "baseline_seconds_per_step": b.step_seconds if b else None,
                "baseline_cpu_seconds_per_step": b.step_cpu_seconds if b else None,
                "subspace_seconds_per_step": per_step("step_seconds"),
                "subspace_cpu_seconds_per_step": per_step("step_cpu_seconds")}
