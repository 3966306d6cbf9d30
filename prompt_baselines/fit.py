"""What the runner (frozen_lm.runner) calls for the six fine-tuning baselines: `prepare` (the checks
before any work) and `fit_finetune(run)`, training on a prepared run.

The objective is prompt tuning's: `PromptTask.loss` of the [P] logits (cross-entropy over the
classes' label words by default). Training and dev scoring go through the shared Trainer
(frozen_lm.train) and the shared evaluator (frozen_lm.evaluate, with an `AdaptedBound`); the dev
split picks the best checkpoint, and every new best is written as the run's best-so-far artifact
(`run.checkpoint`). The frozen model is never modified (prompt_baselines.adapt).
"""

from __future__ import annotations

import logging

import torch

from frozen_lm.errors import UserError
from frozen_lm.evaluate import evaluate
from frozen_lm.runner import Run, RunInterrupted
from frozen_lm.task import Encoded, PromptTask
from frozen_lm.train import Trainer, TrainInterrupted, TrainResult, TrainSettings, metric_of
from prompt_baselines.adapt import Adaptation, build, check
from prompt_baselines.config import FinetuneOptions
from prompt_baselines.result import FinetuneResult

logger = logging.getLogger(__name__)


def prepare(task: PromptTask, config: FinetuneOptions, splits: dict) -> tuple[PromptTask, FinetuneOptions]:
    """Refuse before any work what cannot train: [T] slots (nothing would fill them), PEFT missing,
    a model without what the method trains."""
    check_task(task)
    check(task.lm, config)
    return task, config


def check_task(task: PromptTask) -> None:
    n = task.template.n_triggers
    if n:
        raise UserError(f"template {task.spec.template!r} has {n} [T] slots; a fine-tuning baseline trains the model "
                        "on a template as written (e.g. '{sentence} It was [P] .')")


def fit_finetune(run: Run) -> FinetuneResult:
    """Fine-tune the task's model as run.config's method says; dev (optional) picks the best checkpoint
    and early stopping."""
    task, config = run.task, run.config
    encoded = {name: _encode(task, ds, name) for name, ds in run.splits.items()}
    adaptation = build(task.lm, config)
    logger.info("finetune %s: %d trainable values (%s)", run.method.name, adaptation.n_params,
                adaptation.implementation)

    def on_best(step: int, metrics: dict | None) -> None:
        so_far = TrainResult(step, None if metrics is None else metric_of(metrics), step, "running")
        run.checkpoint(_result(run, adaptation, so_far, {"dev": metrics} if metrics else {}, "running"))

    try:
        trained = train(adaptation, task, encoded["train"], encoded.get("dev"), config, run, on_best)
    except TrainInterrupted as stop:
        result = _result(run, adaptation, stop.result, {}, "interrupted")
        raise RunInterrupted(result, f"after step {stop.result.steps_done}") from None
    metrics = {"train": evaluate(task, encoded["train"], prompt=adaptation, batch_size=config.eval_batch_size)}
    if "dev" in encoded:
        metrics["dev"] = trained.last_metrics or evaluate(task, encoded["dev"], prompt=adaptation,
                                                          batch_size=config.eval_batch_size)
    if "test" in encoded:
        metrics["test"] = evaluate(task, encoded["test"], prompt=adaptation, batch_size=config.eval_batch_size)
    return _result(run, adaptation, trained, metrics, "stopped" if trained.stopped == "callback" else "done")


def _encode(task: PromptTask, ds, name: str) -> Encoded:
    encoded = task.encode(ds)
    for note in encoded.notes:
        logger.info("%s: %s", name, note)
    return Encoded(encoded.rows.to(task.lm.device), encoded.n_skipped, encoded.n_multi_token)


def train_settings(cfg: FinetuneOptions, has_dev: bool) -> TrainSettings:
    return TrainSettings(steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed, grad_accum=cfg.grad_accum,
                         optimizer=cfg.optimizer, weight_decay=cfg.weight_decay, schedule=cfg.schedule,
                         warmup_steps=cfg.warmup_steps, max_grad_norm=cfg.max_grad_norm, eval_every=cfg.eval_every,
                         patience=cfg.patience, keep_best=True, eval_first=has_dev)


def train(adaptation: Adaptation, task: PromptTask, train_enc: Encoded, dev: Encoded | None, cfg: FinetuneOptions,
          run: Run, on_best=None) -> TrainResult:
    """Train the adaptation's tensors in place; on return they hold the best checkpoint."""
    kind = "classes" if cfg.loss == "classes" else "vocab"
    bound = adaptation.bind(task)
    rows = train_enc.rows

    def loss_fn(index: torch.Tensor) -> torch.Tensor:
        batch = rows.subset(index)
        return task.loss(bound.logits(batch), batch, kind=kind)

    def dev_metrics() -> dict:
        return evaluate(task, dev, prompt=adaptation, batch_size=cfg.eval_batch_size)

    trainer = Trainer(adaptation.params, loss_fn, len(rows), train_settings(cfg, dev is not None),
                      dev_metrics if dev is not None else None, callback=run.callback,
                      method=f"finetune-{run.method.name}", progress=run.progress, on_best=on_best)
    return trainer.run()


def _result(run: Run, adaptation: Adaptation, trained: TrainResult, metrics: dict, status: str) -> FinetuneResult:
    task = run.task
    best_dev = metrics["dev"].get(task.metric) if "dev" in metrics else trained.best_score
    timings = {"total_seconds": run.elapsed(), "step_seconds": trained.step_seconds,
               "step_cpu_seconds": trained.step_cpu_seconds}
    return FinetuneResult(
        **run.fields(), tensors=adaptation.tensors(), metrics=metrics, history=trained.history, timings=timings,
        status=status, template=task.spec.template, best_step=trained.best_step, best_dev=best_dev,
        steps_done=trained.steps_done, stopped=trained.stopped, note=trained.note,
        trainable_params=adaptation.n_params, implementation=adaptation.implementation)
