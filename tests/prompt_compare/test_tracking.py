"""compare(..., report_to=...): one tracked run per cell, grouped under the grid (an MLflow parent run
named after the grid's folder, with the grid's files; TensorBoard event files in each cell's folder),
read back with the tools' own readers; `autoprompt compare --report-to` and `--config`."""

from __future__ import annotations

import json

import pytest

from prompt_compare import compare
from prompt_compare.store import read_records
from tests.prompt_compare.test_compare import FAST, TASK


@pytest.fixture
def model(tiny_folder):
    return tiny_folder("llama")


def test_mlflow_parent_run_with_a_run_per_cell(tmp_path, model, monkeypatch):
    pytest.importorskip("mlflow", reason="report_to='mlflow' needs the optional mlflow package")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow import MlflowClient

    result = compare(TASK, ["manual", "prompt"], [1, 2], out=tmp_path / "grid", model=model, defaults=FAST,
                     report_to="mlflow", tracking_dir=tmp_path / "trk")
    client = MlflowClient((tmp_path / "trk" / "mlruns").as_uri())
    experiment = client.get_experiment_by_name("autoprompt")
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    cells = {r["id"] for r in result.rows}
    assert set(runs) == {"grid", *cells} and len(cells) == 4
    parent = runs["grid"]
    assert parent.info.status == "FINISHED"
    assert {"results.jsonl", "table.md", "table.csv"} <= {a.path for a in client.list_artifacts(parent.info.run_id)}
    for cell in cells:
        run = runs[cell]
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id and run.data.tags["group"] == "grid"
        assert run.info.status == "FINISHED"
        assert "weights.safetensors" in {a.path for a in client.list_artifacts(run.info.run_id)}
    prompt_cell = next(r for r in result.rows if r["method"] == "prompt")
    losses = client.get_metric_history(runs[prompt_cell["id"]].info.run_id, "loss")
    assert [m.step for m in losses] == [1, 2]


def test_cli_compare_tensorboard_and_config_file(tmp_path, model, cli):
    pytest.importorskip("tensorboard", reason="--report-to tensorboard needs the optional tensorboard package")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    options = tmp_path / "grid.yaml"
    options.write_text(json.dumps({"methods": ["manual", "prompt"], "seeds": [3], "model": model, "steps": 2,
                                   "template": TASK["template"], "label_map": "0=terrible,1=great",
                                   "train": TASK["train"], "dev": TASK["dev"], "test": TASK["test"],
                                   "set": ["eval_every=1", "batch_size=4"], "report_to": "tensorboard"}))
    result = cli("compare", "--config", options, "--out", tmp_path / "grid", "--json")
    assert result.exit_code == 0, result.output
    records = read_records(tmp_path / "grid")
    assert {r["method"] for r in records.values()} == {"manual", "prompt"}
    for cell, record in records.items():
        events = EventAccumulator(str(tmp_path / "grid" / "cells" / cell / "tensorboard"))
        events.Reload()
        if record["method"] == "prompt":
            assert [e.step for e in events.Scalars("loss")] == [1, 2]
        assert events.Scalars(f"result/dev/{record['metric']}")
    (tmp_path / "bad.yaml").write_text("methods: manual\nsedes: [1]\n")
    result = cli("compare", "--config", tmp_path / "bad.yaml", "--out", tmp_path / "x")
    assert result.exit_code == 2 and "'sedes' is not an option of `autoprompt compare`; valid: " in result.output
