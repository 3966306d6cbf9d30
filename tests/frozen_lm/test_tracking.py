"""Experiment tracking (frozen_lm.tracking, `run(..., report_to=...)`): what each tracker logged, read
back offline with the tool's own reader (TensorBoard's EventAccumulator, MlflowClient on a local
folder store, W&B's offline run file through W&B's own record protobuf); the model card; the errors."""

from __future__ import annotations

import importlib.util
import json
import struct
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from frozen_lm import PromptTask, UserError, run
from frozen_lm import tracking as tracking_mod
from frozen_lm.errors import Interrupted
from frozen_lm.events import Event
from softprompt import PromptTuningConfig

TEMPLATE, LABELS = "{sentence} [T] [T] [P]", {"0": "terrible", "1": "great"}
TRAIN, DEV = "demo:sentiment:train", "demo:sentiment:dev"
CONFIG = PromptTuningConfig(steps=4, eval_every=2, batch_size=8, seed=3)


def _run(tiny, out, config=CONFIG, **kwargs):
    task = PromptTask(tiny("llama"), TEMPLATE, LABELS)
    return run("prompt", task, TRAIN, DEV, config, out=out, progress=False, **kwargs)


def _losses(result) -> dict[int, float]:
    return {h["step"]: h["loss"] for h in result.history if "loss" in h}


def _devs(result) -> dict[int, float]:
    return {h["step"]: h["dev"]["accuracy"] for h in result.history if h.get("dev") and h["step"] > 0}


# ---------------------------------------------------------------- TensorBoard
def test_tensorboard_event_files(tiny, tmp_path):
    pytest.importorskip("tensorboard", reason="report_to='tensorboard' needs the optional tensorboard package")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    plain = _run(tiny, tmp_path / "plain")
    result = _run(tiny, tmp_path / "run", report_to="tensorboard")
    assert load_file(str(tmp_path / "run" / "weights.safetensors")).keys() == result.tensors.keys()
    assert (tmp_path / "run" / "weights.safetensors").read_bytes() == (tmp_path / "plain" / "weights.safetensors").read_bytes()

    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    logged = {e.step: e.value for e in events.Scalars("loss")}
    assert logged == pytest.approx(_losses(result)) and logged == pytest.approx(_losses(plain))
    assert {e.step: e.value for e in events.Scalars("dev/accuracy")} == pytest.approx(_devs(result))
    assert events.Scalars("result/dev/accuracy")[-1].value == pytest.approx(result.metrics["dev"]["accuracy"])
    texts = {tag: events.Tensors(tag)[-1].tensor_proto.string_val[0].decode() for tag in events.Tags()["tensors"]}
    assert "| lr | 0.03 |" in texts["params/text_summary"] and "task.template" in texts["params/text_summary"]
    assert texts["model_card/text_summary"] == (tmp_path / "run" / "README.md").read_text()
    assert texts["status/text_summary"] == "done"


def test_tracking_dir_and_overwrite_replaces_the_old_event_files(tiny, tmp_path):
    pytest.importorskip("tensorboard", reason="report_to='tensorboard' needs the optional tensorboard package")
    _run(tiny, tmp_path / "run", report_to="tensorboard")
    old = sorted((tmp_path / "run" / "tensorboard").iterdir())
    _run(tiny, tmp_path / "run", overwrite=True, report_to="tensorboard")
    new = sorted((tmp_path / "run" / "tensorboard").iterdir())
    assert len(old) == len(new) == 1 and old != new  # the old run's events went with it
    _run(tiny, tmp_path / "run", overwrite=True)
    assert not (tmp_path / "run" / "tensorboard").exists()
    _run(tiny, tmp_path / "other", report_to=["tensorboard"], tracking_dir=tmp_path / "trk")
    assert len(list((tmp_path / "trk" / "tensorboard" / "other").iterdir())) == 1
    assert not (tmp_path / "other" / "tensorboard").exists()


# ---------------------------------------------------------------- MLflow
@pytest.fixture
def mlflow_store(tmp_path, monkeypatch):
    """MlflowClient on tmp_path/trk/mlruns (where tracking_dir=tmp_path/trk puts the runs)."""
    pytest.importorskip("mlflow", reason="report_to='mlflow' needs the optional mlflow package")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow import MlflowClient

    def runs():
        client = MlflowClient((tmp_path / "trk" / "mlruns").resolve().as_uri())
        found = client.get_experiment_by_name("autoprompt")
        return client, {r.info.run_name: r for r in client.search_runs([found.experiment_id])}

    return runs


def test_mlflow_folder_store(tiny, tmp_path, mlflow_store):
    result = _run(tiny, tmp_path / "run", report_to="mlflow", tracking_dir=tmp_path / "trk")
    client, runs = mlflow_store()
    assert set(runs) == {"run"}
    logged = runs["run"]
    assert logged.info.status == "FINISHED" and logged.data.tags["status"] == "done"
    params = logged.data.params
    assert params["method"] == "prompt" and params["lr"] == "0.03" and params["seed"] == "3"
    assert params["task.template"] == TEMPLATE and json.loads(params["task.label_map"]) == {"0": ["terrible"], "1": ["great"]}
    assert params["data.train.sha256"] == result.data["train"]["sha256"]
    history = {m.step: m.value for m in client.get_metric_history(logged.info.run_id, "loss")}
    assert history == pytest.approx(_losses(result))
    assert {m.step: m.value for m in client.get_metric_history(logged.info.run_id, "dev/accuracy")} == pytest.approx(_devs(result))
    assert logged.data.metrics["result/dev/accuracy"] == pytest.approx(result.metrics["dev"]["accuracy"])
    files = sorted(a.path for a in client.list_artifacts(logged.info.run_id))
    assert files == sorted(p.name for p in (tmp_path / "run").iterdir())
    assert "README.md" in files


def test_ctrl_c_logs_the_saved_run_as_killed(tiny, tmp_path, mlflow_store):
    def stop(event):
        if event.step == 3:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted):
        _run(tiny, tmp_path / "run", report_to="mlflow", tracking_dir=tmp_path / "trk", callback=stop)
    client, runs = mlflow_store()
    assert runs["run"].info.status == "KILLED" and runs["run"].data.tags["status"] == "interrupted"
    assert [m.step for m in client.get_metric_history(runs["run"].info.run_id, "loss")] == [1, 2, 3]
    assert "weights.safetensors" in {a.path for a in client.list_artifacts(runs["run"].info.run_id)}


def test_a_grid_groups_its_runs_under_a_parent_run(tiny, tmp_path, mlflow_store):
    """open_group: an MLflow parent run; runs inside `using(group.tracking)` are nested under it (a
    run in a folder below the cell's is 'CELL/FOLDER'), and finishing the group logs its files."""
    from dataclasses import replace

    import softprompt

    group = tracking_mod.open_group("mlflow", "grid", {"seeds": [1, 2]}, tracking_dir=tmp_path / "trk")
    with tracking_mod.using(replace(group.tracking, name="c1")):
        softprompt.tune(PromptTask(tiny("llama"), TEMPLATE, LABELS), TRAIN, DEV, CONFIG, out=tmp_path / "grid" / "c1")
    with tracking_mod.using(replace(group.tracking, name="c2")):
        _run(tiny, tmp_path / "grid" / "c2" / "setting-0")
    (tmp_path / "grid" / "table.md").write_text("| a |\n")
    group.finish("done", tmp_path / "grid")
    client, runs = mlflow_store()
    assert set(runs) == {"grid", "c1", "c2/setting-0"}
    parent = runs["grid"].info.run_id
    assert runs["grid"].info.status == "FINISHED" and runs["grid"].data.params["seeds"] == "[1, 2]"
    assert [a.path for a in client.list_artifacts(parent)] == ["table.md"]
    for name in ("c1", "c2/setting-0"):
        assert runs[name].data.tags["mlflow.parentRunId"] == parent and runs[name].data.tags["group"] == "grid"
    assert _run(tiny, tmp_path / "alone").status == "done"  # outside the block: not tracked
    assert set(mlflow_store()[1]) == {"grid", "c1", "c2/setting-0"}


# ---------------------------------------------------------------- W&B
def wandb_records(folder: Path) -> list:
    """The records of W&B's offline run file, once its exit record is there (W&B's service process
    may still be writing it when `finish` returns)."""
    (path,) = folder.glob("wandb/offline-run-*/run-*.wandb")
    for _ in range(300):
        records = list(_records(path.read_bytes()))
        if any(r.HasField("exit") for r in records):
            return records
        time.sleep(0.1)
    raise AssertionError(f"{path} has no exit record after 30 s")


def _records(data: bytes):
    """W&B's run-file log format (7-byte header, 32 KiB blocks of chunks with a 7-byte header each),
    parsed with W&B's own Record protobuf."""
    from wandb.proto import wandb_internal_pb2

    assert data[:4] == b":W&B"
    pos, pending, block = 7, b"", 32768
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0:
            break
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)


def test_wandb_offline_run(tiny, tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="report_to='wandb' needs the optional wandb package")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    group = tracking_mod.open_group("wandb", "grid", tracking_dir=tmp_path / "trk")
    with tracking_mod.using(group.tracking):  # a grid's cell: its group is the grid's folder name
        result = _run(tiny, tmp_path / "run")
    group.finish("done", tmp_path)
    records = wandb_records(tmp_path / "trk")
    (start,) = [r.run for r in records if r.HasField("run")]
    config = {_key(item): json.loads(item.value_json) for item in start.config.update}
    assert (start.display_name, start.project, start.run_group) == ("run", "autoprompt", "grid")
    assert config["lr"] == 0.03 and config["method"] == "prompt" and config["task.template"] == TEMPLATE
    rows = [{_key(i): json.loads(i.value_json) for i in r.history.item} for r in records if r.HasField("history")]
    assert {row["step"]: row["loss"] for row in rows if "loss" in row} == pytest.approx(_losses(result))
    (artifact,) = [r.artifact for r in records if r.HasField("artifact")]
    assert artifact.type == "model"
    assert sorted(e.path for e in artifact.manifest.contents) == sorted(p.name for p in (tmp_path / "run").iterdir())
    assert [r.exit.exit_code for r in records if r.HasField("exit")] == [0]


# ---------------------------------------------------------------- errors and what is logged
def test_unknown_tracker_and_missing_package(tiny, tmp_path, monkeypatch):
    with pytest.raises(UserError, match="report_to 'mlfow' is not a tracker; choose from: tensorboard, mlflow, wandb"):
        _run(tiny, tmp_path / "run", report_to="tensorboard,mlfow")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "wandb" else real(name))
    with pytest.raises(UserError) as e:
        _run(tiny, tmp_path / "run", report_to="wandb")
    assert str(e.value) == "report_to 'wandb' needs the wandb package: pip install 'autoprompt-suite[wandb]'"
    assert not (tmp_path / "run").exists()  # checked before any work
    assert tracking_mod.tracking_from("none") is None and tracking_mod.tracking_from("") is None


def test_event_metrics_and_params():
    axis, metrics = tracking_mod.event_metrics(Event("prompt", "step", 4, 10, {"loss": 0.5, "dev": {"accuracy": 1,
                                                                                                    "note": "x"}}))
    assert (axis, metrics) == ("step", {"loss": 0.5, "dev/accuracy": 1.0})
    axis, metrics = tracking_mod.event_metrics(Event("intrinsic_dim", "step", 2, 5, {"loss": 1, "ok": True},
                                                     "d=10 seed=1"))
    assert (axis, metrics) == ("d_10 seed_1/step", {"d_10 seed_1/loss": 1.0, "d_10 seed_1/ok": 1.0})
    axis, metrics = tracking_mod.event_metrics(Event("intrinsic_dim", "run", 3, 9, {"score": 0.7}, "d=10 seed=1"))
    assert (axis, metrics) == ("run/step", {"run/score": 0.7})
    params = tracking_mod.run_params("gcg", {"iters": 3, "probe_sampling": {"ratio": 8}}, {"template": "[P]"},
                                     {"name": "m"}, {"train": {"source": "a.jsonl", "rows": 4, "sha256": "ab"}})
    assert params == {"method": "gcg", "model": "m", "iters": 3, "probe_sampling.ratio": 8, "task.template": "[P]",
                      "data.train.source": "a.jsonl", "data.train.rows": 4, "data.train.sha256": "ab"}


# ---------------------------------------------------------------- the model card
def test_every_artifact_has_a_model_card(tiny, tmp_path):
    result = _run(tiny, tmp_path / "run", test=DEV)
    card = (tmp_path / "run" / "README.md").read_text()
    assert card.startswith("---\ntags:\n- autoprompt-suite\n- prompt\n---\n\n# prompt on tiny-llama\n")
    assert "prompt tuning: a trainable vector per [T] slot" in card  # the method's summary
    assert "LlamaForCausalLM" in card and f"`{TEMPLATE}`" in card
    for split in ("train", "dev", "test"):
        d = result.data[split]
        assert f"| {split} | {d['source']} | {d['rows']} | `{d['sha256']}` |" in card
    assert f"| dev | {result.metrics['dev']['accuracy']:.4f} |" in card
    assert f"| test | {result.metrics['test']['accuracy']:.4f} |" in card
    assert "seed: 3" in card and '"lr": 0.03' in card
    assert 'load_result("run")' in card and "autoprompt evaluate run --data demo:sentiment:dev" in card
    assert f"package {result.versions['package']}" in card
