"""Prompt space and prefix space: what moves is a soft prompt; the model is never touched.

theta_0 is the soft prompt prompt tuning starts from: `frozen_lm.prompts.init` (random, vocab, labels
or text) with a generator seeded by config.seed, on `frozen_lm.prompts.effective`'s task (the
template's or prepended [T] slots for a prompt; for a prefix the slots are removed and positions
reserved). The subspace moves theta = theta_0 + P(theta_d): a prompt (K, H) or a prefix (L, 2, kv,
P, hd), seen by the model through frozen_lm.prompts' PromptBound / PrefixBound, the same Bounds a
tuned prompt is scored with. Full training here is prompt tuning / direct prefix tuning of all D numbers.

`make_objective` picks the space's objective (model space: `intrinsic_dim.objective.Objective`).
CMA-ES's `population_loss` stacks the candidates' prompts along the batch: candidates x examples
rows in a few forward passes. A saved result carries theta_0 (it comes from an init) and theta_d;
the projection is regenerated from its seed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import torch

from frozen_lm.encode import Rows
from frozen_lm.errors import UserError
from frozen_lm.evaluate import Bound
from frozen_lm.model import Prefix
from frozen_lm.prompts.effective import effective_task
from frozen_lm.prompts.init import prefix_init, prompt_init
from frozen_lm.prompts.prefix import PrefixBound, check_prefix_support
from frozen_lm.prompts.soft import PromptBound
from frozen_lm.task import PromptTask
from intrinsic_dim.apply import require_run
from intrinsic_dim.objective import Objective, metrics_of
from intrinsic_dim.params import select_names
from intrinsic_dim.projections import make_projection
from intrinsic_dim.subspace import Subspace


def make_objective(task: PromptTask, config) -> tuple[Objective | PromptObjective, dict[str, torch.Tensor]]:
    """(the objective of config.space, theta_0 of what moves by name); UserError for a task the space
    cannot use (no [T] slots for a prompt, no key/value cache for a prefix)."""
    if config.space == "model":
        objective = Objective(task, config.head, config.loss, config.seed)
        return objective, objective.base(select_names(list(task.lm.named_parameters()), config.params))
    objective = PromptObjective(task, config.space, config.loss, init=config.init,
                                num_virtual_tokens=config.num_virtual_tokens, seed=config.seed)
    return objective, objective.base()


class PromptObjective:
    """A soft prompt (space 'prompt') or prefix (space 'prefix') as the moving numbers, on the effective task.

    theta_0: a trained run's starting point (saved results); None draws it from `init` and `seed`.
    effective: the effective template a saved run was trained with.
    """

    def __init__(self, task: PromptTask, space: str, loss_kind: str = "classes", *, init: str = "vocab",
                 num_virtual_tokens: int | None = None, seed: int = 0, theta_0: torch.Tensor | None = None,
                 effective: str | None = None):
        self.space, self.loss_kind, self.lm = space, loss_kind, task.lm
        self.name = "prompt" if space == "prompt" else "prefix"
        length = int(theta_0.shape[3]) if theta_0 is not None and space == "prefix" else None
        self.task, self.k = effective_task(task, space, num_virtual_tokens, effective=effective, length=length)
        if space == "prefix":
            check_prefix_support(self.lm)
        self.init_ids: list[int] | None = None
        if theta_0 is None:
            make = prompt_init if space == "prompt" else prefix_init
            theta_0, self.init_ids = make(self.lm, self.task, self.k, init, torch.Generator().manual_seed(seed))
        self.theta_0 = theta_0.detach().to(device=self.lm.device, dtype=torch.float32)
        self._check_shape()

    def _check_shape(self) -> None:
        shape, lm = tuple(self.theta_0.shape), self.lm
        if self.space == "prompt":
            want = (self.task.template.n_triggers, lm.hidden_size)
            what = f"{want[0]} [T] slots of template {self.task.spec.template!r} and hidden size {want[1]}"
        else:
            n_layers, kv_heads, head_dim = lm.kv_layout()
            want = (n_layers, 2, kv_heads, self.k, head_dim)
            what = f"{n_layers} layers, {kv_heads} key/value heads of size {head_dim}"
        if shape != want:
            raise UserError(f"this {self.space}-space theta_0 has shape {shape}, which does not fit {what}; "
                            "load it with the model and template it was trained with")

    def base(self, names=None) -> dict[str, torch.Tensor]:
        """theta_0 by name: {'prompt': (K, H)} or {'prefix': (L, 2, kv, P, hd)}, float32."""
        return {self.name: self.theta_0}

    def bound(self, params: Mapping[str, torch.Tensor]) -> Bound:
        t = params[self.name]
        return PromptBound(self.task, t) if self.space == "prompt" else PrefixBound(self.task, t)

    def loss(self, params: Mapping[str, torch.Tensor], rows: Rows) -> torch.Tensor:
        return self.task.loss(self.bound(params).logits(rows), rows, self.loss_kind)

    def log_probs(self, params: Mapping[str, torch.Tensor], rows: Rows) -> torch.Tensor:
        return self.bound(params).log_probs(rows)

    def metrics(self, params: Mapping[str, torch.Tensor], rows: Rows, batch_size: int) -> dict:
        return metrics_of(self.bound(params), rows, batch_size)

    @torch.no_grad()
    def population_loss(self, space: Subspace, thetas: torch.Tensor, rows: Rows, rows_per_pass: int = 32) -> torch.Tensor:
        """(N,) mean loss on `rows` of each candidate theta_d in thetas (N, d): the candidates' prompts are
        stacked along the batch, as many per forward pass as fit in rows_per_pass rows (at least one)."""
        per = max(1, rows_per_pass // rows.input_ids.shape[0])
        out = []
        for start in range(0, thetas.shape[0], per):
            prompts = torch.stack([space.params(t)[self.name].clone() for t in thetas[start:start + per]])
            out.append(self.stacked_losses(prompts, rows))
        return torch.cat(out)

    def stacked_losses(self, prompts: torch.Tensor, rows: Rows) -> torch.Tensor:
        """prompts (n, *theta_0.shape) -> (n,) mean loss of each on the rows, in one forward pass of n x R rows."""
        n, lm = prompts.shape[0], self.lm
        rep = repeat_rows(rows, n)
        each = rows.input_ids.shape[0]
        if self.space == "prompt":
            embeds = lm.embed(rep.input_ids)
            index = rep.trigger_pos.unsqueeze(-1).expand(-1, -1, embeds.shape[-1])
            embeds = embeds.scatter(1, index, prompts.to(embeds.dtype).repeat_interleave(each, 0))
            logits = lm.logits_at(rep.predict_pos, inputs_embeds=embeds, attention_mask=rep.attention_mask)
        else:
            logits = lm.logits_at(rep.predict_pos, input_ids=rep.input_ids, attention_mask=rep.attention_mask,
                                  prefix=stacked_prefix(prompts, each, lm.dtype))
        return example_losses(self.task, logits, rep, self.loss_kind).view(n, -1).mean(1)


def repeat_rows(rows: Rows, n: int) -> Rows:
    """The rows n times over, copy after copy (each example's rows stay together); per-word fields stay."""
    per_row = {f: getattr(rows, f).repeat(n, 1) for f in ("input_ids", "attention_mask", "trigger_pos", "predict_pos")}
    per_example = {f: getattr(rows, f).repeat(n, *([1] * (getattr(rows, f).dim() - 1)))
                   for f in ("labels", "targets") if getattr(rows, f, None) is not None}
    return replace(rows, **per_row, **per_example)


def stacked_prefix(kvs: torch.Tensor, each: int, dtype: torch.dtype) -> Prefix:
    """kvs (n, L, 2, kv, P, hd) -> a Prefix with n x `each` rows (prefix j for rows j*each .. (j+1)*each-1)."""
    kvs = kvs.to(dtype).repeat_interleave(each, 0)
    return Prefix([kvs[:, layer, 0] for layer in range(kvs.shape[1])], [kvs[:, layer, 1] for layer in range(kvs.shape[1])])


def example_losses(task: PromptTask, logits: torch.Tensor, rows: Rows, kind: str) -> torch.Tensor:
    """(B,) loss of each example: what `task.loss` averages."""
    lp = task.log_probs(logits, rows)
    if kind == "classes" and not task.is_facts:
        lp = torch.log_softmax(lp, dim=-1)
    return -lp.gather(1, rows.labels[:, None]).squeeze(1).float()


def saved_bound(result, task: PromptTask) -> Bound:
    """theta_0 + P(theta_d) of a prompt- or prefix-space result's saved run, on `task` (its template as
    given or the effective one)."""
    cfg, run = result.config, require_run(result)
    result.require("theta_d", "theta_0")
    objective = PromptObjective(task, cfg.space, cfg.loss, num_virtual_tokens=cfg.num_virtual_tokens,
                                theta_0=result.tensors["theta_0"], effective=result.template or None)
    base = objective.base()
    D = objective.theta_0.numel()
    if result.D and D != result.D:
        raise UserError(f"the saved run moved {result.D:,} numbers, its theta_0 holds {D:,}; the artifact is damaged")
    theta = result.tensors["theta_d"].to(device=task.lm.device, dtype=torch.float32)
    proj = make_projection(cfg.projection, D, theta.numel(), int(run["seed"]), task.lm.device)
    with torch.no_grad():
        params = Subspace(base, proj).params(theta)
    return objective.bound(params)
