"""intrinsic_dim.sizes: d90 of one task on several models (measure_models) and d90 against parameter
count (plot_d90_by_size); measure() on one model is unchanged."""

from __future__ import annotations

import json

import pytest

import intrinsic_dim
from frozen_lm import PromptTask
from frozen_lm.errors import UserError
from frozen_lm.testing import tiny_lm
from intrinsic_dim import IntrinsicDimConfig, ModelSizes, measure, measure_models
from intrinsic_dim.plot import plot_d90_by_size

LABELS = {"0": "terrible", "1": "great"}
TRAIN, DEV = "demo:sentiment:train", "demo:sentiment:dev"
# baseline_score given: d90 is the first d reaching 90% of it (no min_gain check), so every model has one
CONFIG = dict(space="prompt", num_virtual_tokens=2, dims=[2, 8], steps=2, projection="dense", baseline_score=0.5,
              max_train=16, max_dev=16)


@pytest.fixture(scope="module")
def wide():
    return tiny_lm("llama", seed=2, hidden=64)


def test_one_result_per_model_as_measure_alone_and_a_plot(tiny, wide, tmp_path):
    pytest.importorskip("matplotlib")
    task = PromptTask(tiny("llama"), "{sentence} It was [P] .", LABELS)
    cfg = IntrinsicDimConfig(**CONFIG)
    sizes = measure_models(task, TRAIN, DEV, cfg, models=[wide, tiny("gpt2")], out=tmp_path / "sizes", progress=False)
    assert [r.model["name"] for r in sizes.results] == ["tiny-llama", "tiny-llama", "tiny-gpt2"]
    assert [row["parameters"] for row in sizes.rows] == [sum(p.numel() for p in lm.model.parameters())
                                                         for lm in (tiny("llama"), wide, tiny("gpt2"))]
    assert sizes.rows[1]["D"] == 2 * 64 and sizes.rows[0]["D"] == 2 * 32
    alone = measure(PromptTask(wide, "{sentence} It was [P] .", LABELS), TRAIN, DEV, cfg, progress=False)
    assert sizes.results[1].per_dim == alone.per_dim and sizes.results[1].d90 == alone.d90  # measure() as it is
    assert all(r["d90"] is not None for r in sizes.rows) and "needs" in sizes.trend
    files = sorted(p.name for p in (tmp_path / "sizes").iterdir())
    assert files == ["0-tiny-llama", "1-tiny-llama", "2-tiny-gpt2", "d90_by_size.png", "summary.json"]
    summary = json.loads((tmp_path / "sizes" / "summary.json").read_text())
    assert summary["trend"] == sizes.trend and len(summary["rows"]) == 3
    assert (tmp_path / "sizes" / "d90_by_size.png").stat().st_size > 1000
    # resume=True takes the finished runs as they are
    again = measure_models(task, TRAIN, DEV, cfg, models=[wide, tiny("gpt2")], out=tmp_path / "sizes", resume=True,
                           progress=False)
    assert [r.per_dim for r in again.results] == [r.per_dim for r in sizes.results]
    # each result records its model's size, so d90 against size needs no model: from the saved artifacts
    loaded = [intrinsic_dim.D90Result.load(tmp_path / "sizes" / name) for name in files[:3]]
    assert [r.lm for r in loaded] == [None] * 3 and [r.parameters for r in loaded] == [row["parameters"] for row in sizes.rows]
    assert ModelSizes.of(loaded).rows == sizes.rows


def test_trend_and_plot_with_a_model_without_d90(tmp_path):
    pytest.importorskip("matplotlib")
    rows = [{"model": "small", "parameters": 10_000, "d90": 400, "d90_min": 300, "d90_max": 500},
            {"model": "large", "parameters": 90_000, "d90": 100, "d90_min": 100, "d90_max": 120},
            {"model": "odd", "parameters": 50_000, "d90": None, "d90_min": None, "d90_max": None}]
    assert plot_d90_by_size(rows, tmp_path / "p.png").stat().st_size > 1000
    sizes = ModelSizes([], rows)
    assert sizes.trend == "large (90,000 parameters) needs fewer dimensions than small (10,000): d90 100 vs 400"
    assert ModelSizes([], rows[2:]).trend == "no comparison: no d90 on odd"


def test_arguments_are_checked(tiny):
    task = PromptTask(tiny("llama"), "{sentence} It was [P] .", LABELS)
    with pytest.raises(UserError, match="models= is empty"):
        measure_models(task, TRAIN, DEV, IntrinsicDimConfig(**CONFIG), models=[])
    with pytest.raises(UserError, match="prompt= for several models must be trigger text"):
        measure_models(task, TRAIN, DEV, IntrinsicDimConfig(**CONFIG), models=[tiny("gpt2")], prompt=object())
    assert intrinsic_dim.measure_models is measure_models
