"""Artifacts and results: config.json (indent 2, sorted) + weights.safetensors + results.json; round
trip through a registered plug-in method, the model check, old (format 1) artifacts, damaged files."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest
import torch

from frozen_lm import PromptTask, Result, evaluate, load_result
from frozen_lm.artifact import (
    CARD,
    CONFIG,
    RESULTS,
    WEIGHTS,
    check_model,
    model_info,
    read_artifact,
    write_artifact,
)
from frozen_lm.errors import UserError
from frozen_lm.evaluate import TriggerBound
from frozen_lm.methods import Method, for_artifact, methods, register_method
from frozen_lm.results import base_fields
from tests.conftest import assert_user_error

TEMPLATE = "{sentence} [T] [T] [P]"
LABELS = {"0": "bad", "1": "great"}


@dataclass
class DummyConfig:
    n_slots: int = 2
    lr: float = 0.1
    names: list = field(default_factory=lambda: ["a", "b"])
    seed: int = 0


@dataclass
class DummyResult(Result):
    module = "test_artifact"
    score: float = 0.0

    def bind(self, task):
        return TriggerBound(task, self.tensors["trigger_ids"])


register_method(Method("dummy", DummyConfig, fit=lambda run: None, result=DummyResult, module="test_artifact"))


@pytest.fixture
def saved(tmp_path, tiny):
    lm = tiny("llama")
    task = PromptTask(lm, TEMPLATE, LABELS)
    tensors = {"trigger_ids": torch.tensor([5, 6]), "prompt_embeddings": torch.randn(2, lm.hidden_size)}
    result = DummyResult(**base_fields("dummy", DummyConfig(seed=7), task, {"dev": {"source": "demo:sentiment:dev"}}),
                         tensors=tensors, metrics={"accuracy": 0.75}, history=[{"step": 0, "loss": 1.5}],
                         timings={"total_s": 1.25}, score=0.5)
    path = result.save(tmp_path / "run")
    return path, lm, task, result


def test_round_trip(saved):
    path, lm, task, result = saved
    assert sorted(p.name for p in path.iterdir()) == sorted([CONFIG, WEIGHTS, RESULTS, CARD])
    loaded = load_result(path)
    assert type(loaded) is DummyResult and loaded.method == "dummy"
    assert loaded.config == DummyConfig(seed=7) and loaded.seed == 7
    assert loaded.task == task.spec and loaded.task.label_map == {"0": ["bad"], "1": ["great"]}
    assert loaded.model == model_info(lm) and loaded.model["architecture"] == "LlamaForCausalLM"
    assert set(loaded.versions) >= {"package", "torch", "transformers", "python"}
    assert set(loaded.tensors) == set(result.tensors)
    for k, v in result.tensors.items():
        assert torch.equal(loaded.tensors[k], v) and loaded.tensors[k].dtype == v.dtype
    assert (loaded.metrics, loaded.history, loaded.timings, loaded.score) == ({"accuracy": 0.75}, [{"step": 0, "loss": 1.5}],
                                                                             {"total_s": 1.25}, 0.5)
    assert loaded.lm is None and result.lm is lm  # the model is kept in memory only
    assert evaluate(task, "demo:sentiment:dev", prompt=loaded) == evaluate(task, "demo:sentiment:dev", prompt=result)


def test_config_json_is_indented_sorted_and_complete(saved):
    path = saved[0]
    text = (path / CONFIG).read_text()
    meta = json.loads(text)
    assert text == json.dumps(meta, indent=2, sort_keys=True) + "\n"
    assert {"format", "method", "module", "config", "task", "seed", "model", "versions", "data"} <= set(meta)
    assert meta["seed"] == meta["config"]["seed"] == 7 and meta["module"] == "test_artifact"
    assert not list(path.glob("*.tmp"))  # written to temporary names and renamed


def test_same_tensors_same_bytes(saved, tmp_path):
    path, _, _, result = saved
    again = result.save(tmp_path / "again")
    for name in (WEIGHTS, CONFIG):
        assert (path / name).read_bytes() == (again / name).read_bytes()


def test_registry():
    assert "dummy" in methods() and for_artifact("dummy").result is DummyResult
    with pytest.raises(UserError, match="method 'nope' is not installed"):
        for_artifact("nope", None, None, "somewhere")
    with pytest.raises(UserError, match="needs the 'no_such_package' package"):
        for_artifact("other", None, "no_such_package", "somewhere")
    with pytest.raises(ValueError, match="registered twice"):
        register_method(Method("dummy", DummyConfig, fit=None, result=DummyResult, module="elsewhere"))


def test_check_model(saved, tiny):
    path, lm, *_ = saved
    loaded = load_result(path)
    loaded.check_model(lm)  # same model: fine
    for other in ("gpt2", "bert"):
        with pytest.raises(UserError, match=r"was made with model 'tiny-llama'.*load it with model 'tiny-llama'"):
            loaded.task_for(tiny(other))
        with pytest.raises(UserError, match="was made with model"):
            check_model(loaded.model, tiny(other), path)


def test_read_errors(tmp_path, saved):
    with pytest.raises(UserError, match="not an artifact directory"):
        read_artifact(tmp_path)
    (tmp_path / CONFIG).write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        read_artifact(tmp_path)
    (tmp_path / CONFIG).write_text("[1, 2]")
    with pytest.raises(UserError, match="not a JSON object"):
        read_artifact(tmp_path)
    path = saved[0]
    for damage in (b"", b"\x00" * 7, (path / WEIGHTS).read_bytes()[:40]):
        (path / WEIGHTS).write_bytes(damage)
        with pytest.raises(UserError, match="weights.safetensors is damaged"):
            load_result(path)


def test_format_1_artifacts_are_read(tmp_path, tiny):
    """Artifacts of package 0.1 kept model, data paths, device and dtype in "task"."""
    lm = tiny("llama")
    meta = {"method": "dummy", "config": {"n_slots": 2, "lr": 0.1, "names": ["a"]}, "seed": 3,
            "task": {"model": "tiny-llama", "template": TEMPLATE, "label_map": json.dumps(LABELS), "label_field": "label",
                     "text_fields": None, "train": "a.jsonl", "dev": "b.jsonl", "multi_token": "skip", "device": "auto",
                     "dtype": "auto"},
            "model": model_info(lm), "versions": {"package": "0.1.0"}}
    write_artifact(tmp_path, meta, {"trigger_ids": torch.tensor([5, 6])}, {"score": 0.25})
    (tmp_path / CONFIG).write_text(json.dumps({k: v for k, v in json.loads((tmp_path / CONFIG).read_text()).items()
                                               if k != "format"}))
    old = load_result(tmp_path)
    assert old.seed == 3 and old.task.template == TEMPLATE and old.task.label_map == {"0": ["bad"], "1": ["great"]}
    assert old.data == {"train": {"source": "a.jsonl"}, "dev": {"source": "b.jsonl"}} and old.score == 0.25
    assert old.task_for(lm).spec == PromptTask(lm, TEMPLATE, LABELS).spec


def test_cli_artifact_errors(cli, saved, tiny_folder, tmp_path):
    path = saved[0]
    result = cli("evaluate", path, "--template", "{sentence} [P]")
    assert_user_error(result, "--template cannot change a saved prompt's task")
    result = cli("evaluate", path, "--model", tiny_folder("gpt2"), "--data", "demo:sentiment:dev")
    assert_user_error(result, "was made with model 'tiny-llama'")
    assert_user_error(cli("evaluate", tmp_path), "not an artifact directory")
    (path / CONFIG).write_text(json.dumps({"method": "dummy", "config": [], "task": {}, "model": {}}))
    assert_user_error(cli("evaluate", path), "config.json is damaged")
