"""Training a PEZ prompt with the shared loop, and keeping the best *discrete* prompt.

The Trainer (frozen_lm.train) optimizes the continuous vectors; its dev evaluation is
`BestProjection`, which writes the current projection into the dev rows' [T] slots, scores it with
the shared evaluator's loop (`frozen_lm.evaluate.score`) and keeps the best one. Best means the
higher dev metric (accuracy, P@1, or for target strings exact match), then the better dev
objective: the mean log-likelihood of the labels (target strings: minus the loss per target token)
plus fluency_weight times the mean trigger-token log-probability; an exact tie (in practice the
same prompt again) keeps the earlier one. A projection already scored is not scored
again. Early stopping (PezConfig.patience) counts evaluations without a better prompt. A better
prompt found before the last step is handed to `on_better` (the method writes its best-so-far artifact). Without a dev split
the prompt is the final projection. The continuous vectors are left as the last step made them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from frozen_lm.checkpoint import TrainCheckpoint
from frozen_lm.evaluate import TriggerBound, score
from frozen_lm.events import Callback, notify
from frozen_lm.fluency import prompt_perplexity
from frozen_lm.task import Encoded, PromptTask
from frozen_lm.train import Trainer, TrainResult
from softprompt.config import PezConfig
from softprompt.pez import PezPrompt, own_token_map
from softprompt.train import autocast, loss_kind, on_device, ranked, train_settings

logger = logging.getLogger(__name__)


def discrete_metrics(task: PromptTask, data: Encoded, ids: torch.Tensor, batch_size: int = 32, kind: str = "vocab",
                     fluency_weight: float = 0.0) -> tuple[dict, tuple[float, float]]:
    """(metrics, rank) of trigger ids in the task's slots on an encoded split: the shared evaluator's
    metrics (`evaluate`'s keys), plus 'loglik' (mean label log-likelihood; not for target strings),
    'score' (target strings: see softprompt.train.ranked) and, with a fluency weight,
    'prompt_perplexity'; rank orders prompts (higher is better): the metric, then the objective."""
    s = score(TriggerBound(task, ids), data.rows, batch_size)
    metrics = {task.metric: s.correct / max(s.n, 1), "n_scored": s.n, "n_skipped": data.n_skipped}
    if task.is_facts:
        metrics["n_multi_token"] = data.n_multi_token
    if task.is_target:
        metrics["loss"] = -s.loglik / max(s.tokens, 1)
    else:
        metrics["loglik"] = s.mean(kind)
    ranked(task, metrics)
    objective = -metrics["loss"] if task.is_target else metrics["loglik"]
    if fluency_weight:
        ppl = prompt_perplexity(task.lm, data.rows, ids, batch_size)
        metrics["prompt_perplexity"] = ppl
        objective -= fluency_weight * math.log(ppl) if ppl else 0.0
    return metrics, (metrics[task.metric], objective)


@dataclass
class Kept:
    step: int
    ids: torch.Tensor
    metrics: dict
    rank: tuple[float, float]


class BestProjection:
    """The Trainer's dev evaluation for PEZ: scores the current projection, keeps the best one.
    on_better(kept): called when a better prompt is found before the last step."""

    def __init__(self, module: PezPrompt, task: PromptTask, dev: Encoded, cfg: PezConfig, step,
                 on_better: Callable[[Kept], None] | None = None):
        self.module, self.task, self.dev, self.cfg, self.step = module, task, dev, cfg, step
        self.on_better = on_better
        self.cache: dict[tuple[int, ...], tuple[dict, tuple[float, float]]] = {}
        self.best: Kept | None = None
        self.stale = 0

    def __call__(self) -> dict:
        ids = self.module.project()
        key = tuple(int(i) for i in ids)
        if key not in self.cache:
            self.cache[key] = discrete_metrics(self.task, self.dev, ids, self.cfg.eval_batch_size, loss_kind(self.cfg),
                                               self.cfg.fluency_weight)
        metrics, rank = self.cache[key]
        if self.best is None or rank > self.best.rank:
            self.best, self.stale = Kept(self.step(), ids.cpu(), metrics, rank), 0
            if self.on_better is not None and self.best.step < self.cfg.steps:
                self.on_better(self.best)
        else:
            self.stale += 1
        return dict(metrics)

    @property
    def exhausted(self) -> bool:
        """Early stopping: PezConfig.patience evaluations in a row without a better prompt."""
        return self.cfg.patience > 0 and self.stale >= self.cfg.patience


class PezFit:
    """One PEZ training run: `run()` trains (the model stays frozen), `kept_ids()` is the prompt.
    method: the name events carry; on_better(kept): see BestProjection."""

    def __init__(self, module: PezPrompt, task: PromptTask, train: Encoded, dev: Encoded | None, cfg: PezConfig,
                 method: str = "pez", on_better: Callable[[Kept], None] | None = None):
        lm = task.lm
        self.module, self.task, self.cfg, self.method = module.to(lm.device), task, cfg, method
        self.train_rows = train.rows.to(lm.device)
        self.to_output = own_token_map(lm) if cfg.fluency_weight else None  # once per run, not per batch
        self.calls = 0
        dev = on_device(dev, lm.device)
        self.tracker = BestProjection(module, task, dev, cfg, lambda: self.calls // cfg.grad_accum,
                                      on_better) if dev else None

    def loss(self, index: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        rows = self.train_rows.subset(index)
        return self.module.loss(self.task, rows, loss_kind(self.cfg), self.cfg.fluency_weight, self.to_output)

    def state(self) -> dict:
        """What continues this fit besides the Trainer's checkpoint: the loss-call count and the kept prompt."""
        t = self.tracker
        best = None if t is None or t.best is None else {
            "step": t.best.step, "ids": [int(i) for i in t.best.ids], "metrics": t.best.metrics, "rank": list(t.best.rank)}
        return {"calls": self.calls, "best": best, "stale": t.stale if t is not None else 0}

    def load_state(self, state: dict) -> None:
        self.calls = int(state["calls"])
        if self.tracker is not None:
            best = state.get("best")
            self.tracker.best = None if best is None else Kept(best["step"], torch.tensor(best["ids"], dtype=torch.long),
                                                                 dict(best["metrics"]), tuple(best["rank"]))
            self.tracker.stale = int(state.get("stale", 0))

    def run(self, callback: Callback | None = None, progress: bool = False, resume: TrainCheckpoint | None = None
            ) -> TrainResult:
        """Train; a patience stop says 'early_stopping'. Raises TrainInterrupted on Ctrl-C. resume: a cut
        run's Trainer checkpoint, whose `pez` entry (see `state`) restores the kept prompt."""
        if resume is not None:
            self.load_state(resume.extra["pez"])
        asked = []

        def on_event(event) -> bool:
            if notify(callback, event):
                asked.append(event.step)
            return bool(asked) or (self.tracker is not None and self.tracker.exhausted)

        settings = replace(train_settings(self.cfg, self.tracker is not None), keep_best=False, patience=0)
        trainer = Trainer({"vectors": self.module.vectors}, self.loss, len(self.train_rows), settings, self.tracker,
                          callback=on_event, method=self.method, progress=progress,
                          autocast=autocast(self.task.lm, self.cfg))
        run = trainer.run(resume)
        if run.stopped == "callback" and not asked:
            run.stopped = "early_stopping"
            logger.info("early stopping at step %d (best dev prompt at step %d)", run.steps_done, self.best_step)
        return run

    @property
    def best_step(self) -> int:
        return self.tracker.best.step if self.tracker is not None and self.tracker.best else self.calls // self.cfg.grad_accum

    def kept_ids(self) -> torch.Tensor:
        """The best dev projection; without a dev split the final one (the initial one if training diverged)."""
        if self.tracker is not None and self.tracker.best is not None:
            return self.tracker.best.ids
        vectors = self.module.vectors
        return self.module.projector(vectors if torch.isfinite(vectors).all() else self.module.init).cpu()

    def kept_metrics(self) -> dict | None:
        return dict(self.tracker.best.metrics) if self.tracker is not None and self.tracker.best else None


def split_scores(task: PromptTask, data: Encoded, ids: torch.Tensor, cfg: PezConfig) -> dict:
    """`discrete_metrics` of trigger ids on an encoded split (moved to the model's device)."""
    rows = Encoded(data.rows.to(task.lm.device), data.n_skipped, data.n_multi_token)
    return discrete_metrics(task, rows, ids, cfg.eval_batch_size, loss_kind(cfg), cfg.fluency_weight)[0]
