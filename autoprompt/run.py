"""`autoprompt.search`: run (or continue) a trigger search on a task and return a SearchResult.

Nothing is written unless `out` is given; then the artifact is rewritten after every iteration, so
Ctrl-C or a crash keeps the best-so-far trigger and `resume=out` continues exactly where it stopped.
Under torchrun every process runs this with the same arguments; process 0 alone writes and shows
the progress bar (frozen_lm.distributed).
"""

from __future__ import annotations

import logging
import time

import torch
from tqdm.auto import tqdm

from autoprompt.config import SearchConfig
from autoprompt.result import METHOD, SearchResult
from autoprompt.search import Searcher, State, initial_trigger, state_dict
from autoprompt.start import check_same_encoding, slot_template
from frozen_lm import data as data_mod
from frozen_lm import distributed
from frozen_lm.artifact import claim_out
from frozen_lm.errors import Interrupted, UserError
from frozen_lm.evaluate import DiscretePrompt, evaluate
from frozen_lm.events import Callback, Event, notify
from frozen_lm.results import base_fields, previous_result, resume_diffs, resumes_into
from frozen_lm.task import PromptTask

logger = logging.getLogger(__name__)


def search(task: PromptTask, train, dev, config: SearchConfig | None = None, *, test=None, out=None, resume=None,
           overwrite: bool = False, callback: Callback | None = None, progress: bool = True) -> SearchResult:
    """Find trigger tokens for the task's [T] slots (AutoPrompt) and return the best by dev score.

    train, dev: any data source (path, demo:/hf: source, list of dicts, datasets.Dataset; None for a
    target-string task with a fixed target and no data fields); test: an
    optional split scored at the end (never used to choose), reported as metrics['test'].
    config.from_template: start from a hand-written template (its words become the slots; the
    task's template is replaced by that slot template, and metrics['start_dev'] is its score).
    out: an artifact folder rewritten after every iteration (nothing is written without it); a
    folder holding another run is refused unless overwrite=True (or it is the run being resumed).
    resume: a SearchResult or its folder to continue; task and config must equal the saved run's,
    except `config.iters` and `config.patience` (RESUMABLE), which may grow.
    callback(event) gets an 'iteration' Event after each iteration; returning True stops the run.
    Ctrl-C raises `frozen_lm.errors.Interrupted` carrying the best-so-far result.
    """
    config = config or SearchConfig()
    if train is None:  # a fixed target string with no data fields needs no data
        train = task.default_data()
        dev = train if dev is None else dev
    train_ds, dev_ds = data_mod.load(train), data_mod.load(dev) if dev is not None else None
    task, start = _start(task, config, train_ds)
    if task.template.n_triggers == 0:
        raise UserError(f"template {task.spec.template!r} has no [T] slots to search; add some, e.g. '{{sentence}} [T] [T] [P]'")
    if dev is None:
        raise UserError("give a dev split: the split used to pick the best trigger")
    previous = _previous(resume, task, config)
    if out is not None:
        claim_out(out, overwrite, resume=resumes_into(resume, out))
    data = {"train": data_mod.describe(train, train_ds), "dev": data_mod.describe(dev, dev_ds)}
    if previous is not None:
        _check_data(previous, data)
    train_enc, dev_enc = task.encode(train_ds), task.encode(dev_ds)
    for note in train_enc.notes:
        logger.info("train: %s", note)
    searcher = Searcher(task, config, train_enc, dev_enc)
    state = previous.search_state() if previous is not None else searcher.start(start)
    logger.info("search: %d train / %d dev examples, %d allowed trigger tokens", len(searcher.train),
                len(searcher.dev), int(searcher.allowed.sum()))
    run = _Run(task, config, searcher, data, out, previous)
    state, status = run.loop(state, callback, progress)
    tok = task.lm.tokenizer
    first = previous.start_ids if previous is not None and previous.start_ids else start.tolist()
    metrics = {"dev": evaluate(task, dev_enc, DiscretePrompt.from_ids(tok, state.best)),
               "start_dev": evaluate(task, dev_enc, DiscretePrompt.from_ids(tok, first)), **_readability(task, dev_enc, state.best)}
    if test is not None:
        test_ds = data_mod.load(test)
        run.data["test"] = data_mod.describe(test, test_ds)
        test_enc = task.encode(test_ds)
        metrics["test"] = evaluate(task, test_enc, DiscretePrompt.from_ids(tok, state.best))
        metrics["start_test"] = evaluate(task, test_enc, DiscretePrompt.from_ids(tok, first))
    return run.finish(state, status, metrics, first)


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


def _start(task: PromptTask, config: SearchConfig, train_ds) -> tuple[PromptTask, torch.Tensor]:
    """(the task to search, the start trigger): the task as given with config.initial_trigger, or
    the slot template of config.from_template holding its own words."""
    if not config.from_template:
        if task.template.n_triggers == 0:
            return task, torch.zeros(0, dtype=torch.long)
        return task, initial_trigger(task, config.initial_trigger)
    manual = task.derive(template=config.from_template)
    fill = None
    if config.extra_slots:
        fill = int(initial_trigger(task.derive(template="[T] [P]"), config.initial_trigger)[0])
    keep = {w.strip() for w in (config.keep or "").split(",") if w.strip()}
    template, ids = slot_template(manual, config.from_template, keep, config.extra_slots, fill)
    searched = task.derive(template=template)
    check_same_encoding(manual, searched, ids, train_ds)
    logger.info("search starts from %r as %r", config.from_template, template)
    return searched, torch.tensor(ids, dtype=torch.long)


class _Run:
    """Builds and (when asked) saves the result after each iteration."""

    def __init__(self, task, config, searcher, data, out, previous):
        self.task, self.config, self.searcher, self.data, self.out = task, config, searcher, data, out
        self.started = time.perf_counter()
        self.before = previous.timings.get("total_seconds", 0.0) if previous is not None else 0.0

    def loop(self, state: State, callback, progress: bool) -> tuple[State, str]:
        cfg = self.config
        bar = tqdm(total=cfg.iters, initial=min(state.iteration, cfg.iters), desc="search",
                   disable=not progress or not distributed.is_main(), dynamic_ncols=True)
        status = "done"
        try:
            while not self.searcher.finished(state):
                state = self.searcher.step(state)
                self.save(state, "running")
                bar.update(1)
                bar.set_postfix(dev=f"{state.best_dev:.3f}", trigger=" ".join(self.searcher.decode(state.beam[0]))[:40])
                record = state.history[-1]
                metrics = {k: record[k] for k in ("loss", "dev", "best_dev", "accepted", "train_accuracy")}
                if notify(callback, Event(METHOD, "iteration", state.iteration, cfg.iters, metrics)):
                    status = "stopped"
                    break
        except KeyboardInterrupt:
            bar.close()
            result = self.result(state, "interrupted", {})
            where = f"; best-so-far saved to {self.out}; continue with: autoprompt search --resume {self.out}" if self.out else ""
            if self.out:
                result.save(self.out)
            raise Interrupted(f"interrupted after iteration {state.iteration}{where}", result) from None
        bar.close()
        return state, status

    def result(self, state: State, status: str, metrics: dict, start_ids: list[int] | None = None) -> SearchResult:
        task, tok = self.task, self.task.lm.tokenizer
        best = DiscretePrompt.from_ids(tok, state.best)
        per_iter = [h["seconds"] for h in state.history]
        timings = {"seconds_per_iteration": sum(per_iter) / len(per_iter) if per_iter else None,
                   "total_seconds": self.before + time.perf_counter() - self.started}
        return SearchResult(
            **base_fields(METHOD, self.config, task, self.data),
            tensors={"trigger_ids": state.best, "beam": state.beam, "beam_scores": state.beam_scores},
            metrics=metrics, history=state.history, timings=timings, start_ids=start_ids or [],
            status=status, metric=task.metric, best_dev=state.best_dev, trigger_ids=best.trigger_ids,
            trigger_tokens=best.tokens, trigger_text=best.text, filled_template=best.filled(task),
            trigger_round_trips=list(tok(best.text, add_special_tokens=False).input_ids) == best.trigger_ids,
            state=state_dict(state))

    def save(self, state: State, status: str) -> None:
        if self.out:
            self.result(state, status, {}).save(self.out)

    def finish(self, state: State, status: str, metrics: dict, start_ids: list[int]) -> SearchResult:
        result = self.result(state, status, metrics, start_ids)
        if self.out:
            result.save(self.out)
        return result


def _previous(resume, task: PromptTask, config: SearchConfig) -> SearchResult | None:
    """The saved search to continue, checked against this task and config."""
    previous = previous_result(resume, SearchResult, task, "search")
    if previous is None:
        return None
    diffs = resume_diffs(previous, task, config, SearchConfig.RESUMABLE)
    if diffs:
        raise UserError("resume: these differ from the saved run, so it would not continue the same search: "
                        + "; ".join(diffs) + f" (only {', '.join(SearchConfig.RESUMABLE)} may change)")
    state = previous.state or {}
    if state.get("iteration", 0) >= config.iters and not (config.patience and state.get("stale", 0) >= config.patience):
        logger.info("the saved search already ran %d of %d iterations; raise iters to continue it",
                    state.get("iteration", 0), config.iters)
    return previous


def _check_data(previous: SearchResult, data: dict) -> None:
    for split, now in data.items():
        saved = previous.data.get(split, {})
        if saved.get("sha256") and saved["sha256"] != now["sha256"]:
            logger.warning("resume: the %s split differs from the saved run's (%s, %s rows, then %s, %s rows); "
                           "the search continues on the data given now", split, now["source"], now["rows"],
                           saved.get("source"), saved.get("rows"))
