"""Results: what every method returns, saves and loads, and what `evaluate(prompt=...)` scores.

`Result` holds what makes a run reproducible (the method's config with its seed, the task spec, the
model, where the data came from, the versions) and what it produced (tensors, metrics, history,
timings, status). A method subclasses it with its own fields and `bind(task)`. `save(dir)` writes
the artifact; `load_result(dir)` reads any method's artifact back as its result class.

Fields of a subclass go to results.json; `tensors` to weights.safetensors; the rest to config.json;
README.md is the model card made from them (frozen_lm.card; a method adds lines with `card_lines`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import torch

from frozen_lm import configs
from frozen_lm.artifact import Artifact, check_model, model_info, read_artifact, versions, write_artifact
from frozen_lm.card import model_card
from frozen_lm.errors import UserError
from frozen_lm.task import PromptTask, TaskSpec

logger = logging.getLogger(__name__)
_META_FIELDS = ("method", "config", "task", "model", "data", "versions", "tensors", "lm")


@dataclass
class Result:
    """Base class of every method's result.

    method: the artifact method name; config: the method's config dataclass (with its seed); task:
    the task spec the run was given; model: name and shape of the model; data: the splits' sources,
    sizes and hashes; tensors: what weights.safetensors holds; metrics/history/timings: what the
    run measured; status: 'done', 'stopped' (by a callback), 'interrupted' or 'running'. lm: the
    model the run used, kept in memory for follow-up calls (None after `load_result`).
    """

    module: ClassVar[str] = ""  # the package that registers this method (imported by load_result)

    method: str
    config: Any
    task: TaskSpec
    model: dict
    data: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    tensors: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    metrics: dict = field(default_factory=dict)
    history: list = field(default_factory=list, repr=False)
    timings: dict = field(default_factory=dict)
    status: str = "done"
    lm: Any = field(default=None, repr=False, compare=False)  # the FrozenLM of the run (not saved)
    weights_missing: ClassVar[bool] = False  # set on a loaded result whose weights.safetensors was not there

    # ---------------------------------------------------------------- facts
    @property
    def seed(self) -> int:
        return self.config.seed

    def task_for(self, lm, **changes) -> PromptTask:
        """The task this result was made with, on `lm` (checked against the saved model); `changes`
        override spec fields such as multi_token."""
        self.check_model(lm)
        spec = TaskSpec(**{**asdict(self.task), **changes})
        return PromptTask.from_spec(lm, spec)

    def check_model(self, lm) -> None:
        check_model(self.model, lm, f"this {self.method} result")

    def bind(self, task: PromptTask):
        """The prompt applied to `task` (a frozen_lm.evaluate.Bound); every method implements it."""
        raise NotImplementedError

    def as_text(self):
        """The prompt as text any model can read (a frozen_lm.transfer.TextPrompt), or None when it
        is tensors tied to its model (a soft prompt, a prefix, weights: the default). Discrete
        prompts implement it, so `evaluate` carries them to a task on another model."""
        return None

    # ---------------------------------------------------------------- files
    def save(self, out) -> Path:
        """Write the artifact directory `out` (created if needed); returns its path."""
        meta = {"method": self.method, "module": self.module, "config": configs.to_dict(self.config),
                "seed": self.seed, "task": self.task.to_dict(), "model": self.model, "data": self.data,
                "versions": self.versions or versions()}
        extra = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _META_FIELDS}
        results = {**extra, "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        card = model_card(meta, results, Path(out).resolve().name, self.card_lines())
        return write_artifact(out, meta, self.tensors, results, card)

    def card_lines(self) -> list[str]:
        """Lines a method adds to its artifact's README.md (model card), e.g. the prompt it found as
        text; markdown. None by default."""
        return []

    @classmethod
    def from_artifact(cls, art: Artifact, config) -> Result:
        """Build this class from a read artifact (subclasses add what older formats lack)."""
        names = {f.name for f in fields(cls) if f.init and f.name not in _META_FIELDS}
        extra = {k: v for k, v in art.results.items() if k in names}
        return cls(method=art.method, config=config, task=TaskSpec.from_dict(art.meta["task"]), model=art.meta["model"],
                   data=art.meta.get("data", {}), versions=art.meta.get("versions", {}), tensors=art.tensors, **extra)

    @classmethod
    def load(cls, path) -> Result:
        """Read an artifact directory written by `save` (any method when called on Result)."""
        return load_result(path)

    def task_tensors(self) -> dict[str, torch.Tensor]:
        """The tensors a task keeps to apply this result beside the shared frozen model (what `bind`
        reads): the artifact's tensors without an interrupted run's training state. Methods whose
        artifacts also keep other tensors (a soft prompt's initial values, for drift) narrow this."""
        return {k: v for k, v in self.tensors.items() if not k.startswith("checkpoint.")}

    def require(self, *names: str) -> None:
        """UserError naming the first tensor this result needs that its artifact lacks."""
        for name in names:
            if name not in self.tensors:
                if self.weights_missing:
                    raise UserError(f"this {self.method} result's weights.safetensors is missing (deleted or not copied "
                                    "with the folder); restore the file, or rerun")
                raise UserError(f"this {self.method} result has no '{name}' tensor; its weights.safetensors "
                                "is incomplete (rerun, or restore the file)")


def load_result(path) -> Result:
    """Read any method's artifact directory as that method's result class."""
    from frozen_lm.methods import for_artifact

    art = read_artifact(path)
    saved = dict(art.meta["config"])
    method = for_artifact(art.method, saved, art.meta.get("module") or None, str(art.path))
    upgrade = getattr(method.config, "upgrade", None)  # a config class's own reading of older versions' fields
    values = {**(upgrade(saved) if upgrade else saved), "seed": art.meta.get("seed", saved.get("seed", 0))}
    try:
        config = configs.from_dict(method.config, values, strict=False)
    except UserError as e:
        raise UserError(f"{art.path}: the saved config is not valid ({e})") from None
    art.meta["method"] = method.name
    try:
        result = method.result.from_artifact(art, config)
        result.weights_missing = art.weights_missing
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, UserError):
            raise
        raise UserError(f"{art.path}: the artifact is damaged ({type(e).__name__}: {e})") from None
    if result.status in ("running", "interrupted"):
        logger.info("%s: the run was %s; this is its best-so-far state", path, result.status)
    return result


def base_fields(method: str, config, task: PromptTask, data: dict | None = None) -> dict:
    """The Result fields every run fills the same way (frozen_lm.runner.Run.fields calls this)."""
    return {"method": method, "config": config, "task": task.spec, "model": model_info(task.lm),
            "data": dict(data or {}), "versions": versions(), "lm": task.lm}


@dataclass
class TrainedResult(Result):
    """A result of the shared training loop (frozen_lm.train): template: the template it trained on;
    best_step / best_dev: the kept checkpoint and its dev score; steps_done; stopped: 'steps',
    'early_stopping', 'nan', 'callback' or 'interrupted'; note: what happened on a 'nan' stop."""

    saved_to = None  # the folder the result was last saved to (runtime only, not a field)

    template: str = ""
    best_step: int = 0
    best_dev: float | None = None
    steps_done: int = 0
    stopped: str = "steps"
    note: str | None = None

    @property
    def metric(self) -> str:
        """The score the run reports: exact_match (target strings), p_at_1 (facts) or accuracy."""
        if self.task.target is not None or self.task.target_field is not None:
            return "exact_match"
        return "p_at_1" if self.task.label_map is None else "accuracy"

    def save(self, out) -> Path:
        path = super().save(out)
        self.saved_to = path
        return path
