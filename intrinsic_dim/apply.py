"""Apply a saved intrinsic-dim artifact: regenerate the projection from its seed and score with
theta_0 + P(theta_d) (`autoprompt evaluate ARTIFACT` goes through `artifact_logits_fn`)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from frozen_lm.encode import Rows
from frozen_lm.errors import UserError
from intrinsic_dim.objective import Objective
from intrinsic_dim.params import select_names
from intrinsic_dim.projections import make_projection
from intrinsic_dim.subspace import Subspace

NEG = -1e4


def artifact_params(artifact, lm, task) -> tuple[Objective, dict[str, torch.Tensor]]:
    """(objective, {name: theta_0 + P(theta_d)}) for a saved run, computed once."""
    cfg = artifact.config
    objective = Objective(task, cfg["head"], cfg["loss"], cfg["head_seed"])
    base = objective.base(select_names(list(lm.named_parameters()), cfg["params"]))
    D = sum(t.numel() for t in base.values())
    if D != cfg["D"]:
        raise UserError(f"{artifact.path}: the saved run moved {cfg['D']:,} numbers, this model's --params "
                        f"{cfg['params']!r} selects {D:,}; load it with the model it was trained on")
    theta = artifact.tensors["theta_d"].to(device=lm.device, dtype=torch.float32)
    scale = artifact.tensors.get("said_scale")
    proj = make_projection(cfg["projection"], D, theta.numel(), cfg["projection_seed"], lm.device)
    with torch.no_grad():
        params = Subspace(base, proj, scale is not None).params(theta, None if scale is None else scale.to(lm.device))
    return objective, params


def head_as_logits(scores: torch.Tensor, rows: Rows, verbalizer, vocab_size: int) -> torch.Tensor:
    """Class scores (B, C) -> [P] logits (R, M, V) that the task's verbalizer scores as those classes.

    Each word w of class c gets log_softmax(scores)_c - log(words in c) at its first token; a spare
    token takes the rest of each row's probability mass, so class log-probs equal log_softmax(scores)
    (exact for single-token words and for causal LMs; approximate for a masked LM whose multi-token
    words share a row).
    """
    lp = torch.log_softmax(scores.float(), dim=-1)
    wc = verbalizer.word_class.to(scores.device)
    v = lp[:, wc] - torch.log(torch.bincount(wc, minlength=lp.shape[1]).float())[wc]  # (B, W)
    R, M = rows.input_ids.shape[0], rows.predict_pos.shape[1]
    out = torch.full((R, M, vocab_size), NEG, device=scores.device)
    row_of = rows.row_of.to(scores.device)  # (B, W)
    for w, tokens in enumerate(verbalizer.word_ids):
        out[row_of[:, w], 0, tokens[0]] = v[:, w]
        for m, t in enumerate(tokens[1:M], start=1):
            out[row_of[:, w], m, t] = 0.0
    first = {t[0] for t in verbalizer.word_ids}
    spare = next(i for i in range(vocab_size) if i not in first)
    mass = torch.zeros(R, device=scores.device).index_add(0, row_of.reshape(-1), v.exp().reshape(-1))
    out[:, 0, spare] = torch.log((1 - mass).clamp(min=math.exp(NEG / 100)))
    return out


def artifact_logits_fn(artifact, lm, task) -> Callable[[Rows], torch.Tensor]:
    """rows -> logits (R, M, V) at [P] with the artifact's weights theta_0 + P(theta_d)."""
    objective, params = artifact_params(artifact, lm, task)
    if objective.head == "none":
        return lambda rows: objective.scores(params, rows)
    return lambda rows: head_as_logits(objective.scores(params, rows), rows, task.verbalizer, lm.vocab_size)
