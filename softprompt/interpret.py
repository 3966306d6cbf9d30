"""`autoprompt nearest`: load a prompt-tuning artifact, describe its vectors, score its discrete reading."""

from __future__ import annotations

import logging

import torch

from frozen_lm import data as data_mod
from frozen_lm.artifact import check_model, load_artifact
from frozen_lm.errors import UserError
from frozen_lm.model import FrozenLM
from frozen_lm.task import PromptTask, TaskConfig, evaluate
from softprompt.apply import artifact_logits_fn, prompt_vectors
from softprompt.nearest import describe, discrete_trigger, evaluate_command

logger = logging.getLogger(__name__)


def load_for(path, model: str | None = None):
    """(artifact, lm, task, task config) with the model checked against the artifact."""
    art = load_artifact(path)
    if art.method not in ("prompt_tuning", "prefix_tuning"):
        raise UserError(f"{path}: method {art.method!r} is not a soft prompt (tune artifacts only)")
    if art.method == "prefix_tuning":
        raise UserError(f"{path}: a prefix_tuning artifact holds key/values, not vectors in the embedding space; "
                        "nearest tokens exist for prompt_tuning artifacts")
    cfg = TaskConfig(**{k: v for k, v in art.task.items() if k in TaskConfig.__dataclass_fields__})
    if model:
        cfg.model = model
    lm = FrozenLM.load(cfg.model, cfg.device, cfg.dtype)
    check_model(art, lm)
    return art, lm, PromptTask.from_config(lm, cfg), cfg


def interpret(path, k: int, metric: str, keep_special: bool = False, do_evaluate: bool = False,
              data: str | None = None, batch_size: int = 32, model: str | None = None) -> dict:
    """Nearest tokens per vector, norms, drift; the discrete reading and, with do_evaluate, both scores."""
    art, lm, task, cfg = load_for(path, model)
    vectors = prompt_vectors(art, lm, task).float().cpu()
    init = art.tensors.get("init_embeddings")
    slots = describe(lm, vectors, init, k, metric, keep_special)
    ids, text, round_trips = discrete_trigger(lm, slots)
    report = {"method": art.method, "slots": slots, "trigger_ids": ids, "trigger_text": text,
              "trigger_tokens": lm.tokenizer.convert_ids_to_tokens(ids), "trigger_round_trips": round_trips,
              "command": evaluate_command(vars(cfg), text, data)}
    if do_evaluate:
        split = data or cfg.dev
        if split is None:
            raise UserError("--evaluate needs --data (the artifact has no dev split)")
        report["data"] = split
        report["scores"] = score_both(art, lm, task, split, ids, batch_size)
    return report


@torch.no_grad()
def score_both(art, lm: FrozenLM, task: PromptTask, split: str, trigger_ids: list[int], batch_size: int) -> list[dict]:
    """Rows of the evaluator's metrics for the soft prompt and for its nearest-token reading."""
    dataset = data_mod.load(split)
    soft = evaluate(task, task.encode(dataset), artifact_logits_fn(art, lm, task), batch_size)
    hard = evaluate(task, task.encode(dataset, trigger_ids), batch_size=batch_size)
    return [{"prompt": "soft (learned vectors)", **soft}, {"prompt": "discrete (nearest tokens)", **hard}]
