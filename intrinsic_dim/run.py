"""One `intrinsic-dim` experiment: load, encode, baseline, sweep; returns everything to save.

Kept apart from the command line so scripts and benchmarks call the same code.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from frozen_lm import data as data_mod
from frozen_lm.errors import UserError
from frozen_lm.model import FrozenLM
from frozen_lm.task import PromptTask, TaskConfig
from intrinsic_dim.config import IntrinsicDimConfig
from intrinsic_dim.memory import check_projection, limit_bytes
from intrinsic_dim.objective import Objective
from intrinsic_dim.params import select_names
from intrinsic_dim.subspace import projection_dim
from intrinsic_dim.sweep import Sweep, run_sweep
from intrinsic_dim.train import Run, Settings, train_full, train_subspace

logger = logging.getLogger(__name__)


@dataclass
class Experiment:
    """The loaded pieces: model, task, encoded splits, objective and the moving tensors theta_0."""

    lm: FrozenLM
    task: PromptTask
    task_cfg: TaskConfig
    objective: Objective
    base: dict[str, torch.Tensor]
    train: object
    dev: object

    @property
    def D(self) -> int:
        return sum(t.numel() for t in self.base.values())


@dataclass
class Outcome:
    experiment: Experiment
    sweep: Sweep
    baseline: Run | None
    runs: list[Run] = field(default_factory=list)

    def chosen(self) -> Run:
        """The run to save: the best seed at d90, else the best run at the largest d."""
        d = self.sweep.d90() or max(r.d for r in self.runs)
        return max((r for r in self.runs if r.d == d), key=lambda r: r.score)


def prepare(cfg: IntrinsicDimConfig, task_cfg: TaskConfig, seed: int, lm: FrozenLM | None = None) -> Experiment:
    """Load the model and data, and pick the tensors that move."""
    task_cfg = task_cfg.resolved(manual=True)
    lm = lm or FrozenLM.load(task_cfg.model, task_cfg.device, task_cfg.dtype)
    task = PromptTask.from_config(lm, task_cfg)
    if task.template.n_triggers:
        raise UserError("intrinsic-dim trains weights, not prompt slots: remove [T] from --template")
    train = task.encode(data_mod.load(task_cfg.train).sample(cfg.max_train, seed)).rows.to(lm.device)
    dev = task.encode(data_mod.load(task_cfg.dev).sample(cfg.max_dev, seed)).rows.to(lm.device)
    objective = Objective(task, cfg.head, cfg.loss, seed)
    base = objective.base(select_names(list(lm.named_parameters()), cfg.params))
    exp = Experiment(lm, task, task_cfg, objective, base, train, dev)
    logger.info("%d tensors move (D = %s numbers); %d train / %d dev examples", len(base), f"{exp.D:,}",
                len(train), len(dev))
    return exp


def settings(cfg: IntrinsicDimConfig, seed: int, baseline: bool = False) -> Settings:
    steps = (cfg.baseline_steps or cfg.steps) if baseline else cfg.steps
    lr = cfg.baseline_lr if baseline else cfg.lr
    return Settings(steps, cfg.batch_size, lr, cfg.optimizer, seed, cfg.eval_batch_size)


def subspace_lr(cfg: IntrinsicDimConfig, D: int, d_proj: int) -> float:
    """--lr, or baseline-lr * sqrt(D / d): Adam moves theta_d by about lr per coordinate, so this
    gives steps in theta as long as full fine-tuning's."""
    return cfg.lr if cfg.lr is not None else cfg.baseline_lr * math.sqrt(D / d_proj)


def run_experiment(cfg: IntrinsicDimConfig, exp: Experiment, seed: int,
                   progress: Callable[[str, Run], None] | None = None) -> Outcome:
    """Baseline (unless given), then the sweep over d and seeds."""
    n_tensors, limit = len(exp.base), limit_bytes(cfg.max_projection_gib, exp.lm.device)
    min_dim = n_tensors + 1 if cfg.said else 1
    dims = cfg.dim_list
    if dims:  # refuse before any training
        check_projection(cfg.projection, exp.D, projection_dim(max(dims), n_tensors, cfg.said), limit)
    baseline = None
    if cfg.baseline_score is None:
        baseline = train_full(exp.objective, exp.base, settings(cfg, seed, baseline=True), exp.train, exp.dev)
        baseline.tensors = {}  # not saved; frees the trained copy before the sweep
        logger.info("full fine-tuning: %s %.4f", exp.task.metric, baseline.score)
        if progress:
            progress("baseline", baseline)
    runs: list[Run] = []

    def run_fn(d: int, s: int) -> float:
        d_proj = projection_dim(d, n_tensors, cfg.said)
        check_projection(cfg.projection, exp.D, d_proj, limit)
        st = settings(cfg, seed + s)
        st.lr = subspace_lr(cfg, exp.D, d_proj)
        run = train_subspace(exp.objective, exp.base, cfg.projection, d, seed + s, st, exp.train, exp.dev, cfg.said)
        runs.append(run)
        if progress:
            progress(f"d={d}", run)
        return run.score

    base_score = cfg.baseline_score if baseline is None else baseline.score
    sweep = run_sweep(run_fn, base_score, dims, cfg.seeds, cfg.threshold, max(cfg.max_dim, min_dim),
                      cfg.bisect_steps, min_dim)
    return Outcome(exp, sweep, baseline, runs)
