"""`baselines.finetune`: train a baseline (LoRA, IA3, adapter, BitFit, last k blocks, full) on a
task's template and label words with the shared loop, and return a FinetuneResult.

The objective is prompt tuning's: `PromptTask.loss` of the [P] logits (cross-entropy over the
classes' label words by default). Training and dev scoring go through the shared Trainer
(frozen_lm.train) and the shared evaluator (frozen_lm.evaluate, with an `AdaptedBound`); the dev
split picks the best checkpoint. The frozen model is never modified (baselines.adapt).
"""

from __future__ import annotations

import logging
import time

import torch

from prompt_baselines.adapt import Adaptation, build
from prompt_baselines.config import FinetuneConfig
from prompt_baselines.result import METHOD, FinetuneResult
from frozen_lm import data as data_mod
from frozen_lm.artifact import claim_out
from frozen_lm.checkpoint import TrainInterrupted
from frozen_lm.errors import Interrupted, UserError
from frozen_lm.evaluate import evaluate
from frozen_lm.events import Callback
from frozen_lm.results import base_fields
from frozen_lm.task import Encoded, PromptTask
from frozen_lm.train import Trainer, TrainResult, TrainSettings

logger = logging.getLogger(__name__)


def finetune(task: PromptTask, train, dev=None, config: FinetuneConfig | None = None, *, out=None,
             overwrite: bool = False, callback: Callback | None = None, progress: bool = True) -> FinetuneResult:
    """Fine-tune `task`'s model (as config.method says) on `train`; `dev` (optional) picks the best
    checkpoint and early stopping. out: an artifact folder to write (refused if it holds another
    run, unless overwrite). callback(event) gets a 'step' Event per optimizer step; True stops the
    run. Ctrl-C raises `frozen_lm.errors.Interrupted` carrying the best checkpoint (saved first
    when `out` is given)."""
    config = config or FinetuneConfig()
    check(task, config)
    if out is not None:
        claim_out(out, overwrite)
    started = time.perf_counter()
    splits = {"train": train} if dev is None else {"train": train, "dev": dev}
    loaded = {name: data_mod.load(source) for name, source in splits.items()}
    data = {name: data_mod.describe(splits[name], ds) for name, ds in loaded.items()}
    encoded = {name: _encode(task, ds, name) for name, ds in loaded.items()}
    adaptation = build(task.lm, config)
    logger.info("finetune %s: %d trainable values (%s)", config.method, adaptation.n_params, adaptation.implementation)
    try:
        run = fit(adaptation, task, encoded["train"], encoded.get("dev"), config, callback=callback, progress=progress)
    except TrainInterrupted as stop:
        result = _result(task, config, adaptation, stop.result, {}, data, started, "interrupted")
        if out is not None:
            result.save(out)
        where = f"; the best checkpoint (step {stop.result.best_step}) is saved in {out}" if out is not None else ""
        raise Interrupted(f"interrupted after step {stop.result.steps_done}{where}", result) from None
    metrics = {"train": evaluate(task, encoded["train"], prompt=adaptation, batch_size=config.eval_batch_size)}
    if "dev" in encoded:
        metrics["dev"] = run.last_metrics or evaluate(task, encoded["dev"], prompt=adaptation,
                                                      batch_size=config.eval_batch_size)
    result = _result(task, config, adaptation, run, metrics, data, started,
                     "stopped" if run.stopped == "callback" else "done")
    if out is not None:
        result.save(out)
    return result


def check(task: PromptTask, config: FinetuneConfig) -> None:
    """Refuse before any work what cannot train: [T] slots (nothing would fill them)."""
    n = task.template.n_triggers
    if n:
        raise UserError(f"template {task.spec.template!r} has {n} [T] slots; finetune trains the model on a template "
                        "as written (e.g. '{sentence} It was [P] .')")
    if config.uses_peft:
        try:
            import peft  # noqa: F401
        except ImportError:
            raise UserError(f"--method {config.method} needs PEFT: pip install 'peft>=0.13'") from None


def _encode(task: PromptTask, ds, name: str) -> Encoded:
    encoded = task.encode(ds)
    for note in encoded.notes:
        logger.info("%s: %s", name, note)
    return Encoded(encoded.rows.to(task.lm.device), encoded.n_skipped, encoded.n_multi_token)


def train_settings(cfg: FinetuneConfig, has_dev: bool) -> TrainSettings:
    return TrainSettings(steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed, grad_accum=cfg.grad_accum,
                         optimizer=cfg.optimizer, weight_decay=cfg.weight_decay, schedule=cfg.schedule,
                         warmup_steps=cfg.warmup_steps, max_grad_norm=cfg.max_grad_norm, eval_every=cfg.eval_every,
                         patience=cfg.patience, keep_best=True, eval_first=has_dev)


def fit(adaptation: Adaptation, task: PromptTask, train: Encoded, dev: Encoded | None, cfg: FinetuneConfig, *,
        callback: Callback | None = None, progress: bool = False) -> TrainResult:
    """Train the adaptation's tensors in place; on return they hold the best checkpoint."""
    kind = "classes" if cfg.loss == "classes" else "vocab"
    bound = adaptation.bind(task)
    rows = train.rows

    def loss_fn(index: torch.Tensor) -> torch.Tensor:
        batch = rows.subset(index)
        return task.loss(bound.logits(batch), batch, kind=kind)

    def dev_metrics() -> dict:
        return evaluate(task, dev, prompt=adaptation, batch_size=cfg.eval_batch_size)

    trainer = Trainer(adaptation.params, loss_fn, len(rows), train_settings(cfg, dev is not None),
                      dev_metrics if dev is not None else None, callback=callback, method=f"finetune-{cfg.method}",
                      progress=progress)
    return trainer.run()


def _result(task, config: FinetuneConfig, adaptation: Adaptation, run: TrainResult, metrics: dict, data: dict,
            started: float, status: str) -> FinetuneResult:
    best_dev = metrics["dev"].get(task.metric) if "dev" in metrics else run.best_score
    timings = {"total_seconds": time.perf_counter() - started, "step_seconds": run.step_seconds,
               "step_cpu_seconds": run.step_cpu_seconds}
    return FinetuneResult(
        **base_fields(METHOD, config, task, data), tensors=adaptation.tensors(), metrics=metrics, history=run.history,
        timings=timings, status=status, template=task.spec.template, best_step=run.best_step, best_dev=best_dev,
        steps_done=run.steps_done, stopped=run.stopped, note=run.note, trainable_params=adaptation.n_params,
        implementation=adaptation.implementation)
