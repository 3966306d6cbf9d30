"""Use a saved soft prompt: `artifact_logits_fn` for `autoprompt evaluate ARTIFACT` (frozen_lm.methods)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from frozen_lm.artifact import Artifact, check_model
from frozen_lm.encode import Rows
from frozen_lm.errors import UserError
from frozen_lm.model import FrozenLM
from softprompt.prefix import prefix_logits, reserve_positions
from softprompt.prompt import prompt_logits


def prompt_vectors(artifact: Artifact, lm: FrozenLM, task) -> torch.Tensor:
    """The (S, H) vectors of a prompt-tuning artifact, checked against the template and model."""
    vectors = artifact.tensors.get("prompt_embeddings")
    if vectors is None:
        raise UserError(f"{artifact.path}: no prompt_embeddings in the weights; the artifact is incomplete")
    if vectors.shape[1] != lm.hidden_size:
        raise UserError(f"{artifact.path}: prompt vectors have size {vectors.shape[1]}, the model's embeddings "
                        f"{lm.hidden_size}; load it with --model {artifact.meta.get('model', {}).get('name')}")
    if task.template.n_triggers != vectors.shape[0]:
        raise UserError(f"{artifact.path}: {vectors.shape[0]} prompt vectors, but the template has "
                        f"{task.template.n_triggers} [T] slots")
    return vectors.to(device=lm.device, dtype=lm.dtype)


def prefix_tensor(artifact: Artifact, lm: FrozenLM) -> torch.Tensor:
    """The (L, 2, kv, P, hd) key/values of a prefix-tuning artifact, checked against the model."""
    kv = artifact.tensors.get("prefix")
    if kv is None:
        raise UserError(f"{artifact.path}: no prefix in the weights; the artifact is incomplete")
    n_layers, kv_heads, head_dim = lm.kv_layout()
    if (kv.shape[0], kv.shape[2], kv.shape[4]) != (n_layers, kv_heads, head_dim):
        raise UserError(f"{artifact.path}: prefix layout {tuple(kv.shape)} does not fit this model "
                        f"({n_layers} layers, {kv_heads} key/value heads of size {head_dim})")
    return kv.to(device=lm.device, dtype=lm.dtype)


def artifact_logits_fn(artifact: Artifact, lm: FrozenLM, task) -> Callable[[Rows], torch.Tensor]:
    """rows -> logits at [P] with the learned prompt (vectors at the [T] slots, or the prefix) applied."""
    check_model(artifact, lm)
    if artifact.method == "prompt_tuning":
        vectors = prompt_vectors(artifact, lm, task)
        return lambda rows: prompt_logits(lm, rows, vectors)
    if artifact.method == "prefix_tuning":
        kv = prefix_tensor(artifact, lm)
        reserve_positions(task, kv.shape[3])
        return lambda rows: prefix_logits(lm, rows, kv)
    raise UserError(f"{artifact.path}: method {artifact.method!r} is not a soft prompt")
