"""Discrete prompt search on a frozen language model: AutoPrompt (Shin et al., 2020), GCG (Zou et al.,
2023) and AutoPrompt's label-word search.

    import autoprompt
    r = autoprompt.search(task, train, dev, autoprompt.AutoPromptConfig(iters=20, seed=0))
    g = autoprompt.search(task, train, dev, autoprompt.GCGConfig(search_width=64, topk=64))
    r.filled_template, r.metrics["dev"]; evaluate(task, test, prompt=r); r.save("runs/x")
    words = autoprompt.label_search(task, train, autoprompt.LabelSearchConfig(k=5))

Two registered methods, 'autoprompt' and 'gcg', share the search loop (search: gradients, scoring,
dev selection) and differ in their proposer (hotflip: HotFlip top-k per slot; gcg: sampled
multi-slot swaps, probe: probe sampling); models: one prompt for several models (search(models=)).
Modules: config, fit (what the runner calls), scoring
(batched candidate scoring with prefix packing), candidates, start (from a hand-written template),
result (SearchResult), command (the CLI's presentation), label_search.
"""

from autoprompt.command import AUTOPROMPT, GCG
from autoprompt.config import AutoPromptConfig, GCGConfig, GCGSchedule, ProbeSamplingConfig, SearchOptions
from autoprompt.fit import check_resume, fit_search, prepare
from autoprompt.gcg import GCGProposer
from autoprompt.hotflip import HotFlip
from autoprompt.label_search import LabelSearchConfig, LabelWords, label_search
from autoprompt.result import SearchResult
from autoprompt.schedule import ScheduledGCG
from frozen_lm.events import Callback
from frozen_lm.methods import Method, register_method
from frozen_lm.runner import run

__all__ = ["AutoPromptConfig", "GCGConfig", "GCGSchedule", "LabelSearchConfig", "LabelWords", "ProbeSamplingConfig", "SearchOptions",
           "SearchResult", "label_search", "search"]


def search(task, train, dev, config: AutoPromptConfig | GCGConfig | None = None, *, test=None, out=None, resume=None,
           overwrite: bool = False, callback: Callback | None = None, progress: bool = True,
           models=None) -> SearchResult:
    """Find trigger tokens for the task's [T] slots and return the best by dev score: AutoPrompt
    (an AutoPromptConfig, the default) or GCG (a GCGConfig).

    train, dev: any data source (path, demo:/hf: source, list of dicts, datasets.Dataset; None for a
    target-string task with a fixed target and no data fields); test: an optional split scored at
    the end (never used to choose), reported as metrics['test'] (and the start's as 'start_test').
    config.from_template: start from a hand-written template (its words become the slots; the
    task's template is replaced by that slot template, and metrics['start_dev'] is its score).
    out: an artifact folder rewritten after every iteration (nothing is written without it); a
    folder holding another run is refused unless overwrite=True (or it is the run being resumed).
    resume: a SearchResult or its folder to continue; task, data and config must equal the saved
    run's, except `iters` and `patience`, which may grow. callback(event) gets an 'iteration' Event
    after each iteration; returning True stops the run. Ctrl-C raises
    `frozen_lm.errors.Interrupted` carrying the best-so-far result.
    models: more models to search the prompt for (FrozenLMs, or names loaded on the task's device):
    the objective is the mean over the task's model and these (autoprompt.models). Models with the
    task's tokenizer add their gradients; a model with another tokenizer scores each candidate as
    text, retokenized (its gradient cannot be added). best_dev is then the mean, and
    metrics['dev_models'] the best trigger on each model. A resume takes the saved run's models
    (models= must name the same ones, or be left out).
    """
    inputs = {"models": models} if models is not None else None
    return run(None, task, train, dev, config or AutoPromptConfig(), test=test, out=out, resume=resume,
               overwrite=overwrite, callback=callback, progress=progress, inputs=inputs)


def _fit_autoprompt(r) -> SearchResult:
    return fit_search(r, HotFlip(r.config))


def _fit_gcg(r) -> SearchResult:
    schedule = r.config.schedule
    return fit_search(r, ScheduledGCG(r.config) if schedule is not None and schedule.active else GCGProposer(r.config))


RESUMABLE = ("iters", "patience")
register_method(Method(
    name="autoprompt", config=AutoPromptConfig, fit=_fit_autoprompt, result=SearchResult, trains="tokens",
    template="trigger", space={"num_cand": [10, 50], "iters": [20, 40]}, prepare=prepare, resumable=RESUMABLE,
    check_resume=check_resume, aliases=(("autoprompt", {"method": "autoprompt"}),),
    summary="AutoPrompt: HotFlip search of the [T] tokens", command=AUTOPROMPT, module=__name__))
register_method(Method(
    name="gcg", config=GCGConfig, fit=_fit_gcg, result=SearchResult, trains="tokens", template="trigger",
    space={"search_width": [64, 128], "iters": [20, 40]}, grid_defaults={"search_width": 64, "topk": 64},
    prepare=prepare, resumable=RESUMABLE, check_resume=check_resume, aliases=(("autoprompt", {"method": "gcg"}),),
    summary="GCG: multi-position token search (nanoGCG's algorithm)", command=GCG, module=__name__))
