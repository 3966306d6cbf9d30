"""benchmarks/random_weights.py: an architecture + tokenizer folder, then seeded random weights."""

from __future__ import annotations

import torch

from benchmarks.random_weights import build, export
from frozen_lm.model import FrozenLM


def test_export_then_build_is_the_architecture_with_seeded_weights(tiny_folder, tmp_path):
    src = tiny_folder("llama")
    out = export(str(src), tmp_path / "arch")
    assert not list(out.glob("*.safetensors"))  # nothing heavy travels
    a = FrozenLM.load(str(build(out, seed=1)), device="cpu")
    b = FrozenLM.load(str(build(export(str(src), tmp_path / "again"), seed=1)), device="cpu")
    real = FrozenLM.load(str(src), device="cpu")
    assert a.model.config.to_dict() == {**real.model.config.to_dict(), "_name_or_path": a.model.config._name_or_path}
    assert a.tokenizer.get_vocab() == real.tokenizer.get_vocab()
    assert torch.equal(a.embedding_matrix, b.embedding_matrix)  # same seed, same weights
    assert not torch.equal(a.embedding_matrix, real.embedding_matrix)
