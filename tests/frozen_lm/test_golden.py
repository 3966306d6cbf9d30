"""Same seeds, same tensors across the method-layer refactor: every method's artifact on tiny models
(scripts/golden_artifacts.py) against the fingerprints the code before it wrote (package 0.2.0,
tests/frozen_lm/golden_fingerprints.json). Shapes, dtypes and metrics must match exactly; sums of
each tensor to 1e-6 (the sha256 of the bytes matched on the machine that made the file, with one
torch thread; another CPU may round differently)."""

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
            assert got[key] == pytest.approx(t[key], rel=1e-6, abs=1e-6), (name, key)
    assert now["metrics"] == then["metrics"]
