"""Same seeds, same tensors across the method-layer refactor: every method's artifact on tiny models
(scripts/golden_artifacts.py) against the fingerprints the code before it wrote (package 0.2.0,
tests/frozen_lm/golden_fingerprints.json). Shapes, dtypes and metrics must match exactly; sums of
each tensor and float metrics to 1e-4 relative, counts and accuracies exactly. The sha256 of the
bytes matched on the machine that made the file (one torch thread); another CPU rounds differently:
on an AVX2 EPYC (2026-12-07) a few steps of training moved tensor sums by up to 2.4e-5 relative
(PEZ's prompt_embeddings: -0.3999349 vs -0.3999253) and a log-likelihood by 1e-8, while a change of
behaviour moves them by far more."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scripts.golden_artifacts import build

GOLDEN = json.loads((Path(__file__).parent / "golden_fingerprints.json").read_text())


@pytest.fixture(scope="module")
def fingerprints(tmp_path_factory):
    return build(tmp_path_factory.mktemp("golden"))


@pytest.mark.parametrize("case", sorted(GOLDEN))
def test_same_tensors_as_before_the_refactor(fingerprints, case):
    now, then = fingerprints[case], GOLDEN[case]
    assert sorted(now["tensors"]) == sorted(then["tensors"])
    for name, t in then["tensors"].items():
        got = now["tensors"][name]
        assert (got["shape"], got["dtype"]) == (t["shape"], t["dtype"]), name
        for key in ("sum", "abs"):
            assert got[key] == pytest.approx(t[key], rel=1e-4, abs=1e-5), (name, key)
    same_metrics(now["metrics"], then["metrics"], case)


def same_metrics(now, then, where: str) -> None:
    """Equal metrics: the same keys, counts and accuracies exact, other floats to 1e-4 relative."""
    if isinstance(then, dict):
        assert isinstance(now, dict) and sorted(now) == sorted(then), where
        for key in then:
            same_metrics(now[key], then[key], f"{where}.{key}")
    elif isinstance(then, float) and not where.endswith("accuracy"):
        assert now == pytest.approx(then, rel=1e-4, abs=1e-6), where
    else:
        assert now == then, where
