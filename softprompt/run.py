"""`softprompt.tune`: train a soft prompt on a task and return a TuneResult (PEZ: a PezResult).

The task is transformed once (frozen_lm.prompts.effective: prepended virtual tokens, or a prefix's [T]
slots stripped and positions reserved), the prompt is initialized from a generator seeded with
`config.seed`, trained by the shared loop (frozen_lm.train) and scored by the shared evaluator.
A target-string task (target / target_field) always trains with its LM loss (config.loss becomes
'lm'); `--loss lm` on any other task is refused. Nothing is written unless `out` is given.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace

import torch

from frozen_lm import data as data_mod
from frozen_lm.artifact import claim_out
from frozen_lm.checkpoint import TrainCheckpoint, TrainInterrupted
from frozen_lm.errors import Interrupted, UserError
from frozen_lm.events import Callback
from frozen_lm.model import FrozenLM
from frozen_lm.results import base_fields, previous_result, resume_diffs, resumes_into
from frozen_lm.task import PromptTask
from softprompt.config import PEZ_LR_SCALE, TuneConfig
from frozen_lm.prompts.effective import effective_task
from frozen_lm.prompts.init import embedding_rms, prefix_init, prompt_init
from frozen_lm.prompts.prefix import PrefixParams
from frozen_lm.prompts.soft import SoftPrompt
from softprompt.result import TuneResult
from softprompt.train import encode_split, fit, on_device, split_metrics

logger = logging.getLogger(__name__)


def tune(task: PromptTask, train, dev=None, config: TuneConfig | None = None, *, out=None, overwrite: bool = False,
         resume=None, callback: Callback | None = None, progress: bool = True) -> TuneResult:
    """Prompt tuning (a trainable vector per [T] slot) or prefix tuning (trainable key/values at every
    layer) of `task`'s frozen model.

    train, dev: any data source (path, demo:/hf: source, list of dicts, datasets.Dataset); dev
    (optional) picks the best checkpoint and early stopping. out: an artifact folder to write (a
    folder holding another run is refused unless overwrite=True; an unwritable one before training).
    callback(event) gets a 'step' Event after every optimizer step; returning True stops the run
    (the result says status 'stopped'). Ctrl-C raises `frozen_lm.errors.Interrupted` carrying the
    best checkpoint so far (saved first when `out` is given) and the state that continues the run:
    resume (that result, or its folder) continues it with the same task, config and data, and ends
    with the result the uninterrupted run would have given (a finished run is returned as saved).
    progress: show a progress bar.
    """
    config = check_config(task, config or TuneConfig())
    previous = previous_run(resume, task, config)
    if out is not None:
        claim_out(out, overwrite, resume=resumes_into(resume, out))
    if previous is not None and previous.status == "done":
        logger.info("the saved run finished (%d steps); nothing to continue", previous.steps_done)
        if out is not None and not resumes_into(resume, out):
            previous.save(out)
        return previous
    started = time.perf_counter()
    eff, k = effective_task(task, config.placement, config.num_virtual_tokens)
    lm = task.lm
    if config.bf16 and lm.device.type != "cuda":
        logger.warning("bf16 only applies on CUDA; training in %s on %s", lm.dtype, lm.device)
    splits = {"train": train} if dev is None else {"train": train, "dev": dev}
    loaded = {name: data_mod.load(source) for name, source in splits.items()}
    examples = {name: encode_split(eff, ds, name) for name, ds in loaded.items()}
    data = {name: data_mod.describe(splits[name], ds) for name, ds in loaded.items()}
    checkpoint = saved_checkpoint(previous, data)
    if config.method == "pez":
        from softprompt.pez_run import tune_pez

        return tune_pez(task, eff, k, examples, config, data, started, out=out, callback=callback, progress=progress,
                        resume=checkpoint)
    module, ids = build_module(lm, eff, config, k)
    try:
        run = fit(module, eff, examples["train"], examples.get("dev"), config, callback=callback, progress=progress,
                  resume=checkpoint)
    except TrainInterrupted as stop:
        result = _result(task, eff, config, module, ids, stop.result, {}, data, started, "interrupted")
        with_checkpoint(result, stop.checkpoint)
        if out is not None:
            result.save(out)
        raise Interrupted(interrupted_message(stop, result, out), result) from None
    metrics = {"train": split_metrics(module, eff, on_device(examples["train"], lm.device), config.eval_batch_size)}
    if "dev" in examples:
        metrics["dev"] = run.last_metrics or split_metrics(module, eff, on_device(examples["dev"], lm.device),
                                                           config.eval_batch_size)
    result = _result(task, eff, config, module, ids, run, metrics, data, started,
                     "stopped" if run.stopped == "callback" else "done")
    if out is not None:
        result.save(out)
    return result


def previous_run(resume, task: PromptTask, config: TuneConfig) -> TuneResult | None:
    """The saved run to continue (a TuneResult or its folder), checked against this task and config."""
    previous = previous_result(resume, TuneResult, task, "tune")
    if previous is None:
        return None
    diffs = resume_diffs(previous, task, config)
    if diffs:
        raise UserError("resume: these differ from the saved run, so it would not continue the same training: "
                        + "; ".join(diffs) + " (leave them out to take the saved run's)")
    if previous.status != "done" and previous.checkpoint is None:
        raise UserError(f"{resume}: this {previous.status} run stored no training state to continue from "
                        "(only a run cut by Ctrl-C or SIGTERM does); start it again")
    return previous


def saved_checkpoint(previous: TuneResult | None, data: dict) -> TrainCheckpoint | None:
    """The training state a cut run stored (None: start from the beginning)."""
    if previous is None:
        return None
    for split, now in data.items():
        saved = previous.data.get(split, {})
        if saved.get("sha256") and saved["sha256"] != now["sha256"]:
            raise UserError(f"resume: the {split} split differs from the saved run's ({now['source']}, {now['rows']} "
                            f"rows now; {saved.get('source')}, {saved.get('rows')} rows saved); give the saved run's data")
    try:
        return TrainCheckpoint.from_saved(previous.tensors, previous.checkpoint)
    except (KeyError, ValueError, TypeError) as e:
        raise UserError(f"resume: the saved training state is damaged ({type(e).__name__}: {e}); start the run again") from None


def with_checkpoint(result: TuneResult, checkpoint: TrainCheckpoint | None, extra: dict | None = None) -> TuneResult:
    """The result of a cut run carrying what continues it (tensors 'checkpoint.*', the rest in results.json);
    extra: the method's own state, saved as the checkpoint's `extra`."""
    if checkpoint is not None:
        checkpoint = replace(checkpoint, extra={**checkpoint.extra, **(extra or {})})
        result.tensors = {**result.tensors, **checkpoint.tensors()}
        result.checkpoint = checkpoint.meta()
    return result


def interrupted_message(stop: TrainInterrupted, result: TuneResult, out) -> str:
    where = f"; the best checkpoint (step {result.best_step}) is saved in {out}" if out is not None else ""
    how = f"; continue with: autoprompt tune --resume {out}" if out is not None else "; continue with tune(..., resume=result)"
    return f"interrupted after step {stop.result.steps_done}{where}{how}"


def check_config(task: PromptTask, config: TuneConfig) -> TuneConfig:
    """The config a task trains with (UserError before any work for what cannot run): a target-string
    task always uses the LM loss (loss 'lm'); 'lm' needs one; the fluency term needs a causal LM;
    PEZ without an lr takes PEZ_LR_SCALE times the token embeddings' RMS coordinate (saved as the lr)."""
    if config.lr is None:
        config = replace(config, lr=round(PEZ_LR_SCALE * embedding_rms(task.lm), 6))
    if task.is_target and config.loss != "lm":
        logger.debug("a target-string task trains with the LM loss of its target (--loss lm)")
        config = replace(config, loss="lm")
    if config.loss == "lm" and not task.is_target:
        raise UserError("--loss lm trains on a target string: give --target TEXT or --target-field COLUMN "
                        "(the data column holding each example's target)")
    if config.fluency_weight and task.lm.is_masked:
        raise UserError("--fluency-weight scores the trigger as text the model continues; it needs a causal LM")
    return config


def timings_of(run, started: float) -> dict:
    return {"total_seconds": time.perf_counter() - started, "step_seconds": run.step_seconds,
            "step_cpu_seconds": run.step_cpu_seconds}


def _result(task, eff, config: TuneConfig, module, ids, run, metrics: dict, data: dict, started: float,
            status: str) -> TuneResult:
    best_dev = metrics["dev"].get(eff.metric) if "dev" in metrics else run.best_score
    return TuneResult(
        **base_fields(config.artifact_method, config, task, data), tensors=module.tensors(), metrics=metrics,
        history=run.history, timings=timings_of(run, started), status=status, template=eff.spec.template,
        best_step=run.best_step, best_dev=best_dev, steps_done=run.steps_done, stopped=run.stopped, note=run.note,
        init_ids=ids)


def build_module(lm: FrozenLM, task: PromptTask, cfg: TuneConfig, k: int) -> tuple[torch.nn.Module, list[int] | None]:
    """(SoftPrompt or PrefixParams, init ids or None) for the effective task, initialized from a
    generator seeded with cfg.seed."""
    g = torch.Generator().manual_seed(cfg.seed)
    if cfg.method in ("prompt", "pez"):
        vectors, ids = prompt_init(lm, task, k, cfg.init, g, cfg.truncate_init)
        if cfg.method == "pez":
            from softprompt.pez import PezPrompt, Projector

            return PezPrompt(vectors, Projector(lm, cfg.pez_metric)), ids
        return SoftPrompt(vectors), ids
    check_prefix_support(lm)
    kv, ids = prefix_init(lm, task, k, cfg.init, g, cfg.truncate_init)
    return PrefixParams(kv, cfg.prefix_projection, cfg.prefix_hidden, lm.hidden_size, g), ids


def check_prefix_support(lm: FrozenLM) -> None:
    if not lm.supports_prefix:
        raise UserError(f"{type(lm.model).__name__}: prefix tuning needs key/value cache support, "
                        "which this architecture lacks; use --method prompt")
