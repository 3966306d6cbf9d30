"""Cutting a training run safely and continuing it: the checkpoint of a cut run and the block that
holds Ctrl-C / SIGTERM while an optimizer update is applied.

The shared loop (frozen_lm.train.Trainer) raises `TrainInterrupted` with a `TrainCheckpoint` on
Ctrl-C (the checkpoint is defined here, the loop imports it); artifacts store the checkpoint (tensors in weights.safetensors, the rest in JSON), and
`Trainer.run(resume=checkpoint)` continues as if never stopped.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from dataclasses import dataclass, field

import torch


@dataclass
class TrainCheckpoint:
    """What continues a cut run exactly where it stopped: the trained tensors after the last finished
    optimizer step, the optimizer's and the schedule's state, the best state so far and its score,
    the history and the time spent. `tensors()` / `meta()` split it into what an artifact stores in
    weights.safetensors and in JSON; `from_saved` joins them again.

    eval_pending: the interruption came after step `step`'s update, before its dev evaluation (a
    resumed run evaluates first).
    """

    step: int
    params: dict[str, torch.Tensor]
    optimizer: dict
    scheduler: dict
    best_state: dict[str, torch.Tensor] | None
    best_score: float | None
    best_step: int
    bad: int
    best_metrics: dict | None
    history: list[dict]
    seconds: float
    cpu: float
    times: list[float]
    eval_pending: bool = False
    extra: dict = field(default_factory=dict)  # what the method adds to the saved meta (e.g. PEZ's kept prompt)

    PREFIX = "checkpoint."

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {f"{self.PREFIX}param.{k}": v for k, v in self.params.items()}
        out.update({f"{self.PREFIX}best.{k}": v for k, v in (self.best_state or {}).items()})
        for idx, state in self.optimizer["state"].items():
            out.update({f"{self.PREFIX}opt.{idx}.{k}": v for k, v in state.items() if torch.is_tensor(v)})
        return {k: v.detach().cpu().contiguous() for k, v in out.items()}

    def meta(self) -> dict:
        plain = {idx: {k: v for k, v in state.items() if not torch.is_tensor(v)}
                 for idx, state in self.optimizer["state"].items()}
        return {"step": self.step, "param_names": list(self.params), "best_saved": self.best_state is not None,
                "optimizer_groups": self.optimizer["param_groups"], "optimizer_plain": {str(k): v for k, v in plain.items()},
                "scheduler": {k: v for k, v in self.scheduler.items() if k != "lr_lambdas"},
                "best_score": self.best_score, "best_step": self.best_step, "bad": self.bad,
                "best_metrics": self.best_metrics, "history": self.history, "seconds": self.seconds, "cpu": self.cpu,
                "times": self.times, "eval_pending": self.eval_pending, "extra": self.extra}

    @classmethod
    def from_saved(cls, tensors: dict[str, torch.Tensor], meta: dict) -> TrainCheckpoint:
        """The checkpoint an artifact stored (KeyError / ValueError when a part is missing)."""
        p = cls.PREFIX
        names = meta["param_names"]
        params = {k: tensors[f"{p}param.{k}"] for k in names}
        best = {k: tensors[f"{p}best.{k}"] for k in names} if meta["best_saved"] else None
        state: dict[int, dict] = {int(i): dict(v) for i, v in meta["optimizer_plain"].items()}
        for key, value in tensors.items():
            if key.startswith(f"{p}opt."):
                idx, name = key[len(p) + 4:].split(".", 1)
                state.setdefault(int(idx), {})[name] = value
        return cls(meta["step"], params, {"state": state, "param_groups": meta["optimizer_groups"]},
                   dict(meta["scheduler"]), best, meta["best_score"], meta["best_step"], meta["bad"], meta["best_metrics"],
                   list(meta["history"]), meta["seconds"], meta["cpu"], list(meta["times"]), meta.get("eval_pending", False),
                   dict(meta.get("extra") or {}))


@contextlib.contextmanager
def deferred_interrupt():
    """Hold Ctrl-C (SIGINT) and SIGTERM until the block ends, so an optimizer update is never cut in
    half; a signal that came is then raised again, to the handler that was installed before (Ctrl-C:
    KeyboardInterrupt; the CLI turns SIGTERM into one too). A no-op outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    held = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, lambda signum, frame: caught.append(signum)) for sig in held}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if caught:
        signal.raise_signal(caught[0])
