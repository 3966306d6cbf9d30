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

import contextlib
import contextvars
import importlib.util
import json
import logging
import math
import os
import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from frozen_lm.errors import UserError
from frozen_lm.events import Callback, Event, notify

logger = logging.getLogger(__name__)
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


def text_of(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def artifact_files(folder) -> list[Path]:
    """The artifact's own top-level files (tracker folders and unfinished .tmp files left out)."""
    path = Path(folder) if folder is not None else None
    if path is None or not (path / "config.json").exists():
        return []
    return [p for p in sorted(path.iterdir()) if p.is_file() and p.suffix != ".tmp"]


# ---------------------------------------------------------------- backends
class Tracker:
    """One backend. start(name, params, group, parent) opens the run; log(step, metrics, axis) adds
    numbers at a step (axis: the name of that step counter); artifact(folder) attaches the artifact
    folder; finish(status, metrics) closes it with the result's final numbers."""

    name = ""

    def __init__(self, tracking: Tracking, out: Path | None):
        self.tracking, self.out = tracking, out

    def start(self, name: str, params: dict, group: str | None, parent: str | None) -> None:
        raise NotImplementedError

    def log(self, step: int, metrics: dict[str, float], axis: str = "step") -> None:
        raise NotImplementedError

    def artifact(self, folder: Path) -> None:
        raise NotImplementedError

    def finish(self, status: str, metrics: dict[str, float]) -> None:
        raise NotImplementedError


class TensorBoardTracker(Tracker):
    """Scalars per tag; the parameters as a text table and, at the end, as hparams with the result's
    numbers (TensorBoard's HPARAMS tab compares runs); the model card as text."""

    name = "tensorboard"

    def logdir(self, name: str) -> Path:
        if self.tracking.dir is not None:
            return Path(self.tracking.dir) / "tensorboard" / name
        return self.out / "tensorboard" if self.out is not None else Path("runs") / "tensorboard" / name

    def start(self, name, params, group, parent):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(self.logdir(name)))
        self.params, self.last = params, 0
        rows = "\n".join(f"| {k} | {text_of(v)} |" for k, v in params.items())
        self.writer.add_text("params", f"| parameter | value |\n|---|---|\n{rows}", 0)

    def log(self, step, metrics, axis="step"):
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)
        self.last = max(self.last, step)

    def artifact(self, folder):
        card = Path(folder) / "README.md"
        if card.exists():
            self.writer.add_text("model_card", card.read_text(encoding="utf-8"), self.last)

    def finish(self, status, metrics):
        from torch.utils.tensorboard.summary import hparams

        values = {k: v if isinstance(v, int | float | str | bool) else text_of(v) for k, v in self.params.items()}
        writer = self.writer._get_file_writer()
        for summary in hparams(values, {k: v for k, v in metrics.items() if math.isfinite(v)}):
            writer.add_summary(summary)
        self.log(self.last, metrics)
        self.writer.add_text("status", status, self.last)
        self.writer.close()


def mlflow_client(tracking: Tracking):
    """(MlflowClient, experiment id): MLFLOW_TRACKING_URI, else a local mlruns folder;
    MLFLOW_EXPERIMENT_NAME, else 'autoprompt'."""
    from mlflow import MlflowClient

    uri = os.environ.get("MLFLOW_TRACKING_URI") or (tracking.local() / "mlruns").resolve().as_uri()
    if uri.startswith("file:") or "://" not in uri:
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 asks for it to use a folder store
    client = MlflowClient(uri)
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or "autoprompt"
    found = client.get_experiment_by_name(name)
    return client, found.experiment_id if found is not None else client.create_experiment(name)


class MLflowTracker(Tracker):
    """A run in an experiment (a cell's nested under its grid's parent run), through MlflowClient
    (no global active run, so several can be open)."""

    name = "mlflow"

    def start(self, name, params, group, parent):
        self.client, experiment = mlflow_client(self.tracking)
        tags = {"group": group} if group else {}
        if parent:
            tags["mlflow.parentRunId"] = parent
        self.run_id = self.client.create_run(experiment, run_name=name, tags=tags).info.run_id
        log_params(self.client, self.run_id, params)
        self.last = 0

    def log(self, step, metrics, axis="step"):
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step) for k, v in metrics.items()])
        self.last = max(self.last, step)

    def artifact(self, folder):
        for path in artifact_files(folder):
            self.client.log_artifact(self.run_id, str(path))

    def finish(self, status, metrics):
        if metrics:
            self.log(self.last, metrics)
        self.client.set_tag(self.run_id, "status", status)
        self.client.set_terminated(self.run_id, EXIT.get(status, "FINISHED"))


def log_params(client, run_id: str, params: dict) -> None:
    from mlflow.entities import Param

    items = [Param(k, text_of(v)[:6000]) for k, v in params.items()]
    for i in range(0, len(items), 100):  # MLflow takes 100 parameters per batch
        client.log_batch(run_id, params=items[i:i + 100])


class WandbTracker(Tracker):
    """A W&B run (its mode, project and entity from W&B's own settings and variables), in the grid's
    group; each step counter is its own x axis; the artifact folder as a 'model' artifact."""

    name = "wandb"

    def start(self, name, params, group, parent):
        import wandb

        root = self.tracking.local()
        root.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT") or "autoprompt", name=name, group=group,
                              job_type=params.get("method"), config=params, dir=str(root), reinit="create_new")
        self.axes: set[str] = set()
        self.run_name = name

    def log(self, step, metrics, axis="step"):
        for key in (axis, *metrics):
            if key not in self.axes:
                self.axes.add(key)
                self.run.define_metric(key, step_metric=None if key == axis else axis)
        self.run.log({**metrics, axis: step})

    def artifact(self, folder):
        import wandb

        files = artifact_files(folder)
        if files:
            art = wandb.Artifact(re.sub(r"[^\w.\-]", "_", self.run_name), type="model")
            for path in files:
                art.add_file(str(path), name=path.name)
            self.run.log_artifact(art)

    def finish(self, status, metrics):
        self.run.summary.update({**metrics, "status": status})
        self.run.finish(exit_code={"done": 0, "stopped": 0, "interrupted": 255}.get(status, 1))


TRACKERS = {"tensorboard": TensorBoardTracker, "mlflow": MLflowTracker, "wandb": WandbTracker}


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
