"""TuneResult: a trained soft prompt (prompt vectors or prefix key/values), how it trained, and how
to apply it to a task; PezResult: the discrete prompt PEZ found.

`evaluate(task, data, prompt=result)` works on the task the prompt was given (its template as
written) and on the effective task (virtual tokens already prepended, or [T] slots stripped for a
prefix): `bind` applies `frozen_lm.prompts.effective.effective_task` unless the task already has the
effective template. `export_peft` writes PEFT's layout.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from frozen_lm.errors import UserError
from frozen_lm.prompts.effective import ReadingPrompt, effective_task
from frozen_lm.prompts.prefix import PrefixBound
from frozen_lm.prompts.soft import PromptBound
from frozen_lm.results import TrainedResult
from frozen_lm.transfer import TextPrompt

KINDS = {"prompt_tuning": "prompt", "prefix_tuning": "prefix"}  # artifact method names before 0.3 -> method


@dataclass
class TuneResult(TrainedResult):
    """template: the effective template (the one the prompt was trained with); best_step / best_dev:
    the kept checkpoint and its dev score; steps_done; stopped: 'steps', 'early_stopping', 'nan',
    'callback', 'interrupted', or 'running' (the best-so-far artifact of a run still going); note: what happened on a 'nan' stop; init_ids: the tokens the prompt started from
    (None for a random init). tensors: prompt_embeddings + init_embeddings, or prefix + prefix_init
    (an interrupted run adds its training state, 'checkpoint.*', described by `checkpoint`).
    metrics: 'train' and 'dev' from the shared evaluator (target strings add 'score', the dev ranking:
    exact match, ties broken by the per-token probability exp(-loss))."""

    module = "softprompt"

    init_ids: list[int] | None = None
    checkpoint: dict | None = None  # an interrupted run's training state (with tensors 'checkpoint.*'): resume= continues it

    @property
    def kind(self) -> str:
        """'prompt', 'prefix' or 'pez': the method's name."""
        return KINDS.get(self.method, self.method)

    @property
    def n_slots(self) -> int:
        """Number of prompt vectors, or the prefix length."""
        if self.kind == "prefix":
            self.require("prefix")
            return int(self.tensors["prefix"].shape[3])
        self.require("prompt_embeddings")
        return int(self.tensors["prompt_embeddings"].shape[0])

    def task_tensors(self) -> dict[str, torch.Tensor]:
        """The prompt vectors or the prefix (the initial values the artifact also keeps are not needed to apply it)."""
        name = "prefix" if self.kind == "prefix" else "prompt_embeddings"
        self.require(name)
        return {name: self.tensors[name]}

    def effective_task(self, task):
        """The task this prompt applies to: `task` itself when it has the effective template, else
        `task` transformed as tuning transformed it (prepended slots, or stripped slots + reserved positions)."""
        return effective_task(task, self.config.placement, self.config.num_virtual_tokens, effective=self.template,
                              length=self.n_slots)[0]

    def bind(self, task):
        self.check_model(task.lm)
        eff, lm = self.effective_task(task), task.lm
        if self.kind == "prefix":
            return PrefixBound(eff, self._prefix(lm))
        vectors = self.tensors["prompt_embeddings"]
        if vectors.shape[1] != lm.hidden_size:
            raise UserError(f"this {self.method} result has prompt vectors of size {vectors.shape[1]}, the model's "
                            f"embeddings {lm.hidden_size}; load it with model {self.model.get('name')!r}")
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

    @classmethod
    def from_artifact(cls, art, config):
        """Package 0.1 artifacts saved the effective template as the task's and kept no 'template';
        artifacts of the old lm loss kept the target column in the config (`target_field`): it moves
        into the task (which then has no label words)."""
        result = super().from_artifact(art, config)
        if "template" not in art.results:
            result.template = result.task.template
        old_target = art.meta["config"].get("target_field")
        if old_target and result.task.target is None and result.task.target_field is None:
            result.task = replace(result.task, target_field=old_target, label_map=None)
        result.saved_to = Path(art.path)
        return result


@dataclass
class PezResult(TuneResult):
    """A discrete prompt found by PEZ: `trigger_ids` (tensors, and here with their token texts) for
    the [T] slots of the effective template; `bind` writes them into those slots, so it scores as a
    found trigger. tensors: trigger_ids, prompt_embeddings (the continuous vectors after the last
    step; they need not project onto trigger_ids) and init_embeddings. metrics['prompt_perplexity']:
    exp(-mean log p(trigger token | everything before it)) over the dev rows (train rows without a
    dev split; None on a masked LM)."""

    trigger_tokens: list[str] = field(default_factory=list)
    trigger_text: str = ""
    filled_template: str = ""

    @property
    def prompt(self) -> ReadingPrompt:
        """The found trigger as a DiscretePrompt for the [T] slots of the effective template; it binds
        to the task the run was given too (prepending the virtual-token slots as tuning did)."""
        self.require("trigger_ids")
        return ReadingPrompt([int(i) for i in self.tensors["trigger_ids"]], list(self.trigger_tokens),
                             self.trigger_text, self.template, self.config.num_virtual_tokens)

    @property
    def n_slots(self) -> int:
        self.require("trigger_ids")
        return int(self.tensors["trigger_ids"].shape[0])

    def task_tensors(self) -> dict[str, torch.Tensor]:
        """The discrete prompt's token ids (its continuous vectors are not needed to apply it)."""
        self.require("trigger_ids")
        return {"trigger_ids": self.tensors["trigger_ids"]}

    def bind(self, task):
        self.check_model(task.lm)
        return self.prompt.bind(task)

    def as_text(self) -> TextPrompt:
        """The found tokens as text in the effective template's [T] slots (frozen_lm.transfer)."""
        p = self.prompt
        return TextPrompt.from_tokens(self.template, p.trigger_ids, p.tokens, p.text)

    def export_peft(self, folder, lm=None) -> Path:
        raise UserError("a pez result is a discrete prompt, not PEFT vectors; evaluate its trigger "
                        f"({self.trigger_text!r}) as it is: frozen_lm.evaluate(task, data, prompt=result)")


def _load(name: str):
    from frozen_lm.model import FrozenLM

    return FrozenLM.load(name)
