"""The one training loop, shared by prompt tuning, prefix tuning and subspace training (minGPT's
Trainer is the model).

It optimizes a few named leaf tensors against `loss_fn(example_index) -> loss`: seeded shuffling,
gradient accumulation, clipping, AdamW / Adam / Adafactor / SGD with per-tensor learning rates,
linear warmup then linear / cosine / constant decay, dev evaluation every N steps with early
stopping and best-checkpoint restore, a stop on a non-finite loss (the best checkpoint is kept and
the result says so), progress events to a callback that may stop the run, and a progress bar. The
model's own weights never appear here: callers pass only what trains.

Several processes (torchrun; frozen_lm.distributed): each computes the loss of its share of every
micro-batch, weighted by that share of the batch's loss weight, and the gradients are summed over
the processes, so every process holds the one-process gradient of the whole batch, takes the same
step and keeps the same tensors (up to float rounding). Process 0 alone shows the progress bar.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch

from frozen_lm import distributed
from frozen_lm.checkpoint import TrainCheckpoint, deferred_interrupt
from frozen_lm.events import Callback, Event, notify
from frozen_lm.loop_options import OPTIMIZERS, SCHEDULES

logger = logging.getLogger(__name__)


@dataclass
class TrainSettings:
    """How to train (each method builds these from its own config).

    eval_every: evaluate every N steps (0: only after the last step). keep_best: restore the best
    evaluated state at the end (False: keep the last state, and make no copies). eval_first: also
    evaluate the initial state (recorded as step 0). lrs: learning rates of single tensors by name
    (the others use lr).
    """

    steps: int
    batch_size: int
    lr: float
    seed: int = 0
    grad_accum: int = 1
    optimizer: str = "adamw"
    weight_decay: float = 0.0
    schedule: str = "constant"
    warmup_steps: int = 0
    max_grad_norm: float = 0.0
    eval_every: int = 0
    patience: int = 0
    keep_best: bool = True
    eval_first: bool = False
    lrs: dict[str, float] = field(default_factory=dict)

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")


@dataclass
class TrainResult:
    best_step: int
    best_score: float | None
    steps_done: int
    stopped: str  # "steps", "early_stopping", "nan", "callback" or "interrupted"
    history: list[dict] = field(default_factory=list)
    step_seconds: float = 0.0  # mean wall time of an optimizer step (forward + backward + update)
    step_cpu_seconds: float = 0.0  # mean CPU time of a step, all threads (less sensitive to a busy machine)
    note: str | None = None
    last_metrics: dict | None = None  # the dev metrics of the kept state, when it was evaluated
    step_times: list[float] = field(default_factory=list)  # wall seconds of each optimizer step


class TrainInterrupted(KeyboardInterrupt):
    """Ctrl-C during training: `result` is the TrainResult so far, with the best state restored
    (stopped == 'interrupted'); `checkpoint` continues the run (`Trainer.run(resume=checkpoint)`)."""

    def __init__(self, result: TrainResult, checkpoint: TrainCheckpoint | None = None):
        super().__init__(f"interrupted after step {result.steps_done}")
        self.result, self.checkpoint = result, checkpoint



def make_optimizer(groups: list[dict], s: TrainSettings) -> torch.optim.Optimizer:
    if s.optimizer == "adafactor":
        return torch.optim.Adafactor(groups, lr=s.lr, weight_decay=s.weight_decay)
    if s.optimizer == "adam":
        return torch.optim.Adam(groups, lr=s.lr, weight_decay=s.weight_decay)
    if s.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=s.lr, weight_decay=s.weight_decay)
    return torch.optim.AdamW(groups, lr=s.lr, weight_decay=s.weight_decay)


def lr_factor(step: int, s: TrainSettings) -> float:
    """Multiplier of the peak lr at optimizer step `step` (0-based): linear warmup, then decay."""
    if step < s.warmup_steps:
        return (step + 1) / (s.warmup_steps + 1)
    if s.schedule == "constant":
        return 1.0
    progress = (step - s.warmup_steps) / max(1, s.steps - s.warmup_steps)
    if s.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * progress))
    return max(0.0, 1 - progress)


def batches(n: int, size: int, seed: int) -> Iterator[torch.Tensor]:
    """Endless example-index batches, reshuffled every epoch by a CPU generator seeded with `seed`."""
    g = torch.Generator(device="cpu").manual_seed(int(seed))
    while True:
        order = torch.randperm(n, generator=g)
        for start in range(0, n, size):
            yield order[start: start + size]


def loss_weights(task, rows, kind: str = "vocab") -> torch.Tensor | None:
    """(B,) what each example weighs in `task.loss`'s batch mean: its target tokens for a target
    string's cross-entropy per token; None (a plain mean over the examples) otherwise."""
    if getattr(task, "is_target", False) and kind != "mellowmax" and rows.targets is not None:
        return (rows.targets >= 0).sum(1).cpu()
    return None


def metric_of(metrics: dict) -> float:
    """The number that ranks dev evaluations: accuracy, P@1, or for target strings the exact-match
    rate with the mean target loss breaking ties (scaled far below one example's worth of matches)."""
    if "exact_match" in metrics:
        return float(metrics["exact_match"]) - 1e-6 * float(metrics.get("loss", 0.0))
    for key in ("accuracy", "p_at_1", "token_accuracy", "score"):
        if key in metrics:
            return float(metrics[key])
    raise KeyError(f"no score in {metrics}")


class Trainer:
    """Train `params` (leaf tensors by name) in place; `run()` returns a TrainResult.

    loss_fn(index) -> scalar loss on the examples `index` (a CPU long tensor); evaluate() -> dev
    metrics of the current state (None: no dev split). method / stage label events and the bar.
    weights (n_examples,): what each example weighs in the batch loss, which must be the weighted
    mean sum(w_i l_i) / sum(w_i) (e.g. target tokens, for a loss per target token); None: a plain
    mean. They combine the micro-batches of a step and the shares of several processes.
    on_best(step, dev metrics or None): called when an evaluation finds a new best state, with the
    tensors holding it (a method writes its best-so-far artifact there).
    """

    def __init__(self, params: dict[str, torch.Tensor], loss_fn: Callable[[torch.Tensor], torch.Tensor],
                 n_examples: int, settings: TrainSettings, evaluate: Callable[[], dict] | None = None, *,
                 callback: Callback | None = None, method: str = "train", stage: str = "", progress: bool = False,
                 autocast: contextlib.AbstractContextManager | None = None, weights: torch.Tensor | None = None,
                 on_best: Callable[[int, dict | None], None] | None = None):
        self.params, self.loss_fn, self.n, self.s = params, loss_fn, n_examples, settings
        self.weights = None if weights is None else weights.detach().double().cpu()
        self.evaluate, self.callback, self.method, self.stage = evaluate, callback, method, stage
        self.progress, self.autocast, self.on_best = progress, autocast, on_best
        self.best_score: float | None = None
        self.best_step, self.bad, self.best_state, self.best_metrics = 0, 0, None, None
        self._recorded = -1  # the last step whose evaluation and best-state record are done

    # ------------------------------------------------------------ checkpoints
    def _snapshot(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.params.items()}

    def _restore(self) -> None:
        if self.best_state is not None:
            with torch.no_grad():
                for k, v in self.params.items():
                    v.copy_(self.best_state[k])

    def _record_eval(self, step: int, metrics: dict | None, last: bool) -> bool:
        """Track the best state; True when early stopping says stop."""
        if metrics is None:  # no dev split: the latest step is the best
            self.best_step, self.best_state = step, (None if last or not self.s.keep_best else self._snapshot())
            self._best_now(step, None, last)
            return False
        value = metric_of(metrics)
        if self.best_score is None or value > self.best_score or not self.s.keep_best:
            self.best_score, self.best_step, self.bad, self.best_metrics = value, step, 0, metrics
            self.best_state = None if last or not self.s.keep_best else self._snapshot()
            self._best_now(step, metrics, last)
            return False
        self.bad += 1
        return self.s.patience > 0 and self.bad >= self.s.patience

    def _best_now(self, step: int, metrics: dict | None, last: bool) -> None:
        """Tell `on_best` that the tensors as they are now are the best so far (not after the last
        step: the run's own end follows)."""
        if self.on_best is not None and not last:
            self.on_best(step, metrics)

    # ------------------------------------------------------------ the loop
    def run(self, resume: TrainCheckpoint | None = None) -> TrainResult:
        """Train; resume: a checkpoint of this run cut short (TrainInterrupted.checkpoint, or one an
        artifact stored): the run continues from it and ends as the uninterrupted run would."""
        from tqdm.auto import tqdm

        s, params = self.s, list(self.params.values())
        for p in params:
            p.requires_grad_(True)
        groups = [{"params": [v], "lr": s.lrs.get(k, s.lr)} for k, v in self.params.items()]
        opt = make_optimizer(groups, s)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: lr_factor(i, s))
        stream = batches(self.n, s.batch_size, s.seed)
        history: list[dict] = []
        seconds, cpu, times, first = 0.0, 0.0, [], 1
        if resume is not None:
            history, seconds, cpu, times, first = self._resume(resume, opt, sched, stream)
        elif s.keep_best:
            self.best_state = self._snapshot()  # the initialization, kept if nothing better is ever seen
        if self.evaluate is not None and s.eval_first and resume is None:
            history.append({"step": 0, "dev": self.evaluate()})  # for reference
        stopped, note, step, pending = "steps", None, first - 1, None
        bar = tqdm(total=s.steps, initial=first - 1, disable=not self.progress or not distributed.is_main(), leave=False,
                   desc=self.stage or self.method)
        try:
            if resume is not None and resume.eval_pending:
                pending = history[-1]
                stop, asked = self._after_step(pending, history, bar)
                pending = None
                if stop or asked:
                    stopped = "early_stopping" if stop else "callback"
                    first = s.steps + 1  # nothing more to train
            for step in range(first, s.steps + 1):
                start, start_cpu = time.perf_counter(), time.process_time()
                loss = self._step(opt, stream, params)
                with deferred_interrupt():  # the update and its record, never half done
                    if math.isfinite(loss):
                        opt.step()
                    sched.step()
                    times.append(time.perf_counter() - start)
                    seconds, cpu = seconds + times[-1], cpu + time.process_time() - start_cpu
                    bar.update(1)
                    entry = {"step": step, "loss": loss, "lr": opt.param_groups[0]["lr"]}
                    history.append(entry)
                    pending = entry
                if not math.isfinite(loss) or not all(bool(torch.isfinite(p).all()) for p in params):
                    stopped, note = "nan", self._nan_note(loss, step)
                    logger.warning(note)
                    break
                stop, asked = self._after_step(entry, history, bar)
                pending = None
                if stop:
                    stopped = "early_stopping"
                    break
                if asked:
                    stopped = "callback"
                    break
        except KeyboardInterrupt:
            bar.close()
            for p in params:
                p.requires_grad_(False)
            done = len([h for h in history if h.get("step", 0) > 0 and "loss" in h])
            pending = pending is not None and self._recorded != pending["step"]
            checkpoint = self._checkpoint(done, opt, sched, history, seconds, cpu, times, pending)
            self._restore()  # a step cut in half leaves nothing behind
            raise TrainInterrupted(TrainResult(self.best_step, self.best_score, done, "interrupted", history,
                                               seconds / max(done, 1), cpu / max(done, 1), None,
                                               self.best_metrics, times), checkpoint) from None
        finally:
            bar.close()
            for p in params:
                p.requires_grad_(False)
        self._restore()
        if stopped == "nan" and self.evaluate is not None and self.best_metrics is None:
            self.best_metrics = self.evaluate()  # the kept state was never scored
            self.best_score = metric_of(self.best_metrics) if self.best_metrics else None
        done = step - (stopped == "nan")
        return TrainResult(self.best_step, self.best_score, done, stopped, history, seconds / max(step, 1),
                           cpu / max(step, 1), note, self.best_metrics, times)

    def _after_step(self, entry: dict, history: list[dict], bar) -> tuple[bool, bool]:
        """Dev evaluation (when due), best-state tracking, the bar and the callback after step
        entry['step']: (early stopping says stop, the callback asked to stop)."""
        s, step = self.s, entry["step"]
        last = step == s.steps
        stop = False
        if (s.eval_every and step % s.eval_every == 0) or last:
            entry["dev"] = self.evaluate() if self.evaluate is not None else None
            stop = self._record_eval(step, entry["dev"], last)
            if stop:
                logger.info("early stopping at step %d (best dev at step %d)", step, self.best_step)
        self._recorded = step
        bar.set_postfix(loss=f"{entry['loss']:.4f}", **({"dev": f"{metric_of(entry['dev']):.4f}"} if entry.get("dev") else {}))
        asked = notify(self.callback, Event(self.method, "step", step, s.steps, {k: v for k, v in entry.items() if k != "step"}, self.stage))
        if asked and not stop:
            self._record_eval(step, entry.get("dev") if "dev" in entry else self._eval_now(entry), True)
        return stop, bool(asked) and not stop

    def _checkpoint(self, step: int, opt, sched, history, seconds, cpu, times, eval_pending: bool) -> TrainCheckpoint:
        """The run's state after `step` finished updates (before the best state is restored)."""
        best = self.best_state
        if best is None and self.best_step == step and self.s.keep_best:
            best = self._snapshot()  # the current state is the best one (not copied at a last evaluation)
        return TrainCheckpoint(step, self._snapshot(), opt.state_dict(), sched.state_dict(), best, self.best_score,
                               self.best_step, self.bad, self.best_metrics, [dict(h) for h in history], seconds, cpu,
                               list(times), eval_pending)

    def _resume(self, c: TrainCheckpoint, opt, sched, stream) -> tuple[list, float, float, list, int]:
        """Load a checkpoint into the tensors, optimizer, schedule, batch stream and best-state record;
        (history, seconds, cpu seconds, step times, first step to run)."""
        if sorted(c.params) != sorted(self.params):
            raise ValueError(f"the checkpoint trains {sorted(c.params)}, this run {sorted(self.params)}")
        with torch.no_grad():
            for k, v in self.params.items():
                v.copy_(c.params[k].to(v.device, v.dtype))
        opt.load_state_dict(c.optimizer)  # (moves the state to each tensor's device)
        sched.load_state_dict({**c.scheduler, "lr_lambdas": [None] * len(opt.param_groups)})
        for _ in range(c.step * self.s.grad_accum):
            next(stream)
        self.best_state = None if c.best_state is None else {k: v.clone() for k, v in c.best_state.items()}
        self.best_score, self.best_step, self.bad, self.best_metrics = c.best_score, c.best_step, c.bad, c.best_metrics
        return [dict(h) for h in c.history], c.seconds, c.cpu, list(c.times), c.step + 1

    def _eval_now(self, entry: dict) -> dict | None:
        entry["dev"] = self.evaluate() if self.evaluate is not None else None
        return entry["dev"]

    def _nan_note(self, loss: float, step: int) -> str:
        what = f"loss became {loss}" if not math.isfinite(loss) else "the trained tensors became non-finite"
        best = f"step {self.best_step}" + (f", dev {self.best_score:.4f}" if self.best_score is not None else "")
        kept = f"kept the best checkpoint ({best})" if self.s.keep_best else "kept the last state"
        return f"{what} at step {step}; stopped and {kept}"

    def _share(self, index: torch.Tensor) -> tuple[torch.Tensor, float]:
        """(this process's examples of a batch, their share of the batch's loss weight); all, 1.0 in one process."""
        mine = distributed.shard(index)
        if len(mine) == len(index):
            return mine, 1.0
        if self.weights is None:
            return mine, len(mine) / len(index)
        total = float(self.weights[index].sum())
        return mine, float(self.weights[mine].sum()) / total if total else 0.0

    def _step(self, opt, stream, params) -> float:
        """The gradients of one optimizer step over grad_accum micro-batches (clipped; the caller
        updates); returns the mean loss (its sum over the processes' weighted shares when there are
        several; non-finite: no update). Each micro-batch's mean loss counts by its share of the
        step's loss weight (examples, or target tokens), so the step's gradient is the gradient of
        the whole step's mean, also when the last batch of an epoch is short."""
        opt.zero_grad(set_to_none=True)
        total = 0.0
        micro = [next(stream) for _ in range(self.s.grad_accum)]
        weight = [float(len(b)) if self.weights is None else float(self.weights[b].sum()) for b in micro]
        whole = sum(weight)
        for index, w in zip(micro, weight):
            mine, share = self._share(index)
            if not math.isfinite(total) or len(mine) == 0 or share == 0:
                continue  # (every process still reads the same batches)
            with self.autocast or contextlib.nullcontext():
                loss = self.loss_fn(mine) * (w / whole if whole else 1.0 / len(micro))
                loss = loss if share == 1.0 else loss * share
            if not torch.isfinite(loss):
                total = loss.item()
                continue
            loss.backward()
            total += loss.item()
        if distributed.world_size() > 1:
            total = distributed.all_reduce_sum(torch.tensor([total], dtype=torch.float64)).item()
            if math.isfinite(total):
                distributed.all_reduce_grads(params)
        if not math.isfinite(total):
            return total
        if self.s.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(params, self.s.max_grad_norm)
        return total
