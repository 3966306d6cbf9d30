"""Progress events: what a run tells its callback, and how a callback stops the run.

Every method calls `callback(event)` after each unit of work (a search iteration, an optimizer
step, a dev evaluation, a finished subspace run). A callback that returns True stops the run after
that unit: the result keeps everything done so far and says `status == "stopped"`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

Callback = Callable[["Event"], "bool | None"]


@dataclass(frozen=True)
class Event:
    """method: the running method; kind: 'iteration', 'step', 'eval' or 'run'; step: 1-based count
    of that unit; total: how many are planned (None if unknown); metrics: numbers of that unit;
    stage: which part of a longer run (e.g. 'baseline', 'd=100 seed=1')."""

    method: str
    kind: str
    step: int
    total: int | None = None
    metrics: dict = field(default_factory=dict)
    stage: str = ""


def notify(callback: Callback | None, event: Event) -> bool:
    """Send an event; True when the callback asks to stop."""
    return bool(callback(event)) if callback is not None else False
