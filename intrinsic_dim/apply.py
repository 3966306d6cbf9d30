"""A saved model-space run applied to a task: theta = theta_0 + P(theta_d) as the weight overrides of
a `intrinsic_dim.objective.WeightsBound`.

The same Bound scores every run during the sweep (through the shared evaluator) and a saved result
afterwards (`evaluate(task, data, prompt=load_result(dir))`): the projection is regenerated from
the saved seed, never loaded. With the linear head, class log-probs come from the head exactly.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from frozen_lm.encode import Rows
from frozen_lm.errors import UserError
from frozen_lm.task import PromptTask
from intrinsic_dim.objective import Objective
from intrinsic_dim.params import select_names
from intrinsic_dim.projections import make_projection
from intrinsic_dim.subspace import Subspace


def dev_metrics(objective, params: Mapping[str, torch.Tensor], rows: Rows, batch_size: int) -> dict:
    """{metric: value, 'n_scored', 'loglik'} of the overrides on encoded rows (the shared evaluator),
    for any space's objective."""
    return objective.metrics(params, rows, batch_size)


def require_run(result) -> dict:
    """The saved run's record; UserError when the result has none (a sweep stopped before any run)."""
    run = result.saved_run or {}
    if "seed" not in run:
        raise UserError(f"this {result.method} result has no finished subspace run to apply (status {result.status})")
    return run


def check_slots(task: PromptTask, trigger_ids) -> None:
    """UserError unless the trigger ids fill the task's [T] slots exactly."""
    n, have = task.template.n_triggers, 0 if trigger_ids is None else len(trigger_ids)
    if n and not have:
        raise UserError(f"template {task.spec.template!r} has {n} [T] slots, but this intrinsic_dim result was "
                        "trained without a prompt in them; score it with its own template")
    if have != n:
        raise UserError(f"this intrinsic_dim result fills {have} [T] slots, but template {task.spec.template!r} "
                        f"has {n}; score it with the template it was trained with")


def saved_params(result, task: PromptTask) -> tuple[Objective, dict[str, torch.Tensor]]:
    """(objective, {name: theta_0 + P(theta_d)}) of a result's saved run on `task`, computed once."""
    cfg, run = result.config, require_run(result)
    result.require("theta_d", *(("said_scale",) if cfg.said else ()))
    lm = task.lm
    objective = Objective(task, cfg.head, cfg.loss, cfg.seed)
    base = objective.base(select_names(list(lm.named_parameters()), cfg.params))
    D = sum(t.numel() for t in base.values())
    if result.D and D != result.D:
        raise UserError(f"the saved run moved {result.D:,} numbers, this model's params {cfg.params!r} select "
                        f"{D:,}; load it with the model it was trained on")
    theta = result.tensors["theta_d"].to(device=lm.device, dtype=torch.float32)
    scale = result.tensors.get("said_scale") if cfg.said else None
    proj = make_projection(cfg.projection, D, theta.numel(), int(run["seed"]), lm.device)
    with torch.no_grad():
        space = Subspace(base, proj, scale is not None)
        params = space.params(theta, None if scale is None else scale.to(device=lm.device, dtype=torch.float32))
    return objective, params
