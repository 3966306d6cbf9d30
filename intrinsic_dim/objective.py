"""What the trained numbers are trained and scored on in model space: the label words at [P] (the same
task as the prompt methods) or a linear classification head on the [P] hidden state, and
`WeightsBound`, the task scored under weight overrides (for the shared evaluator).

The head's weights are part of theta: they start from a seeded random init (regenerated from the
seed, never saved) and move only through the same subspace, so d counts every trained number.

Every space's objective (this one; `intrinsic_dim.spaces.PromptObjective` for prompt and prefix
space) offers the same calls to training and the sweep: `task` (the task its rows are encoded with),
`base()` (theta_0 by name), `loss(params, rows)`, `bound(params)` (a Bound for the shared
evaluator), `metrics(params, rows, batch_size)` and `population_loss(space, thetas, rows, ...)` (one
loss per CMA-ES candidate).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from frozen_lm.encode import Rows
from frozen_lm.errors import UserError
from frozen_lm.evaluate import Bound, score
from frozen_lm.task import PromptTask
from intrinsic_dim.projections import generator

HEAD_PREFIX = "head."
HEAD_INIT_STD = 0.02


def head_init(n_classes: int, hidden: int, seed: int, dtype=torch.float32, device=None) -> dict[str, torch.Tensor]:
    """{'head.weight': (C, H) N(0, 0.02^2), 'head.bias': (C,) zeros}, from `seed`."""
    w = torch.randn(n_classes, hidden, generator=generator(seed)) * HEAD_INIT_STD
    return {HEAD_PREFIX + "weight": w.to(device=device, dtype=dtype),
            HEAD_PREFIX + "bias": torch.zeros(n_classes, device=device, dtype=dtype)}


def model_params(params: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The overrides of model weights (the head's tensors left out)."""
    return {k: v for k, v in params.items() if not k.startswith(HEAD_PREFIX)}


@torch.no_grad()
def metrics_of(bound: Bound, rows: Rows, batch_size: int) -> dict:
    """{metric: value, 'n_scored', 'loglik'} of a Bound on encoded rows (the shared evaluator)."""
    s = score(bound, rows, batch_size)
    return {bound.task.metric: s.correct / max(s.n, 1), "n_scored": s.n, "loglik": s.mean("vocab")}


def first_rows(rows: Rows) -> torch.Tensor:
    """(B,) index of each example's first row."""
    return torch.arange(rows.n_examples, device=rows.input_ids.device) * rows.k


class Objective:
    """Class scores, loss and correctness of rows under weight overrides {name: tensor}."""

    def __init__(self, task: PromptTask, head: str = "none", loss_kind: str = "classes", seed: int = 0):
        self.task, self.lm = task, task.lm
        self.head, self.loss_kind = head, loss_kind
        self.head_params: dict[str, torch.Tensor] = {}
        if head == "linear":
            if task.is_facts:
                raise UserError("IntrinsicDimConfig.head linear needs classes: give the task a label_map (fact "
                                "retrieval scores the vocabulary)")
            self.head_params = head_init(task.verbalizer.n_classes, self.lm.hidden_size, seed,
                                         self.lm.dtype, self.lm.device)

    def base(self, names: list[str]) -> dict[str, torch.Tensor]:
        """theta_0 of the selected model tensors, then the head's (always trained when present)."""
        weights = self.lm.named_parameters()
        return {**{n: weights[n] for n in names}, **self.head_params}

    def scores(self, params: Mapping[str, torch.Tensor], rows: Rows) -> torch.Tensor:
        """Head logits (B, C), or the [P] logits (R, M, V) the task scores (label-word objective)."""
        model = model_params(params)
        if self.head == "none":
            return self.lm.logits_at(rows.predict_pos, input_ids=rows.input_ids,
                                     attention_mask=rows.attention_mask, params=model)
        first = first_rows(rows)
        hidden = self.lm.hidden_at(rows.predict_pos[first, :1], input_ids=rows.input_ids[first],
                                   attention_mask=rows.attention_mask[first], params=model)[:, 0]
        w = params.get(HEAD_PREFIX + "weight", self.head_params[HEAD_PREFIX + "weight"])
        b = params.get(HEAD_PREFIX + "bias", self.head_params[HEAD_PREFIX + "bias"])
        return hidden @ w.T + b

    def log_probs(self, params: Mapping[str, torch.Tensor], rows: Rows) -> torch.Tensor:
        """(B, C) class log-probs (facts: (B, V)): the task's reading of the label words at [P], or
        log_softmax of the head's logits."""
        out = self.scores(params, rows)
        if self.head == "none":
            return self.task.log_probs(out, rows)
        return torch.log_softmax(out.float(), dim=-1)

    def loss(self, params: Mapping[str, torch.Tensor], rows: Rows) -> torch.Tensor:
        out = self.scores(params, rows)
        if self.head == "none":
            return self.task.loss(out, rows, self.loss_kind)
        return torch.nn.functional.cross_entropy(out.float(), rows.labels)

    def bound(self, params: Mapping[str, torch.Tensor]) -> Bound:
        """The task scored under the overrides (trigger ids, if any, are already in the rows)."""
        return WeightsBound(self.task, self, params)

    def metrics(self, params: Mapping[str, torch.Tensor], rows: Rows, batch_size: int) -> dict:
        return metrics_of(self.bound(params), rows, batch_size)

    @torch.no_grad()
    def population_loss(self, space, thetas: torch.Tensor, rows: Rows, rows_per_pass: int = 32) -> torch.Tensor:
        """(N,) mean loss on `rows` of each candidate theta_d in thetas (N, d) through `space` (a Subspace):
        one pass over the rows per candidate, whose weights differ (rows_per_pass does not apply)."""
        return torch.stack([self.loss(space.params(t), rows).float() for t in thetas])


class WeightsBound(Bound):
    """A task scored with weight overrides {name: tensor} (model tensors and the head's), and the
    trigger ids written into the template's [T] slots when it has any."""

    def __init__(self, task: PromptTask, objective: Objective, params: Mapping[str, torch.Tensor],
                 trigger_ids=None):
        super().__init__(task)
        self.objective, self.params = objective, dict(params)
        self.trigger_ids = None if trigger_ids is None else torch.as_tensor(trigger_ids, dtype=torch.long,
                                                                            device=task.lm.device)

    def _rows(self, rows: Rows) -> Rows:
        return rows if self.trigger_ids is None else rows.set_triggers(self.trigger_ids)

    def logits(self, rows: Rows) -> torch.Tensor:
        """The language model's logits at [P] (R, M, V) under the overrides."""
        rows = self._rows(rows)
        return self.task.lm.logits_at(rows.predict_pos, input_ids=rows.input_ids, attention_mask=rows.attention_mask,
                                      params=model_params(self.params))

    def log_probs(self, rows: Rows) -> torch.Tensor:
        """(B, C) class log-probs (facts: (B, V)): label words at [P], or the linear head's."""
        return self.objective.log_probs(self.params, self._rows(rows))
