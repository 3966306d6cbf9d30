"""What the runner (frozen_lm.runner) calls for AutoPrompt and GCG: `prepare` (the task searched, from
a hand-written start or as given) and `fit_search(run, proposer)`, the search loop on a prepared run.

The artifact is rewritten after every iteration (`run.checkpoint`), so Ctrl-C or a crash keeps the
best-so-far trigger, and a resumed run continues exactly where the saved one stopped. Under torchrun
every process runs this with the same arguments; process 0 alone writes and shows the progress bar
(frozen_lm.distributed).
"""

from __future__ import annotations

import logging

import torch
from tqdm.auto import tqdm

from autoprompt.config import SearchOptions
from autoprompt.models import make_searcher, models_of, other_models, per_model
from autoprompt.result import SearchResult
from autoprompt.search import Searcher, State, initial_trigger, state_dict
from autoprompt.start import check_same_encoding, slot_template
from frozen_lm import distributed
from frozen_lm.configs import name_of
from frozen_lm.errors import UserError
from frozen_lm.evaluate import DiscretePrompt, evaluate
from frozen_lm.events import Event, notify
from frozen_lm.runner import Run, RunInterrupted
from frozen_lm.task import PromptTask

logger = logging.getLogger(__name__)


def prepare(task: PromptTask, config: SearchOptions, splits: dict) -> tuple[PromptTask, SearchOptions]:
    """The task to search: as given, or the slot template of config.from_template (its words become
    [T] slots holding their own tokens); UserError when there are no slots to search."""
    if config.from_template:
        searched, ids = slot_start(task, config)
        check_same_encoding(task.derive(template=config.from_template), searched, ids, splits["train"])
        logger.info("search starts from %r as %r", config.from_template, searched.spec.template)
        task = searched
    if task.template.n_triggers == 0:
        raise UserError(f"template {task.spec.template!r} has no [T] slots to search; add some, e.g. "
                        "'{sentence} [T] [T] [P]'")
    return task, config


def slot_start(task: PromptTask, config: SearchOptions) -> tuple[PromptTask, list[int]]:
    """(the slot template's task, its start trigger ids) of config.from_template (`task`: the given
    task or the slot task already made from it; only its model and label words matter)."""
    manual = task.derive(template=config.from_template)
    fill = None
    if config.extra_slots:
        fill = int(initial_trigger(task.derive(template="[T] [P]"), config.initial_trigger, config)[0])
    keep = {w.strip() for w in (config.keep or "").split(",") if w.strip()}
    template, ids = slot_template(manual, config.from_template, keep, config.extra_slots, fill, config)
    return task.derive(template=template), ids


def start_trigger(task: PromptTask, config: SearchOptions, ids: list[int] | None = None) -> torch.Tensor:
    """(S,) the trigger a search starts from: `ids` when given (the run's input 'start_ids', e.g. the
    suffix a universal search carries from one stage to the next), else config.initial_trigger's, or
    a hand-written start's words."""
    if ids is not None:
        if len(ids) != task.template.n_triggers:
            raise UserError(f"start_ids has {len(ids)} tokens, but the template has {task.template.n_triggers} [T] slots")
        return torch.tensor(ids, dtype=torch.long)
    if config.from_template:
        return torch.tensor(slot_start(task, config)[1], dtype=torch.long)
    return initial_trigger(task, config.initial_trigger, config)


def check_resume(previous: SearchResult, config: SearchOptions) -> None:
    """A resume may raise the iterations, never lower them below what the saved run did."""
    done = previous.iterations
    if done > config.iters:
        raise UserError(f"resume: the saved search already ran {done} iterations; {name_of(config, 'iters')} "
                        f"{config.iters} would not continue it: give at least {done}")


def fit_search(run: Run, proposer) -> SearchResult:
    """Search the task's [T] slots with the method's proposer; the result keeps the best trigger by
    dev score (metrics['start_dev']: the start's score, never better than it). run.inputs['models']:
    more models the prompt is searched for (autoprompt.models: the objective is the mean over them)."""
    task, config, previous = run.task, run.config, run.previous
    lms = other_models(run)
    train_enc, dev_enc = task.encode(run.train), task.encode(run.dev)
    for note in train_enc.notes:
        logger.info("train: %s", note)
    searcher = make_searcher(run, proposer, train_enc, dev_enc, lms)
    start = start_trigger(task, config, run.inputs.get("start_ids"))
    state = previous.search_state() if previous is not None else searcher.start(start)
    logger.info("search: %d train / %d dev examples, %d allowed trigger tokens", len(searcher.train),
                len(searcher.dev), int(searcher.allowed.sum()))
    state, status = _loop(run, searcher, state)
    tok = task.lm.tokenizer
    first = previous.start_ids if previous is not None and previous.start_ids else start.tolist()
    metrics = {"dev": evaluate(task, dev_enc, DiscretePrompt.from_ids(tok, state.best)),
               "start_dev": evaluate(task, dev_enc, DiscretePrompt.from_ids(tok, first)),
               **_readability(task, dev_enc, state.best)}
    if "test" in run.splits:
        test_enc = task.encode(run.splits["test"])
        metrics["test"] = evaluate(task, test_enc, DiscretePrompt.from_ids(tok, state.best))
        metrics["start_test"] = evaluate(task, test_enc, DiscretePrompt.from_ids(tok, first))
    if lms:
        metrics.update(per_model(searcher, run, state.best))
    return _result(run, state, status, metrics, first, models_of(searcher))


def _loop(run: Run, searcher: Searcher, state: State) -> tuple[State, str]:
    """Iterations until the searcher is finished, the callback stops the run, or Ctrl-C."""
    cfg = run.config
    bar = tqdm(total=cfg.iters, initial=min(state.iteration, cfg.iters), desc="search",
               disable=not run.progress or not distributed.is_main(), dynamic_ncols=True)
    status = "done"
    try:
        while not searcher.finished(state):
            state = searcher.step(state)
            run.checkpoint(_result(run, state, "running", {}, models=models_of(searcher)))
            bar.update(1)
            bar.set_postfix(dev=f"{state.best_dev:.3f}", trigger=" ".join(searcher.decode(state.beam[0]))[:40])
            record = state.history[-1]
            metrics = {k: record[k] for k in ("loss", "dev", "best_dev", "accepted", "train_accuracy")}
            if notify(run.callback, Event(run.method.name, "iteration", state.iteration, cfg.iters, metrics)):
                status = "stopped"
                break
    except KeyboardInterrupt:
        bar.close()
        raise RunInterrupted(_result(run, state, "interrupted", {}, models=models_of(searcher)),
                             f"after iteration {state.iteration}") from None
    bar.close()
    return state, status


def _readability(task: PromptTask, dev_enc, best: torch.Tensor, rows: int = 64, shown: int = 3) -> dict:
    """The found prompt's perplexity in context (causal LMs; mean over the first dev rows) and, for
    target strings, what greedy decoding produces after it for the first dev examples."""
    if task.lm.is_masked:
        return {}
    from frozen_lm.fluency import prompt_perplexity

    out = {"prompt_perplexity": prompt_perplexity(task.lm, dev_enc.rows.subset(slice(0, rows)), best)}
    if task.is_target:
        out["generations"] = []
        sample = dev_enc.rows.subset(slice(0, shown)).set_triggers(best)
        for r in range(sample.n_examples):
            end = int(sample.predict_pos[r, 0]) + 1
            want = [int(t) for t in sample.targets[r] if t >= 0]
            got = task.lm.generate(sample.input_ids[r, :end], len(want))
            out["generations"].append({"generated": task.lm.tokenizer.decode(got), "target": task.lm.tokenizer.decode(want),
                                       "reproduces": got[: len(want)] == want})
    return out


def _result(run: Run, state: State, status: str, metrics: dict, start_ids: list[int] | None = None,
            models: list[dict] | None = None) -> SearchResult:
    task, tok = run.task, run.task.lm.tokenizer
    best = DiscretePrompt.from_ids(tok, state.best)
    per_iter = [h["seconds"] for h in state.history]
    timings = {"seconds_per_iteration": sum(per_iter) / len(per_iter) if per_iter else None,
               "total_seconds": run.elapsed()}
    return SearchResult(
        **run.fields(), tensors={"trigger_ids": state.best, "beam": state.beam, "beam_scores": state.beam_scores},
        metrics=metrics, history=state.history, timings=timings, start_ids=start_ids or [],
        status=status, metric=task.metric, best_dev=state.best_dev, trigger_ids=best.trigger_ids,
        trigger_tokens=best.tokens, trigger_text=best.text, filled_template=best.filled(task),
        trigger_round_trips=list(tok(best.text, add_special_tokens=False).input_ids) == best.trigger_ids,
        state=state_dict(state), models=list(models or []))
