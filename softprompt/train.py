"""The training loop shared by prompt and prefix tuning.

`module` is a SoftPrompt or PrefixParams: it holds the trainable tensors and maps rows to logits at
[P] through the frozen model. The loop: seeded shuffling, gradient accumulation, clipping, AdamW or
Adafactor with warmup and decay, dev evaluation every N steps with early stopping, best-checkpoint
restore, and a stop on a non-finite loss (the best checkpoint is kept and the result says so).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import time
from dataclasses import dataclass, field

import torch

from frozen_lm.task import Encoded, PromptTask, evaluate
from softprompt.config import TuneConfig
from softprompt.targets import Examples, lm_loss, lm_scores

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    best_step: int
    best_score: float | None
    steps_done: int
    stopped: str  # "steps", "early_stopping" or "nan"
    history: list[dict] = field(default_factory=list)
    step_seconds: float = 0.0  # mean wall time of an optimizer step (forward + backward + update)
    step_cpu_seconds: float = 0.0  # mean CPU time of a step, all threads (less sensitive to a busy machine)
    note: str | None = None


def make_optimizer(params, cfg: TuneConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adafactor":
        return torch.optim.Adafactor(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def lr_factor(step: int, cfg: TuneConfig) -> float:
    """Multiplier of the peak lr at optimizer step `step` (0-based): linear warmup, then decay."""
    if step < cfg.warmup_steps:
        return (step + 1) / (cfg.warmup_steps + 1)
    if cfg.schedule == "constant":
        return 1.0
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    if cfg.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * progress))
    return max(0.0, 1 - progress)


def batches(n: int, size: int, generator: torch.Generator):
    """Endless example-index batches, reshuffled every epoch with the seeded generator."""
    while True:
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, size):
            yield order[start: start + size]


def batch_loss(module, lm, task: PromptTask, batch: Examples, cfg: TuneConfig) -> torch.Tensor:
    logits = module.logits(lm, batch.rows)
    if batch.targets is not None:
        return lm_loss(logits, batch.targets)
    return task.loss(logits, batch.rows, kind="classes" if cfg.loss == "classes" else "vocab")


@torch.no_grad()
def score(module, lm, task: PromptTask, data: Examples, batch_size: int) -> dict:
    """Dev metrics: accuracy / P@1 from the shared evaluator, or token accuracy and loss for --loss lm."""
    was_training = module.training
    module.eval()
    try:
        if data.targets is None:
            return evaluate(task, Encoded(data.rows), lambda rows: module.logits(lm, rows), batch_size)
        total, correct, count, order = 0.0, 0, 0, data.rows.by_length()
        for start in range(0, len(data), batch_size):
            part = data.subset(order[start:start + batch_size])
            loss, c, n = lm_scores(module.logits(lm, part.rows), part.targets)
            total, correct, count = total + loss, correct + c, count + n
        return {"token_accuracy": correct / max(count, 1), "lm_loss": total / max(count, 1), "n_scored": len(data)}
    finally:
        module.train(was_training)


def metric_of(metrics: dict) -> float:
    for key in ("accuracy", "p_at_1", "token_accuracy"):
        if key in metrics:
            return float(metrics[key])
    raise KeyError(f"no score in {metrics}")


def _autocast(lm, cfg: TuneConfig):
    if cfg.bf16 and lm.device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


class _Tracker:
    """Dev evaluations, best checkpoint and early stopping."""

    def __init__(self, module, cfg: TuneConfig):
        self.module, self.cfg = module, cfg
        self.best_score: float | None = None
        self.best_step = 0  # the initialization is kept only if no step is ever evaluated (NaN at once)
        self.best_state = copy.deepcopy(module.state_dict())
        self.bad = 0

    def update(self, step: int, metrics: dict | None) -> bool:
        """Record an evaluation; True when early stopping says stop."""
        if metrics is None:  # no dev split: the latest step is the best
            self.best_step, self.best_state = step, copy.deepcopy(self.module.state_dict())
            return False
        value = metric_of(metrics)
        if self.best_score is None or value > self.best_score:
            self.best_score, self.best_step, self.bad = value, step, 0
            self.best_state = copy.deepcopy(self.module.state_dict())
            return False
        self.bad += 1
        return self.cfg.patience > 0 and self.bad >= self.cfg.patience

    def restore(self) -> None:
        self.module.load_state_dict(self.best_state)


def train(module, lm, task: PromptTask, train_data: Examples, dev_data: Examples | None, cfg: TuneConfig,
          seed: int = 0) -> TrainResult:
    """Train `module` in place (the model stays frozen); on return it holds the best checkpoint."""
    from tqdm.auto import tqdm

    module.to(lm.device).train()
    params = [p for p in module.parameters() if p.requires_grad]
    opt = make_optimizer(params, cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg))
    stream = batches(len(train_data), cfg.batch_size, torch.Generator().manual_seed(seed))
    train_data = train_data.to(lm.device)
    dev = dev_data.to(lm.device) if dev_data is not None else None
    tracker, history = _Tracker(module, cfg), []
    if dev is not None:
        history.append({"step": 0, "dev": score(module, lm, task, dev, cfg.eval_batch_size)})  # for reference
    stopped, note, seconds, cpu, step = "steps", None, 0.0, 0.0, 0
    bar = tqdm(total=cfg.steps, disable=not cfg.progress, leave=False, desc=module.method)
    for step in range(1, cfg.steps + 1):
        start, start_cpu = time.perf_counter(), time.process_time()
        loss = _step(module, lm, task, train_data, stream, opt, params, cfg)
        sched.step()
        seconds, cpu = seconds + time.perf_counter() - start, cpu + time.process_time() - start_cpu
        bar.update(1)
        entry = {"step": step, "loss": loss, "lr": opt.param_groups[0]["lr"]}
        history.append(entry)
        if not math.isfinite(loss) or not all(bool(torch.isfinite(p).all()) for p in params):
            stopped = "nan"
            what = f"loss became {loss}" if not math.isfinite(loss) else "the prompt became non-finite"
            note = (f"{what} at step {step}; stopped and kept the best checkpoint "
                    f"(step {tracker.best_step}" + (f", dev {tracker.best_score:.4f})" if tracker.best_score is not None else ")"))
            logger.warning(note)
            break
        if (cfg.eval_every and step % cfg.eval_every == 0) or step == cfg.steps:
            entry["dev"] = score(module, lm, task, dev, cfg.eval_batch_size) if dev is not None else None
            stop = tracker.update(step, entry["dev"])
            bar.set_postfix(loss=f"{loss:.4f}", dev=f"{metric_of(entry['dev']):.4f}" if entry["dev"] else "-")
            if stop:
                stopped = "early_stopping"
                logger.info("early stopping at step %d (best dev at step %d)", step, tracker.best_step)
                break
        else:
            bar.set_postfix(loss=f"{loss:.4f}")
    bar.close()
    tracker.restore()
    module.eval()
    done = step - (stopped == "nan")
    return TrainResult(tracker.best_step, tracker.best_score, done, stopped, history,
                       seconds / max(step, 1), cpu / max(step, 1), note)


def _step(module, lm, task, data: Examples, stream, opt, params, cfg: TuneConfig) -> float:
    """One optimizer step over grad_accum micro-batches; returns the mean loss."""
    opt.zero_grad(set_to_none=True)
    total = 0.0
    for _ in range(cfg.grad_accum):
        batch = data.subset(next(stream).to(lm.device))
        with _autocast(lm, cfg):
            loss = batch_loss(module, lm, task, batch, cfg) / cfg.grad_accum
        if not torch.isfinite(loss):
            return loss.item()
        loss.backward()
        total += loss.item()
    if cfg.max_grad_norm:
        torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
    opt.step()
    return total
