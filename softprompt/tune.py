"""`autoprompt tune`: resolve the template, build the soft prompt, train it, save the artifact.

Virtual-token placement: `--num-virtual-tokens K` glues K `[T]` slots to the front of the template
(no space added, so the text after them tokenizes exactly as without them). They come right after
any special tokens the tokenizer itself puts in front of a text (BERT's [CLS], a Llama-2 style
<s>). PEFT puts its virtual tokens before everything, BOS included; for tokenizers that add no BOS
(SmolLM2, GPT-2) the two placements are identical, and `--export-peft` warns when they differ. We
keep the slots after BOS so that a soft prompt and its discrete reading (`autoprompt evaluate
--trigger ...`) are encoded the same way.

Prefix tuning: the prefix length is --num-virtual-tokens, else the template's number of [T] slots;
the slots are then removed from the template (the prefix is attended before every token).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import torch

from frozen_lm import data as data_mod
from frozen_lm.artifact import save_artifact
from frozen_lm.errors import UserError
from frozen_lm.model import FrozenLM
from frozen_lm.task import PromptTask, TaskConfig
from frozen_lm.templates import Template
from softprompt.config import TuneConfig, strip_triggers
from softprompt.init import prefix_init, prompt_init
from softprompt.prefix import PrefixParams, reserve_positions
from softprompt.prompt import SoftPrompt
from softprompt.targets import Examples, encode_targets
from softprompt.train import TrainResult, score, train

logger = logging.getLogger(__name__)


@dataclass
class TuneOutput:
    module: object
    task: PromptTask
    task_config: TaskConfig
    result: TrainResult
    metrics: dict
    init_ids: list[int] | None


def effective_template(template: str, cfg: TuneConfig) -> tuple[str, int]:
    """(the template the prompt is trained and saved with, number of trainable positions)."""
    n = Template.parse(template).n_triggers
    if cfg.method == "prefix":
        length = cfg.num_virtual_tokens or n
        if length == 0:
            raise UserError(f"template {template!r} has no [T] slots; give --num-virtual-tokens K for the prefix length")
        if n:
            logger.info("prefix tuning: the template's %d [T] slots are removed; the prefix is %d key/values", n, length)
        return strip_triggers(template), length
    if cfg.num_virtual_tokens:
        return "[T]" * cfg.num_virtual_tokens + template, n + cfg.num_virtual_tokens
    if n == 0:
        raise UserError(f"template {template!r} has no [T] slots; put [T] where prompt vectors go, "
                        "or give --num-virtual-tokens K to prepend K of them")
    return template, n


def resolve_task(task_cfg: TaskConfig, cfg: TuneConfig) -> tuple[TaskConfig, int]:
    resolved = task_cfg.resolved(manual=cfg.num_virtual_tokens is not None and task_cfg.template is None)
    template, k = effective_template(resolved.template, cfg)
    return replace(resolved, template=template), k


def build_module(lm: FrozenLM, task: PromptTask, cfg: TuneConfig, k: int, seed: int):
    """(SoftPrompt or PrefixParams, init ids or None), initialized from a generator seeded by `seed`."""
    g = torch.Generator().manual_seed(seed)
    if cfg.method == "prompt":
        vectors, ids = prompt_init(lm, task, k, cfg.init, g, cfg.truncate_init)
        return SoftPrompt(vectors), ids
    if not lm.supports_prefix:
        raise UserError(f"{type(lm.model).__name__}: prefix tuning needs key/value cache support, "
                        "which this architecture lacks; use --method prompt")
    kv, ids = prefix_init(lm, task, k, cfg.init, g, cfg.truncate_init)
    return PrefixParams(kv, cfg.prefix_projection, cfg.prefix_hidden, lm.hidden_size, g), ids


def load_split(task: PromptTask, source: str, cfg: TuneConfig) -> Examples:
    data = data_mod.load(source)
    if cfg.loss == "lm":
        return encode_targets(task, data, cfg.target_field)
    encoded = task.encode(data)
    for note in encoded.notes:
        logger.info("%s: %s", source, note)
    return Examples(encoded.rows)


def run_tune(task_cfg: TaskConfig, cfg: TuneConfig, seed: int = 0, lm: FrozenLM | None = None) -> TuneOutput:
    """Train a soft prompt; returns the trained module (best checkpoint) and its metrics."""
    task_cfg, k = resolve_task(task_cfg, cfg)
    lm = lm or FrozenLM.load(task_cfg.model, task_cfg.device, task_cfg.dtype)
    if cfg.bf16 and lm.device.type != "cuda":
        logger.warning("--bf16 only applies on CUDA; training in %s on %s", lm.dtype, lm.device)
    task = PromptTask.from_config(lm, task_cfg)
    if cfg.method == "prefix":
        reserve_positions(task, k)
    train_data = load_split(task, task_cfg.train, cfg)
    dev_data = load_split(task, task_cfg.dev, cfg) if task_cfg.dev else None
    module, ids = build_module(lm, task, cfg, k, seed)
    result = train(module, lm, task, train_data, dev_data, cfg, seed)
    metrics = {"train": score(module, lm, task, train_data, cfg.eval_batch_size)}
    if dev_data is not None:
        metrics["dev"] = score(module, lm, task, dev_data, cfg.eval_batch_size)
    return TuneOutput(module, task, task_cfg, result, metrics, ids)


def save_tune(out_dir, output: TuneOutput, cfg: TuneConfig, lm: FrozenLM, seed: int, seconds: float):
    """Write the artifact directory (weights folded, init tensors kept for `nearest`)."""
    r = output.result
    results = {"metrics": output.metrics, "history": r.history, "best_step": r.best_step,
               "best_dev": r.best_score, "steps_done": r.steps_done, "stopped": r.stopped, "note": r.note,
               "init_ids": output.init_ids, "timings": {"total_seconds": seconds, "step_seconds": r.step_seconds}}
    return save_artifact(out_dir, cfg.artifact_method, cfg, output.task_config, lm, seed,
                         output.module.tensors(), results)
