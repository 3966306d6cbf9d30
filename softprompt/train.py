"""What training a soft prompt adds to the shared loop (frozen_lm.train.Trainer).

`module` is a SoftPrompt or PrefixParams: it holds the trainable tensors and maps rows to logits at
[P] through the frozen model. This module gives the Trainer its settings (from the method's config), the
batch loss (`PromptTask.loss`: label words, facts or a target string) and the dev score (the
shared evaluator). Splits are encoded by the task itself (`encode_split`), so a target string is
encoded and scored the same way here as in search and evaluation.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import torch

from frozen_lm.checkpoint import TrainCheckpoint
from frozen_lm.evaluate import evaluate
from frozen_lm.events import Callback
from frozen_lm.task import Encoded, PromptTask
from frozen_lm.train import Trainer, TrainResult, TrainSettings, loss_weights
from softprompt.config import SoftPromptOptions

logger = logging.getLogger(__name__)


def encode_split(task: PromptTask, data, name: str) -> Encoded:
    """A split encoded by the task (its notes, e.g. skipped multi-token facts, logged once)."""
    encoded = task.encode(data)
    for note in encoded.notes:
        logger.info("%s: %s", name, note)
    return Encoded(encoded.rows, encoded.n_skipped, encoded.n_multi_token)


def loss_kind(cfg: SoftPromptOptions) -> str:
    """The `PromptTask.loss` kind of a config (target strings ignore it: their loss is the LM loss)."""
    return "classes" if cfg.loss == "classes" else "vocab"


def train_settings(cfg: SoftPromptOptions, has_dev: bool = False) -> TrainSettings:
    """The shared loop's settings: best checkpoint kept; the initial prompt scored when there is a dev split."""
    return TrainSettings(steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed, grad_accum=cfg.grad_accum,
                         optimizer=cfg.optimizer, weight_decay=cfg.weight_decay, schedule=cfg.schedule,
                         warmup_steps=cfg.warmup_steps, max_grad_norm=cfg.max_grad_norm, eval_every=cfg.eval_every,
                         patience=cfg.patience, keep_best=True, eval_first=has_dev)


def batch_loss(module, task: PromptTask, rows, cfg: SoftPromptOptions) -> torch.Tensor:
    """The task's mean loss of a batch of rows with the module's prompt in place."""
    return task.loss(module.logits(task.lm, rows), rows, kind=loss_kind(cfg))


def ranked(task: PromptTask, metrics: dict) -> dict:
    """Target-string tasks: add 'score', what the shared loop ranks dev evaluations by: exact match,
    ties broken by the mean per-token probability exp(-loss), which adds less than one example's
    share, so the order is exact match first. Other tasks rank by accuracy / P@1 as they are."""
    if task.is_target and "exact_match" in metrics:
        metrics["score"] = metrics["exact_match"] + math.exp(-metrics["loss"]) / (metrics["n_scored"] + 1)
    return metrics


def split_metrics(module, task: PromptTask, data: Encoded, batch_size: int) -> dict:
    """The shared evaluator's metrics of the module's prompt on an encoded split (+ 'score' for targets)."""
    return ranked(task, evaluate(task, data, prompt=module, batch_size=batch_size))


def autocast(lm, cfg: SoftPromptOptions):
    """bfloat16 autocast on CUDA when asked (None: the model's own dtype)."""
    if cfg.bf16 and lm.device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return None


def on_device(data: Encoded | None, device) -> Encoded | None:
    if data is None:
        return None
    return Encoded(data.rows.to(device), data.n_skipped, data.n_multi_token)


def train_module(module, task: PromptTask, train_data: Encoded, dev_data: Encoded | None, cfg: SoftPromptOptions, *,
                 method: str = "train", callback: Callback | None = None, progress: bool = False,
                 resume: TrainCheckpoint | None = None,
                 on_best: Callable[[int, dict | None], None] | None = None) -> TrainResult:
    """Train `module` in place (the model stays frozen); on return it holds the best checkpoint.
    method: the name events carry; resume: the state of a cut run of the same module and config, to
    continue from; on_best(step, dev metrics): the module's tensors are now the best so far."""
    lm = task.lm
    module.to(lm.device)
    train_rows = train_data.rows.to(lm.device)
    dev = on_device(dev_data, lm.device)

    def loss_fn(index: torch.Tensor) -> torch.Tensor:
        return batch_loss(module, task, train_rows.subset(index), cfg)

    def dev_metrics() -> dict:
        return split_metrics(module, task, dev, cfg.eval_batch_size)

    trainer = Trainer(dict(module.named_parameters()), loss_fn, len(train_rows), train_settings(cfg, dev is not None),
                      dev_metrics if dev is not None else None, callback=callback, method=method, progress=progress,
                      autocast=autocast(lm, cfg), weights=loss_weights(task, train_rows, loss_kind(cfg)), on_best=on_best)
    return trainer.run(resume)
