"""Fixtures of the sweep, significance and models tests: a small task that tiny models can learn
(one word decides the label) and 'dial' methods registered at run time whose dev and test scores a
config field sets exactly (so which setting a sweep must choose, per seed, is known)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import torch

from frozen_lm.evaluate import Bound
from frozen_lm.methods import Method, register_method
from frozen_lm.results import Result
from tests.conftest import write_jsonl

LABELS = {"0": "terrible", "1": "great"}
FAST = {"steps": 2, "eval_every": 1, "iters": 1, "num_cand": 2, "eval_size": 4, "batch_size": 4}
# the level that is right, per dial method and seed: every other level predicts class 0 (half right)
RIGHT = {"dial_a": {1: 0, 2: 2}, "dial_b": {1: 3, 2: 1}}
LEVELS = [0, 1, 2, 3]


def _rows(words: list[str], label: int, nouns: list[str], article: str) -> list[dict]:
    return [{"sentence": f"{article} {w} {n}", "label": label} for w in words for n in nouns]


@pytest.fixture
def words_task(tmp_path):
    """A task whose label is one word of the sentence: train, dev and test files (balanced, disjoint)."""
    good, bad, nouns = ["great", "good", "nice", "fine"], ["awful", "bad", "terrible", "very bad"], ["movie", "film",
                                                                                                   "review", "city"]
    train = write_jsonl(tmp_path / "train.jsonl", _rows(good, 1, nouns[:2], "a") + _rows(bad, 0, nouns[:2], "a"))
    dev = write_jsonl(tmp_path / "dev.jsonl", _rows(good, 1, nouns[2:3], "the") + _rows(bad, 0, nouns[2:3], "the"))
    test = write_jsonl(tmp_path / "test.jsonl", _rows(good, 1, nouns, "this") + _rows(bad, 0, nouns, "this"))
    return {"name": "words", "template": "{sentence} It was [P] .", "label_map": LABELS, "train": str(train),
            "dev": str(dev), "test": str(test)}


@dataclass
class DialConfig:
    """A test method's config: `level` decides how well it does (see RIGHT)."""

    level: int = field(default=0, metadata={"help": "which level this run is"})
    batch_size: int = field(default=8, metadata={"help": "examples per forward pass"})
    seed: int = field(default=0, metadata={"help": "random seed"})


class DialBound(Bound):
    """Right on every example when `right`, else class 0 for every example."""

    def __init__(self, task, right: bool):
        super().__init__(task)
        self.right = right

    def log_probs(self, rows):
        lp = super().log_probs(rows)  # (B, C): a real forward pass, so the meter counts tokens
        pick = rows.labels if self.right else torch.zeros_like(rows.labels)
        return torch.where(torch.arange(lp.shape[1], device=lp.device)[None] == pick[:, None], 0.0, -20.0)


@dataclass
class DialResult(Result):
    def bind(self, task):
        return DialBound(task, RIGHT[self.method].get(self.config.seed) == self.config.level)


def fit_dial(run):
    from frozen_lm.evaluate import evaluate

    result = DialResult(**run.fields(), timings={"total_seconds": run.elapsed()})
    result.metrics["dev"] = evaluate(run.task, run.dev, prompt=result, batch_size=run.config.batch_size)
    return result


@pytest.fixture
def dials():
    """'dial_a' and 'dial_b', registered for the test (space: level 0-3), removed after it."""
    from frozen_lm.methods import _METHODS

    made = [register_method(Method(name=name, config=DialConfig, fit=fit_dial, result=DialResult, trains="nothing",
                                   template="manual", space={"level": LEVELS}, needs_dev=True,
                                   summary="a test method whose level decides its score", module=__name__))
            for name in RIGHT]
    yield made
    for name in RIGHT:
        _METHODS.pop(name, None)
