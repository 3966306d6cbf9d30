"""The API tour (examples/api_tour.py) runs end to end on tiny models."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

TOUR = Path(__file__).resolve().parents[2] / "examples" / "api_tour.py"


def _tour():
    spec = importlib.util.spec_from_file_location("api_tour", TOUR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("kind", ["llama", "bert"])
def test_api_tour_runs_on_tiny_models(tiny_folder, tmp_path, kind):
    scores = _tour().tour(model=tiny_folder(kind), out=str(tmp_path / "tour"), quick=True)
    expected = {"manual", "autoprompt", "prompt_tuning", "nearest_tokens"} | ({"prefix_tuning"} if kind == "llama" else set())
    assert set(scores) == expected
    from frozen_lm import FrozenLM, PromptTask, evaluate, load_result

    lm = FrozenLM.load(tiny_folder(kind))
    manual = PromptTask(lm, "{sentence} It was [P] .", {"0": "terrible", "1": "great"})
    assert scores["manual"] == evaluate(manual, "demo:sentiment:dev")["accuracy"]
    task = PromptTask(lm, "{sentence} [T] [T] [T] [P]", {"0": "terrible", "1": "great"})
    assert scores["autoprompt"] == evaluate(task, "demo:sentiment:dev", prompt=load_result(tmp_path / "tour" / "search"))["accuracy"]
