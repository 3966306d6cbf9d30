"""What the runner (frozen_lm.runner) calls for prompt tuning, prefix tuning and PEZ: `prepare_*`
(checks and model-dependent defaults, before any work), `check_resume`, and `fit_prompt`,
`fit_prefix`, `fit_pez` (the training on a prepared run).

The task is transformed once (frozen_lm.prompts.effective: prepended virtual tokens, or a prefix's [T]
slots stripped and positions reserved), the prompt is initialized from a generator seeded with
`config.seed`, trained by the shared loop (frozen_lm.train) and scored by the shared evaluator.
A target-string task (target / target_field) always trains with its LM loss (config.loss becomes
'lm'). Whenever dev finds a better state the best-so-far artifact is written (`run.checkpoint`,
status 'running'); Ctrl-C raises `RunInterrupted` with the best state and the training state that
continues the run (`resume=`), which then ends as the uninterrupted run would have.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import torch

from frozen_lm.checkpoint import TrainCheckpoint
from frozen_lm.configs import field_error
from frozen_lm.errors import UserError
from frozen_lm.evaluate import DiscretePrompt
from frozen_lm.fluency import prompt_perplexity
from frozen_lm.model import FrozenLM
from frozen_lm.prompts.effective import effective_task
from frozen_lm.prompts.init import embedding_rms, prefix_init, prompt_init
from frozen_lm.prompts.prefix import PrefixParams, check_prefix_support
from frozen_lm.prompts.soft import SoftPrompt
from frozen_lm.runner import Run, RunInterrupted
from frozen_lm.task import Encoded, PromptTask
from frozen_lm.train import TrainInterrupted, TrainResult
from softprompt.config import PEZ_LR_SCALE, PezConfig, PrefixTuningConfig, SoftPromptOptions
from softprompt.pez import PezPrompt, Projector
from softprompt.pez_fit import Kept, PezFit, split_scores
from softprompt.result import PezResult, TuneResult
from softprompt.train import encode_split, on_device, split_metrics, train_module

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------ before any work
def prepare(task: PromptTask, config: SoftPromptOptions, splits: dict | None = None
            ) -> tuple[PromptTask, SoftPromptOptions]:
    """The config a task trains with (UserError, naming the field, for what cannot run): a target-
    string task always uses the LM loss (loss 'lm'), and 'lm' needs one; a template without slots
    for the prompt fails here. The task is returned as given (the run saves it; the prompt's
    effective task is derived from it)."""
    if task.is_target and config.loss != "lm":
        logger.debug("a target-string task trains with the LM loss of its target (loss 'lm')")
        config = replace(config, loss="lm")
    if config.loss == "lm" and not task.is_target:
        raise field_error(config, "loss", "'lm' trains on a target string: give the task a target "
                          "(PromptTask target= or target_field=, the data column holding each example's target)")
    effective_task(task, config.placement, config.num_virtual_tokens)
    return task, config


def prepare_prefix(task: PromptTask, config: PrefixTuningConfig, splits: dict | None = None):
    """`prepare`, and a model without a key/value cache is refused."""
    check_prefix_support(task.lm)
    return prepare(task, config, splits)


def prepare_pez(task: PromptTask, config: PezConfig, splits: dict | None = None):
    """`prepare`; without an lr, PEZ takes PEZ_LR_SCALE times the token embeddings' RMS coordinate
    (saved as the lr); the fluency term needs a causal LM."""
    if config.lr is None:
        config = replace(config, lr=round(PEZ_LR_SCALE * embedding_rms(task.lm), 6))
    task, config = prepare(task, config, splits)
    if config.fluency_weight and task.lm.is_masked:
        raise field_error(config, "fluency_weight", "scores the trigger as text the model continues; it needs a "
                          "causal LM")
    return task, config


def check_resume(previous: TuneResult, config: SoftPromptOptions) -> None:
    """A run that is not done continues only from the training state a cut run stored."""
    if previous.status != "done" and previous.checkpoint is None:
        where = previous.saved_to or "resume"
        raise UserError(f"{where}: this {previous.status} run stored no training state to continue from "
                        "(only a run cut by Ctrl-C or SIGTERM does); start it again")


# ------------------------------------------------------------------ shared steps
def start(run: Run) -> tuple[PromptTask, int, dict[str, Encoded], TrainCheckpoint | None]:
    """(the effective task, its number of trainable positions, the encoded train/dev splits, the
    training state of the cut run being resumed)."""
    config, lm = run.config, run.task.lm
    eff, k = effective_task(run.task, config.placement, config.num_virtual_tokens)
    if config.bf16 and lm.device.type != "cuda":
        logger.warning("bf16 only applies on CUDA; training in %s on %s", lm.dtype, lm.device)
    examples = {name: encode_split(eff, run.splits[name], name) for name in ("train", "dev") if name in run.splits}
    return eff, k, examples, saved_checkpoint(run.previous)


def saved_checkpoint(previous: TuneResult | None) -> TrainCheckpoint | None:
    """The training state a cut run stored (None: start from the beginning)."""
    if previous is None:
        return None
    try:
        return TrainCheckpoint.from_saved(previous.tensors, previous.checkpoint)
    except (KeyError, ValueError, TypeError) as e:
        raise UserError(f"resume: the saved training state is damaged ({type(e).__name__}: {e}); start the run "
                        "again") from None


def with_checkpoint(result: TuneResult, checkpoint: TrainCheckpoint | None, extra: dict | None = None) -> TuneResult:
    """The result of a cut run carrying what continues it (tensors 'checkpoint.*', the rest in
    results.json); extra: the method's own state, saved as the checkpoint's `extra`."""
    if checkpoint is not None:
        checkpoint = replace(checkpoint, extra={**checkpoint.extra, **(extra or {})})
        result.tensors = {**result.tensors, **checkpoint.tensors()}
        result.checkpoint = checkpoint.meta()
    return result


def timings(run: Run, trained: TrainResult | None) -> dict:
    out = {"total_seconds": run.elapsed()}
    if trained is not None:
        out.update(step_seconds=trained.step_seconds, step_cpu_seconds=trained.step_cpu_seconds)
    return out


def trained_fields(run: Run, eff: PromptTask, trained: TrainResult | None, metrics: dict, status: str,
                   step: int = 0) -> dict:
    """The TuneResult fields of a run's training: of a finished or cut run (`trained`), or of a
    running one's best state at `step` (metrics: its dev metrics as {'dev': ...})."""
    fields = {**run.fields(), "metrics": metrics, "timings": timings(run, trained), "status": status,
              "template": eff.spec.template}
    if trained is None:
        dev = metrics.get("dev") or {}
        return {**fields, "best_step": step, "best_dev": dev.get(eff.metric), "steps_done": step, "stopped": "running"}
    best_dev = metrics["dev"].get(eff.metric) if "dev" in metrics else trained.best_score
    return {**fields, "history": trained.history, "best_step": trained.best_step, "best_dev": best_dev,
            "steps_done": trained.steps_done, "stopped": trained.stopped, "note": trained.note}


def status_of(trained: TrainResult) -> str:
    return "stopped" if trained.stopped == "callback" else "done"


# ------------------------------------------------------------------ prompt and prefix tuning
def prompt_module(lm: FrozenLM, task: PromptTask, cfg: SoftPromptOptions, k: int) -> tuple[SoftPrompt, list | None]:
    """(k trainable prompt vectors, init ids or None), from a generator seeded with cfg.seed."""
    vectors, ids = prompt_init(lm, task, k, cfg.init, torch.Generator().manual_seed(cfg.seed), cfg.truncate_init)
    return SoftPrompt(vectors), ids


def prefix_module(lm: FrozenLM, task: PromptTask, cfg: PrefixTuningConfig, k: int) -> tuple[PrefixParams, list | None]:
    """(a trainable prefix of length k, init ids or None), from a generator seeded with cfg.seed."""
    g = torch.Generator().manual_seed(cfg.seed)
    kv, ids = prefix_init(lm, task, k, cfg.init, g, cfg.truncate_init)
    return PrefixParams(kv, cfg.prefix_projection, cfg.prefix_hidden, lm.hidden_size, g), ids


def fit_prompt(run: Run) -> TuneResult:
    """Prompt tuning (a trainable vector per [T] slot) on a prepared run."""
    return fit_trained(run, prompt_module)


def fit_prefix(run: Run) -> TuneResult:
    """Prefix tuning (trainable key/values at every layer) on a prepared run."""
    return fit_trained(run, prefix_module)


def fit_trained(run: Run, build) -> TuneResult:
    """Train the module `build(lm, effective task, config, k)` makes; the result keeps the best
    state by dev (the last without a dev split). A finished run given to resume comes back as it was."""
    if run.previous is not None and run.previous.status == "done":
        logger.info("the saved run finished (%d steps); nothing to continue", run.previous.steps_done)
        return run.previous
    config, lm = run.config, run.task.lm
    eff, k, examples, checkpoint = start(run)
    module, ids = build(lm, eff, config, k)

    def on_best(step: int, dev: dict | None) -> None:  # the tensors now hold the best state
        metrics = {"dev": dev} if dev is not None else {}
        run.checkpoint(TuneResult(**trained_fields(run, eff, None, metrics, "running", step), tensors=module.tensors(),
                                  init_ids=ids))

    try:
        trained = train_module(module, eff, examples["train"], examples.get("dev"), config, method=run.method.name,
                               callback=run.callback, progress=run.progress, resume=checkpoint, on_best=on_best)
    except TrainInterrupted as stop:
        result = TuneResult(**trained_fields(run, eff, stop.result, {}, "interrupted"), tensors=module.tensors(),
                            init_ids=ids)
        raise RunInterrupted(with_checkpoint(result, stop.checkpoint), f"after step {stop.result.steps_done}") from None
    train, dev = on_device(examples["train"], lm.device), examples.get("dev")
    metrics = {"train": split_metrics(module, eff, train, config.eval_batch_size)}
    if dev is not None:
        metrics["dev"] = trained.last_metrics or split_metrics(module, eff, on_device(dev, lm.device),
                                                               config.eval_batch_size)
    return TuneResult(**trained_fields(run, eff, trained, metrics, status_of(trained)), tensors=module.tensors(),
                      init_ids=ids)


# ------------------------------------------------------------------ PEZ
def fit_pez(run: Run) -> PezResult:
    """PEZ on a prepared run: the result is the best discrete prompt by dev (the final projection
    without a dev split). metrics: 'train' and 'dev' of that prompt (the shared evaluator's keys,
    plus 'loglik' or, for target strings, 'score'), and 'prompt_perplexity' of it over the dev
    rows (the train rows without a dev split; None on a masked LM)."""
    if run.previous is not None and run.previous.status == "done":
        logger.info("the saved run finished (%d steps); nothing to continue", run.previous.steps_done)
        return run.previous
    config, lm = run.config, run.task.lm
    eff, k, examples, checkpoint = start(run)
    vectors, init = prompt_init(lm, eff, k, config.init, torch.Generator().manual_seed(config.seed),
                                config.truncate_init)
    module = PezPrompt(vectors, Projector(lm, config.pez_metric))

    def on_better(kept: Kept) -> None:  # a better discrete prompt on dev
        fields = trained_fields(run, eff, None, {"dev": dict(kept.metrics)}, "running", kept.step)
        run.checkpoint(pez_result(fields, eff, module, kept.ids, init))

    fitter = PezFit(module, eff, examples["train"], examples.get("dev"), config, run.method.name, on_better)
    try:
        trained = fitter.run(run.callback, run.progress, resume=checkpoint)
    except TrainInterrupted as stop:
        fields = {**trained_fields(run, eff, stop.result, {}, "interrupted"), "best_step": fitter.best_step,
                  "best_dev": None}
        result = with_checkpoint(pez_result(fields, eff, module, fitter.kept_ids(), init), stop.checkpoint,
                                 {"pez": fitter.state()})
        raise RunInterrupted(result, f"after step {stop.result.steps_done}") from None
    ids = fitter.kept_ids()
    metrics = {"train": split_scores(eff, examples["train"], ids, config)}
    if "dev" in examples:
        metrics["dev"] = fitter.kept_metrics() or split_scores(eff, examples["dev"], ids, config)
    rows = examples.get("dev", examples["train"]).rows
    metrics["prompt_perplexity"] = prompt_perplexity(lm, rows, ids, config.eval_batch_size)
    fields = {**trained_fields(run, eff, trained, metrics, status_of(trained)), "best_step": fitter.best_step,
              "best_dev": metrics["dev"].get(eff.metric) if "dev" in metrics else None}
    result = pez_result(fields, eff, module, ids, init)
    logger.info("pez: %r, dev %s", result.filled_template, metrics.get("dev", {}).get(eff.metric))
    return result


def pez_result(fields: dict, eff: PromptTask, module: PezPrompt, ids: torch.Tensor, init: list[int] | None
               ) -> PezResult:
    """A PezResult of the discrete prompt `ids` (and the module's vectors) with the run's fields."""
    prompt = DiscretePrompt.from_ids(eff.lm.tokenizer, ids)
    return PezResult(**fields, tensors=module.tensors(ids), init_ids=init, trigger_tokens=prompt.tokens,
                     trigger_text=prompt.text, filled_template=prompt.filled(eff))
