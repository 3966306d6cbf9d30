"""What training a soft prompt adds to the shared loop (frozen_lm.train.Trainer).

`module` is a SoftPrompt or PrefixParams: it holds the trainable tensors and maps rows to logits at
[P] through the frozen model. This module gives the Trainer its settings (from TuneConfig), the
batch loss (label words, or the LM loss on a target field) and the dev score (the shared evaluator,
or token accuracy for the LM loss).
"""

from __future__ import annotations

import logging

import torch

from frozen_lm.evaluate import evaluate
from frozen_lm.events import Callback
from frozen_lm.task import PromptTask
from frozen_lm.train import Trainer, TrainResult, TrainSettings
from softprompt.config import TuneConfig
from softprompt.targets import Examples, lm_loss, lm_metrics

logger = logging.getLogger(__name__)


def train_settings(cfg: TuneConfig, has_dev: bool = False) -> TrainSettings:
    """The shared loop's settings: best checkpoint kept; the initial prompt scored when there is a dev split."""
    return TrainSettings(steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed, grad_accum=cfg.grad_accum,
                         optimizer=cfg.optimizer, weight_decay=cfg.weight_decay, schedule=cfg.schedule,
                         warmup_steps=cfg.warmup_steps, max_grad_norm=cfg.max_grad_norm, eval_every=cfg.eval_every,
                         patience=cfg.patience, keep_best=True, eval_first=has_dev)


def batch_loss(module, task: PromptTask, batch: Examples, cfg: TuneConfig) -> torch.Tensor:
    logits = module.logits(task.lm, batch.rows)
    if batch.targets is not None:
        return lm_loss(logits, batch.targets)
    return task.loss(logits, batch.rows, kind="classes" if cfg.loss == "classes" else "vocab")


def split_metrics(module, task: PromptTask, data: Examples, batch_size: int) -> dict:
    """Accuracy / P@1 from the shared evaluator, or token accuracy and loss for the LM loss."""
    if data.targets is None:
        return evaluate(task, data.encoded(), prompt=module, batch_size=batch_size)
    return lm_metrics(module.bind(task), data, batch_size)


def autocast(lm, cfg: TuneConfig):
    """bfloat16 autocast on CUDA when asked (None: the model's own dtype)."""
    if cfg.bf16 and lm.device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return None


def fit(module, task: PromptTask, train_data: Examples, dev_data: Examples | None, cfg: TuneConfig, *,
        callback: Callback | None = None, progress: bool = False) -> TrainResult:
    """Train `module` in place (the model stays frozen); on return it holds the best checkpoint."""
    lm = task.lm
    module.to(lm.device)
    train_data = train_data.to(lm.device)
    dev = dev_data.to(lm.device) if dev_data is not None else None

    def loss_fn(index: torch.Tensor) -> torch.Tensor:
        return batch_loss(module, task, train_data.subset(index), cfg)

    def dev_metrics() -> dict:
        return split_metrics(module, task, dev, cfg.eval_batch_size)

    trainer = Trainer(dict(module.named_parameters()), loss_fn, len(train_data), train_settings(cfg, dev is not None),
                      dev_metrics if dev is not None else None, callback=callback, method=cfg.artifact_method,
                      progress=progress, autocast=autocast(lm, cfg))
    return trainer.run()
