"""What the runner (frozen_lm.runner) calls for intrinsic_dim: `prepare` (what the config needs of the
model and template, before any work) and `fit(run)`, the measurement on a prepared run.

The runner loads the splits, checks a resumed run (model, task, data, config except
IntrinsicDimConfig.RESUMABLE), claims the out folder and writes the artifact; `fit` samples
config.max_train / max_dev examples, checks what only it knows (the prompt in the [T] slots and a
resumed run's prompt and theta_0), and measures (intrinsic_dim.measurement). It checkpoints the
result after every finished run and raises `RunInterrupted` with the runs done so far on Ctrl-C.
The prompt that fills [T] slots in model space comes as `run.inputs["prompt"]` (a DiscretePrompt,
trigger text or a search result; default on resume: the saved run's).
"""

from __future__ import annotations

import logging

from frozen_lm.configs import name_of
from frozen_lm.encode import Rows
from frozen_lm.errors import UserError
from frozen_lm.evaluate import DiscretePrompt
from frozen_lm.prompts.effective import effective_task
from frozen_lm.prompts.prefix import check_prefix_support
from frozen_lm.runner import Run, RunInterrupted
from frozen_lm.task import PromptTask
from intrinsic_dim.cma import load_cmaes
from intrinsic_dim.config import IntrinsicDimConfig
from intrinsic_dim.measurement import Measurement
from intrinsic_dim.result import D90Result
from intrinsic_dim.resume import check_inputs, restore
from intrinsic_dim.spaces import make_objective

logger = logging.getLogger(__name__)


def prepare(task: PromptTask, config: IntrinsicDimConfig, splits: dict) -> tuple[PromptTask, IntrinsicDimConfig]:
    """UserError, before any work, for a model or template the space cannot use (quantized or spread
    weights in model space; no [T] slots for a prompt, no key/value cache for a prefix) and for a
    missing cmaes package; the task and config as given."""
    if config.space == "model":
        check_movable(task.lm, config)
    else:
        effective_task(task, config.space, config.num_virtual_tokens)  # (refuses a template without slots)
        if config.space == "prefix":
            check_prefix_support(task.lm)
    if config.optimizer == "cma":
        load_cmaes()
    return task, config


def fit(run: Run) -> D90Result:
    """Measure d90 on the run's splits; status 'done', or 'stopped' when the callback stopped the sweep."""
    task, config, previous = run.task, run.config, run.previous
    prompt = run.inputs.get("prompt")
    if previous is not None and prompt is None and previous.trigger_ids:
        prompt = DiscretePrompt.from_ids(task.lm.tokenizer, previous.trigger_ids)  # the saved run's
    trigger = prompt_ids(task, prompt, config) if config.space == "model" else _no_prompt(config, prompt)
    if run.out is not None and config.plot:
        from intrinsic_dim.plot import pyplot

        pyplot()  # no matplotlib: say so before any training
    objective, base = make_objective(task, config)
    restored = None
    if previous is not None:
        check_inputs(previous, trigger, next(iter(base.values())) if config.space != "model" else None)
        restored = restore(previous, task.lm.device)
    train, dev = (encode(objective.task, run.splits[split], limit, config.seed, trigger, split)
                  for split, limit in (("train", config.max_train), ("dev", config.max_dev)))
    job = Measurement(run, objective, base, train, dev, trigger, restored)
    try:
        job.run(run.progress)
    except KeyboardInterrupt:
        raise RunInterrupted(job.result("interrupted"), f"after {job.finished} finished subspace runs") from None
    return job.result("stopped" if job.stopped else "done")


def encode(task: PromptTask, data, limit: int | None, seed: int, trigger: list[int] | None, split: str) -> Rows:
    """A split's rows on the model's device: at most `limit` examples (a seeded sample), the trigger
    ids in the [T] slots."""
    encoded = task.encode(data.sample(limit, seed), trigger)
    for note in encoded.notes:
        logger.info("%s: %s", split, note)
    return encoded.rows.to(task.lm.device)


def check_movable(lm, config: IntrinsicDimConfig) -> None:
    """UserError when model space cannot move the weights: bitsandbytes-quantized ones, or ones spread
    over several devices or offloaded by a device map."""
    space = name_of(config, "space")
    if getattr(lm, "quantized", None):
        raise UserError(f"{space} model moves the model's weights, which are {lm.quantized}-quantized (bitsandbytes) "
                        "and cannot take theta_0 + P(theta_d); load the model without quantize= (e.g. dtype="
                        f"'bfloat16'), or use {space} prompt / prefix")
    if getattr(lm, "sharded", False) or getattr(lm, "offloaded", False):
        raise UserError(f"{space} model moves the model's weights, which a device_map spread over several devices "
                        "(theta_0 + P(theta_d) is built on one); use one device (dtype='bfloat16', or several "
                        f"processes with torchrun), or {space} prompt / prefix")


def prompt_ids(task: PromptTask, prompt, config: IntrinsicDimConfig) -> list[int] | None:
    """The trigger ids that fill the template's [T] slots; UserError when slots and prompt disagree."""
    n = task.template.n_triggers
    if prompt is None:
        if n:
            raise UserError(f"template {task.spec.template!r} has {n} [T] slots and intrinsic_dim trains weights, "
                            "not prompt slots: give prompt= (a DiscretePrompt, trigger text or a search result) "
                            f"to fill them, remove [T] from the template, or train the slots with "
                            f"{name_of(config, 'space')} prompt")
        return None
    if not n:
        raise UserError(f"a prompt was given, but template {task.spec.template!r} has no [T] slots to fill")
    if isinstance(prompt, str):
        prompt = DiscretePrompt.from_text(task, prompt)
    ids = getattr(prompt, "trigger_ids", None)
    if ids is None and hasattr(prompt, "bind"):
        ids = getattr(prompt.bind(task), "trigger_ids", None)
    if ids is None:
        raise UserError(f"intrinsic_dim fills [T] slots with trigger tokens only (a DiscretePrompt, trigger text or "
                        f"a search result); a {type(prompt).__name__} has none")
    ids = [int(i) for i in ids]
    if len(ids) != n:
        raise UserError(f"the prompt has {len(ids)} trigger tokens, but template {task.spec.template!r} has {n} [T] slots")
    return ids


def _no_prompt(config: IntrinsicDimConfig, prompt) -> None:
    if prompt is not None:
        raise UserError(f"{name_of(config, 'space')} {config.space} trains the prompt itself; prompt= fills [T] slots "
                        "with tokens only in model space (leave it out)")
    return None
