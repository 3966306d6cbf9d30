"""Artifacts: config.json (indent 2, sorted) + weights.safetensors + results.json; round trip and the
model check."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest
import torch
from conftest import assert_user_error

from frozen_lm.artifact import CONFIG, RESULTS, WEIGHTS, check_model, load_artifact, model_info, save_artifact
from frozen_lm.errors import UserError
from frozen_lm.task import TaskConfig


@dataclass
class DummyConfig:
    n_slots: int = 3
    lr: float = 0.1
    names: list = field(default_factory=lambda: ["a", "b"])


@pytest.fixture
def saved(tmp_path, tiny):
    lm = tiny("llama")
    task = TaskConfig(model="tiny-llama", template="{sentence} [T] [T] [P]", label_map='{"0": "bad", "1": "great"}')
    tensors = {"trigger_ids": torch.tensor([5, 6, 7]), "prompt_embeddings": torch.randn(3, lm.hidden_size)}
    results = {"accuracy": 0.75, "history": [{"step": 0, "loss": 1.5}], "timings": {"total_s": 1.25}}
    path = save_artifact(tmp_path / "run", "dummy", DummyConfig(), task, lm, 7, tensors, results)
    return path, lm, task, tensors, results


def test_round_trip(saved):
    path, lm, task, tensors, results = saved
    assert sorted(p.name for p in path.iterdir()) == sorted([CONFIG, WEIGHTS, RESULTS])
    art = load_artifact(path)
    assert art.path == path and art.method == "dummy"
    assert art.config == {"n_slots": 3, "lr": 0.1, "names": ["a", "b"]}
    assert art.task == vars(task)
    assert art.meta["seed"] == 7
    assert art.meta["model"] == model_info(lm)
    assert art.meta["model"]["name"] == "tiny-llama" and art.meta["model"]["architecture"] == "LlamaForCausalLM"
    assert set(art.meta["versions"]) >= {"package", "torch", "transformers", "python"}
    assert set(art.tensors) == set(tensors)
    for k, v in tensors.items():
        assert torch.equal(art.tensors[k], v) and art.tensors[k].dtype == v.dtype
    assert art.results == results


def test_config_json_is_indented_and_sorted(saved):
    path = saved[0]
    text = (path / CONFIG).read_text()
    meta = json.loads(text)
    assert text == json.dumps(meta, indent=2, sort_keys=True) + "\n"
    assert {"method", "config", "task", "seed", "model", "versions"} <= set(meta)
    assert not list(path.glob("*.tmp"))  # written to temporary names and renamed


def test_overwrite_keeps_one_artifact(saved, tiny):
    path, lm, task, _, _ = saved
    save_artifact(path, "dummy", DummyConfig(n_slots=1), task, lm, 8, {"theta_d": torch.zeros(4)}, {"accuracy": 0.5})
    art = load_artifact(path)
    assert art.config["n_slots"] == 1 and set(art.tensors) == {"theta_d"} and art.results == {"accuracy": 0.5}


def test_check_model(saved, tiny):
    path, lm, *_ = saved
    art = load_artifact(path)
    check_model(art, lm)  # same model: fine
    for other in ("gpt2", "bert"):
        with pytest.raises(UserError, match=r"was made with model 'tiny-llama'.*--model tiny-llama"):
            check_model(art, tiny(other))


def test_load_errors(tmp_path):
    with pytest.raises(UserError, match="not an artifact directory"):
        load_artifact(tmp_path)
    (tmp_path / CONFIG).write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        load_artifact(tmp_path)


def test_cli_artifact_errors(cli, saved, tiny_folder, tmp_path):
    path = saved[0]
    result = cli("evaluate", path, "--model", tiny_folder("llama"), "--data", "demo:sentiment:dev")
    assert_user_error(result, "method 'dummy' cannot be evaluated")
    result = cli("evaluate", path, "--template", "{sentence} [P]")
    assert_user_error(result, "--template cannot change a saved prompt's task")
    result = cli("evaluate", path, "--model", tiny_folder("gpt2"), "--data", "demo:sentiment:dev")
    assert_user_error(result, "was made with model 'tiny-llama'")
    assert_user_error(cli("evaluate", tmp_path), "not an artifact directory")
