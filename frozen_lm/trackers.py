"""The tracking backends (frozen_lm.tracking drives them): one `Tracker` per tool with start, log,
artifact and finish, for TensorBoard, MLflow and W&B. Each imports its package only when a run uses it."""

from __future__ import annotations

import math
import os
import re
import time
from pathlib import Path

from frozen_lm.tracking_config import EXIT, Tracking, text_of


def artifact_files(folder) -> list[Path]:
    """The artifact's own top-level files (tracker folders and unfinished .tmp files left out)."""
    path = Path(folder) if folder is not None else None
    if path is None or not (path / "config.json").exists():
        return []
    return [p for p in sorted(path.iterdir()) if p.is_file() and p.suffix != ".tmp"]


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
