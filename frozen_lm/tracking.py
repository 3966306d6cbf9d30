"""Experiment tracking: a run's config, history and artifact folder in TensorBoard, MLflow or W&B.

    frozen_lm.run("gcg", task, train, dev, out="runs/x", report_to="tensorboard,mlflow")

The runner (frozen_lm.runner) drives it from what every run already has: at the start the config
(flattened), the task spec, the model and the data splits as parameters; every progress Event's
numbers as metrics at its step (a stage's numbers under 'STAGE/'; a finished subspace run's under
'run/'); at the end the result's metrics (under 'result/') and the artifact folder as the run's
files, also after Ctrl-C. Each backend is one `Tracker` (start, log, artifact, finish); the
packages are optional extras, checked before any work. Runs started inside `with using(...)`
without a report_to of their own are tracked as it says, so a method's own API function
(`softprompt.tune`, ...) or a grid's cell is tracked without passing anything down:

    with frozen_lm.tracking.using("mlflow"):
        softprompt.tune(task, train, dev, config, out="runs/x")

Where runs go: TensorBoard to `<out>/tensorboard` (or `<tracking_dir>/tensorboard/<run name>`);
MLflow to MLFLOW_TRACKING_URI, else a local `mlruns` folder (in tracking_dir, else the working
folder; MLflow 3 keeps that folder store behind MLFLOW_ALLOW_FILE_STORE, which is set for it unless
the user set it); W&B as its own settings say (WANDB_MODE=offline, WANDB_PROJECT; default project
'autoprompt'), its files in tracking_dir or the working folder. A grid (prompt_compare) tracks one
run per cell, grouped: `open_group` starts an MLflow parent run and names the W&B group.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path

from frozen_lm.errors import UserError
from frozen_lm.events import Callback, Event, notify
from frozen_lm.trackers import TRACKERS, Tracker, artifact_files, log_params, mlflow_client
from frozen_lm.tracking_config import (  # noqa: F401  (Tracking, using, current: public names of this module)
    EXIT,
    Tracking,
    current,
    tracking_from,
    using,
)

logger = logging.getLogger(__name__)
# ---------------------------------------------------------------- what is logged
def flatten(values: dict, prefix: str = "", sep: str = ".") -> dict:
    """{'a': {'b': 1}} -> {'a.b': 1} (nested mappings joined with `sep`)."""
    out = {}
    for key, value in values.items():
        name = f"{prefix}{sep}{key}" if prefix else str(key)
        if isinstance(value, dict):
            out.update(flatten(value, name, sep))
        else:
            out[name] = value
    return out


def clean_key(key: str) -> str:
    """A metric or parameter name every backend takes (MLflow's: letters, digits, _ - . / and space)."""
    return re.sub(r"[^\w./\- ]", "_", key)


def numbers(values: dict, prefix: str = "") -> dict[str, float]:
    """The numeric entries of a (nested) mapping, names joined with '/' under `prefix`; booleans as 0/1."""
    out = {}
    for key, value in flatten(values, prefix, "/").items():
        if isinstance(value, bool):
            value = int(value)
        if isinstance(value, int | float):
            out[clean_key(key)] = float(value)
    return out


def event_metrics(event: Event) -> tuple[str, dict[str, float]]:
    """(step axis, metrics) of an event: a stage's numbers under 'STAGE/', a finished run's
    (kind 'run', whose step counts runs) under 'run/'."""
    prefix = clean_key("run" if event.kind == "run" else event.stage)
    return (f"{prefix}/step" if prefix else "step"), numbers(event.metrics, prefix)


def run_params(method: str, config: dict, task: dict, model: dict, data: dict) -> dict:
    """The parameters a run logs: method, model, the config's fields (option groups as 'group.field'),
    the task spec ('task.FIELD') and the splits ('data.SPLIT.source/rows/sha256')."""
    params = {"method": method, "model": model.get("name")}
    for key, value in flatten(config).items():
        params[key if key not in params else f"config.{key}"] = value
    params.update({f"task.{k}": v for k, v in task.items()})
    params.update({f"data.{split}.{k}": d.get(k) for split, d in data.items() for k in ("source", "rows", "sha256")})
    return {clean_key(k): v for k, v in params.items()}




# ---------------------------------------------------------------- a run's trackers
class Trackers:
    """The backends of one run. A backend that fails while logging is warned about and dropped, so a
    tracking server going away does not end a long run."""

    def __init__(self, trackers: list[Tracker]):
        self.trackers = trackers

    def wrap(self, callback: Callback | None) -> Callback:
        """A callback that logs each event's numbers, then calls `callback`."""

        def tracked(event: Event):
            axis, metrics = event_metrics(event)
            if metrics:
                self._each("log", event.step, metrics, axis)
            return notify(callback, event)

        return tracked

    def end(self, folder, status: str, metrics: dict | None = None) -> None:
        """Attach the artifact folder (when it holds one) and close every run."""
        if folder is not None and artifact_files(folder):
            self._each("artifact", Path(folder))
        self._each("finish", status, numbers(metrics or {}, "result"))

    def _each(self, what: str, *args) -> None:
        for tracker in list(self.trackers):
            try:
                getattr(tracker, what)(*args)
            except Exception as e:  # noqa: BLE001 - a tracker's trouble must not end the run
                logger.warning("report_to %r: %s failed (%s: %s); no longer logging there", tracker.name, what,
                               type(e).__name__, e)
                self.trackers.remove(tracker)


def start(tracking: Tracking | None, params: dict, out=None) -> Trackers | None:
    """Open a run in every backend of `tracking` (None: no tracking; only process 0 of several
    tracks); UserError when one cannot start (a missing login, a bad tracking URI)."""
    from frozen_lm import distributed

    if tracking is None or not distributed.is_main():
        return None
    out = Path(out) if out is not None else None
    name = out.resolve().name if out is not None else f"{params.get('method')}-{time.strftime('%Y%m%d-%H%M%S')}"
    if tracking.name:  # a cell's own name; a run in a folder of its own below it: 'CELL/FOLDER'
        name = tracking.name if out is None or name == tracking.name else f"{tracking.name}/{name}"
    opened = []
    for backend in tracking.report_to:
        tracker = TRACKERS[backend](tracking, out)
        try:
            tracker.start(name, params, tracking.group, tracking.parent.get(backend))
        except Exception as e:  # noqa: BLE001 - each library has its own errors
            Trackers(opened).end(None, "failed")
            raise UserError(f"report_to {backend!r} could not start a run ({type(e).__name__}: {e})") from None
        opened.append(tracker)
    return Trackers(opened)


# ---------------------------------------------------------------- a grid's group
@dataclass
class Group:
    """A grid's tracking: `tracking` for its cells (group name, parent run ids); `finish` closes the
    parent runs with the grid's own files (results.jsonl, tables)."""

    tracking: Tracking
    client: object = None

    def finish(self, status: str, folder=None) -> None:
        run_id = self.tracking.parent.get("mlflow")
        if run_id is None:
            return
        try:
            for path in sorted(Path(folder).iterdir()) if folder is not None else []:
                if path.is_file() and path.suffix != ".tmp":
                    self.client.log_artifact(run_id, str(path))
            self.client.set_terminated(run_id, EXIT.get(status, "FINISHED"))
        except Exception as e:  # noqa: BLE001
            logger.warning("report_to 'mlflow': closing the grid's parent run failed (%s: %s)", type(e).__name__, e)


def open_group(report_to, name: str, params: dict | None = None, tracking_dir=None) -> Group | None:
    """The tracking of a grid named `name` (its folder's name): each cell is a run in group `name`
    (W&B's group; MLflow: nested under a parent run `name` opened here with `params`; TensorBoard:
    each cell's own folder, so `tensorboard --logdir GRID` lists them)."""
    tracking = tracking_from(report_to, tracking_dir)
    if tracking is None:
        return None
    where = str(Path(tracking.dir).resolve()) if tracking.dir is not None else None
    tracking = replace(tracking, group=name, dir=where, root=str(Path.cwd()))  # the same folders in every worker
    group = Group(tracking)
    if "mlflow" in tracking.report_to:
        try:
            client, experiment = mlflow_client(tracking)
            run_id = client.create_run(experiment, run_name=name, tags={"group": name}).info.run_id
            log_params(client, run_id, {clean_key(k): v for k, v in (params or {}).items()})
        except Exception as e:  # noqa: BLE001
            raise UserError(f"report_to 'mlflow' could not start the grid's run ({type(e).__name__}: {e})") from None
        group = Group(replace(tracking, parent={"mlflow": run_id}), client)
    return group
