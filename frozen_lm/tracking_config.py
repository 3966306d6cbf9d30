"""What a run is tracked with and where (frozen_lm.tracking drives the trackers, frozen_lm.trackers are
the backends): `Tracking`, read from `report_to`, and the `using` block that tracks the runs started
inside it."""

from __future__ import annotations

import contextlib
import contextvars
import importlib.util
import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from frozen_lm.errors import UserError

BACKENDS = ("tensorboard", "mlflow", "wandb")
PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}  # what each imports
EXIT = {"done": "FINISHED", "stopped": "FINISHED", "interrupted": "KILLED", "failed": "FAILED"}
_AMBIENT: contextvars.ContextVar = contextvars.ContextVar("frozen_lm_tracking", default=None)


@dataclass(frozen=True)
class Tracking:
    """How a run is tracked. report_to: the backends; dir: their local root (None: TensorBoard in
    the run's out folder, MLflow's ./mlruns, W&B's ./wandb); name: the run's name (default: its out
    folder's name; a run in a folder below a named one is 'NAME/FOLDER'); group: the grid it belongs
    to; parent: {backend: parent run id} (MLflow); root: the folder MLflow's and W&B's default
    folders are in (None: the working folder; a grid sets its own, as its cells may run in other
    processes)."""

    report_to: tuple[str, ...]
    dir: str | None = None
    name: str | None = None
    group: str | None = None
    parent: dict = field(default_factory=dict)
    root: str | None = None

    def local(self) -> Path:
        """Where MLflow's mlruns and W&B's wandb folders go: dir, else root, else the working folder."""
        return Path(self.dir or self.root or ".")


def tracking_from(report_to, tracking_dir=None) -> Tracking | None:
    """A Tracking from `report_to` ('tensorboard,mlflow', a list of names, or a Tracking; None, ''
    or 'none': no tracking); UserError for an unknown backend or a missing package."""
    if isinstance(report_to, Tracking):
        found = report_to if tracking_dir is None else replace(report_to, dir=str(tracking_dir))
    else:
        names = report_to.split(",") if isinstance(report_to, str) else list(report_to or [])
        names = list(dict.fromkeys(str(n).strip().lower() for n in names if str(n).strip()))
        if names in ([], ["none"]):
            return None
        found = Tracking(tuple(names), None if tracking_dir is None else str(tracking_dir))
    for name in found.report_to:
        if name not in BACKENDS:
            raise UserError(f"report_to {name!r} is not a tracker; choose from: {', '.join(BACKENDS)}")
        if importlib.util.find_spec(PACKAGES[name]) is None:
            raise UserError(f"report_to {name!r} needs the {PACKAGES[name]} package: "
                            f"pip install 'autoprompt-suite[{name}]'")
    return found if found.report_to else None


@contextlib.contextmanager
def using(report_to, tracking_dir=None):
    """Track the runs started inside (`frozen_lm.run` without its own report_to) as `report_to`
    says: names, or a Tracking (a grid's, with its group and parent run; its name, when set, is the
    prefix of the runs' names)."""
    token = _AMBIENT.set(tracking_from(report_to, tracking_dir))
    try:
        yield
    finally:
        _AMBIENT.reset(token)


def current(report_to=None, tracking_dir=None) -> Tracking | None:
    """The tracking of a run: its own report_to, else that of the `using` block it runs in."""
    own = tracking_from(report_to, tracking_dir)
    return own if own is not None else _AMBIENT.get()


def text_of(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
