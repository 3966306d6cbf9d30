"""`autoprompt evaluate`: score a hand-written template or a saved artifact on any split."""

from __future__ import annotations

import logging

import torch

from frozen_lm import data as data_mod
from frozen_lm.artifact import check_model, load_artifact
from frozen_lm.errors import UserError
from frozen_lm.methods import artifact_logits_fn
from frozen_lm.model import FrozenLM
from frozen_lm.task import PromptTask, TaskConfig, evaluate

logger = logging.getLogger(__name__)


def trigger_ids_from_text(task: PromptTask, text: str | None) -> list[int] | None:
    """Token ids for the [T] slots from a text; UserError unless it has one token per slot."""
    n = task.template.n_triggers
    if n == 0:
        if text:
            raise UserError("--trigger given, but the template has no [T] slots")
        return None
    if not text:
        raise UserError(f"the template has {n} [T] slots; give --trigger with {n} tokens, or evaluate a search artifact")
    ids = task.lm.tokenizer(text, add_special_tokens=False).input_ids
    if len(ids) != n:
        pieces = task.lm.tokenizer.convert_ids_to_tokens(ids)
        raise UserError(f"--trigger {text!r} is {len(ids)} tokens {pieces}, but the template has {n} [T] slots")
    return list(ids)


def evaluate_template(cfg: TaskConfig, data: str | None, trigger: str | None, batch_size: int):
    """(metrics, notes) of a template given on the command line."""
    cfg = cfg.resolved(manual=True, data=data)
    split = data or cfg.dev
    if split is None:
        raise UserError("give --data with the split to score")
    lm = FrozenLM.load(cfg.model, cfg.device, cfg.dtype)
    task = PromptTask.from_config(lm, cfg)
    encoded = task.encode(data_mod.load(split), trigger_ids_from_text(task, trigger))
    metrics = evaluate(task, encoded, batch_size=batch_size)
    return {**metrics, "template": cfg.template, "data": split, "model": cfg.model}, encoded.notes


def evaluate_artifact(path: str, data: str | None, options: dict, batch_size: int):
    """(metrics, notes) of a saved prompt; the task options come from the artifact."""
    art = load_artifact(path)
    saved = TaskConfig(**{k: v for k, v in art.task.items() if k in TaskConfig.__dataclass_fields__})
    defaults = TaskConfig()
    for key in ("device", "dtype", "model", "multi_token"):  # the user may override these
        if options.get(key) is not None and options[key] != getattr(defaults, key):
            setattr(saved, key, options[key])
    for key in ("template", "label_map", "label_field", "text_fields"):
        if options.get(key) is not None and options[key] != getattr(saved, key):
            raise UserError(f"--{key.replace('_', '-')} cannot change a saved prompt's task; it was {getattr(saved, key)!r}")
    split = data or saved.dev
    lm = FrozenLM.load(saved.model, saved.device, saved.dtype)
    check_model(art, lm)
    task = PromptTask.from_config(lm, saved)
    logits_fn = artifact_logits_fn(art, lm, task)
    encoded = task.encode(data_mod.load(split))
    with torch.no_grad():
        metrics = evaluate(task, encoded, logits_fn, batch_size=batch_size)
    return {**metrics, "artifact": str(path), "method": art.method, "data": split, "model": saved.model}, encoded.notes
