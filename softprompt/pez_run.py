"""`tune(..., TuneConfig(method="pez"))` after the shared preparation (softprompt.run): build the
PEZ prompt, train it (softprompt.pez_fit), and return the best discrete prompt as a PezResult.

metrics: 'train' and 'dev' of the kept discrete prompt (the shared evaluator's keys, plus 'loglik'
or, for target strings, 'score'), and 'prompt_perplexity' of that prompt over the dev rows (the
train rows without a dev split; None on a masked LM).
"""

from __future__ import annotations

import logging

import torch

from frozen_lm.checkpoint import TrainCheckpoint, TrainInterrupted
from frozen_lm.errors import Interrupted
from frozen_lm.evaluate import DiscretePrompt
from frozen_lm.events import Callback
from frozen_lm.fluency import prompt_perplexity
from frozen_lm.results import base_fields
from frozen_lm.task import Encoded, PromptTask
from softprompt.config import TuneConfig
from softprompt.pez_fit import PezFit, discrete_metrics
from softprompt.result import PezResult
from softprompt.run import build_module, interrupted_message, timings_of, with_checkpoint
from softprompt.train import loss_kind

logger = logging.getLogger(__name__)


def tune_pez(task: PromptTask, eff: PromptTask, k: int, examples: dict[str, Encoded], config: TuneConfig, data: dict,
             started: float, *, out=None, callback: Callback | None = None, progress: bool = False,
             resume: TrainCheckpoint | None = None) -> PezResult:
    """Train PEZ on the effective task `eff` (k slots) with encoded splits; see `softprompt.tune`.
    resume: the training state of a cut run (its checkpoint meta also holds the kept prompt's record)."""
    module, init = build_module(task.lm, eff, config, k)
    fitter = PezFit(module, eff, examples["train"], examples.get("dev"), config)
    try:
        run = fitter.run(callback, progress, resume=resume)
    except TrainInterrupted as stop:
        result = pez_result(task, eff, config, fitter, stop.result, {}, data, started, init, "interrupted")
        with_checkpoint(result, stop.checkpoint, {"pez": fitter.state()})
        if out is not None:
            result.save(out)
        raise Interrupted(interrupted_message(stop, result, out), result) from None
    ids = fitter.kept_ids()
    metrics = {"train": split_scores(eff, examples["train"], ids, config)}
    if "dev" in examples:
        metrics["dev"] = fitter.kept_metrics() or split_scores(eff, examples["dev"], ids, config)
    rows = examples.get("dev", examples["train"]).rows
    metrics["prompt_perplexity"] = prompt_perplexity(task.lm, rows, ids, config.eval_batch_size)
    result = pez_result(task, eff, config, fitter, run, metrics, data, started, init,
                        "stopped" if run.stopped == "callback" else "done")
    logger.info("pez: %r, dev %s", result.filled_template, metrics.get("dev", {}).get(eff.metric))
    if out is not None:
        result.save(out)
    return result


def split_scores(task: PromptTask, data: Encoded, ids: torch.Tensor, config: TuneConfig) -> dict:
    rows = Encoded(data.rows.to(task.lm.device), data.n_skipped, data.n_multi_token)
    return discrete_metrics(task, rows, ids, config.eval_batch_size, loss_kind(config), config.fluency_weight)[0]


def pez_result(task, eff, config: TuneConfig, fitter: PezFit, run, metrics: dict, data: dict, started: float,
               init: list[int] | None, status: str) -> PezResult:
    ids = fitter.kept_ids()
    prompt = DiscretePrompt.from_ids(task.lm.tokenizer, ids)
    best_dev = metrics["dev"].get(eff.metric) if "dev" in metrics else None
    return PezResult(
        **base_fields(config.artifact_method, config, task, data), tensors=fitter.module.tensors(ids),
        metrics=metrics, history=run.history, timings=timings_of(run, started), status=status,
        template=eff.spec.template, best_step=fitter.best_step, best_dev=best_dev, steps_done=run.steps_done,
        stopped=run.stopped, note=run.note, init_ids=init, trigger_tokens=prompt.tokens, trigger_text=prompt.text,
        filled_template=prompt.filled(eff))
