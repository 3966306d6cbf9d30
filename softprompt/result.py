"""TuneResult: a trained soft prompt (prompt vectors or prefix key/values), how it trained, and how
to apply it to a task.

`evaluate(task, data, prompt=result)` works on the task the prompt was given (its template as
written) and on the effective task (virtual tokens already prepended, or [T] slots stripped for a
prefix): `bind` applies `softprompt.effective.effective_task` unless the task already has the
effective template. `export_peft` writes PEFT's layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from frozen_lm.errors import UserError
from frozen_lm.results import Result
from softprompt.config import METHODS
from softprompt.effective import effective_task
from softprompt.prefix import PrefixBound
from softprompt.prompt import PromptBound

ARTIFACTS = tuple(METHODS.values())  # prompt_tuning, prefix_tuning


@dataclass
class TuneResult(Result):
    """template: the effective template (the one the prompt was trained with); best_step / best_dev:
    the kept checkpoint and its dev score; steps_done; stopped: 'steps', 'early_stopping', 'nan' or
    'callback'; note: what happened on a 'nan' stop; init_ids: the tokens the prompt started from
    (None for a random init). tensors: prompt_embeddings + init_embeddings, or prefix + prefix_init."""

    module = "softprompt"
    saved_to = None  # the folder the result was last saved to (runtime only, not a field)

    template: str = ""
    best_step: int = 0
    best_dev: float | None = None
    steps_done: int = 0
    stopped: str = "steps"
    note: str | None = None
    init_ids: list[int] | None = None

    @property
    def kind(self) -> str:
        """'prompt' or 'prefix'."""
        return "prefix" if self.method == METHODS["prefix"] else "prompt"

    @property
    def metric(self) -> str:
        """The score the run reports: token_accuracy (LM loss), p_at_1 (facts) or accuracy."""
        if self.config.loss == "lm":
            return "token_accuracy"
        return "p_at_1" if self.task.label_map is None else "accuracy"

    @property
    def n_slots(self) -> int:
        """Number of prompt vectors, or the prefix length."""
        if self.kind == "prefix":
            self.require("prefix")
            return int(self.tensors["prefix"].shape[3])
        self.require("prompt_embeddings")
        return int(self.tensors["prompt_embeddings"].shape[0])

    def effective_task(self, task):
        """The task this prompt applies to: `task` itself when it has the effective template, else
        `task` transformed as tuning transformed it (prepended slots, or stripped slots + reserved positions)."""
        return effective_task(task, self.kind, self.config.num_virtual_tokens, effective=self.template,
                              length=self.n_slots)[0]

    def bind(self, task):
        self.check_model(task.lm)
        eff, lm = self.effective_task(task), task.lm
        if self.kind == "prefix":
            return PrefixBound(eff, self._prefix(lm))
        vectors = self.tensors["prompt_embeddings"]
        if vectors.shape[1] != lm.hidden_size:
            raise UserError(f"this {self.method} result has prompt vectors of size {vectors.shape[1]}, the model's "
                            f"embeddings {lm.hidden_size}; load it with --model {self.model.get('name')}")
        if eff.template.n_triggers != vectors.shape[0]:
            raise UserError(f"this {self.method} result has {vectors.shape[0]} prompt vectors, but template "
                            f"{eff.spec.template!r} has {eff.template.n_triggers} [T] slots")
        return PromptBound(eff, vectors.to(device=lm.device, dtype=lm.dtype))

    def _prefix(self, lm) -> torch.Tensor:
        kv = self.tensors["prefix"]
        if not lm.supports_prefix:
            raise UserError(f"{type(lm.model).__name__}: prefix tuning needs key/value cache support, which this "
                            "architecture lacks")
        n_layers, kv_heads, head_dim = lm.kv_layout()
        if (kv.shape[0], kv.shape[2], kv.shape[4]) != (n_layers, kv_heads, head_dim):
            raise UserError(f"this {self.method} result's prefix layout {tuple(kv.shape)} does not fit this model "
                            f"({n_layers} layers, {kv_heads} key/value heads of size {head_dim})")
        return kv.to(device=lm.device, dtype=lm.dtype)

    def export_peft(self, folder, lm=None) -> Path:
        """Write PEFT's adapter files (adapter_config.json + adapter_model.safetensors) to `folder`."""
        from softprompt.peft_export import export_peft, export_peft_prefix

        lm = lm or self.lm or _load(self.model["name"])
        self.check_model(lm)
        name = self.model.get("name") or lm.name
        if self.kind == "prefix":
            self.require("prefix")
            return export_peft_prefix(folder, self.tensors["prefix"], lm, name)
        self.require("prompt_embeddings")
        return export_peft(folder, self.tensors["prompt_embeddings"], lm, self.template, name)

    def save(self, out) -> Path:
        path = super().save(out)
        self.saved_to = path
        return path

    @classmethod
    def from_artifact(cls, art, config):
        """Package 0.1 artifacts saved the effective template as the task's and kept no 'template'."""
        result = super().from_artifact(art, config)
        if "template" not in art.results:
            result.template = result.task.template
        result.saved_to = Path(art.path)
        return result


def _load(name: str):
    from frozen_lm.model import FrozenLM

    return FrozenLM.load(name)
