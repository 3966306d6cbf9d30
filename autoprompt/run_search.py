"""Run a trigger search end to end: load, encode, iterate with a progress bar, save after every
iteration, stop cleanly on Ctrl-C, and resume from a saved artifact."""

from __future__ import annotations

import logging
from dataclasses import asdict, fields
from pathlib import Path

import torch
from tqdm.auto import tqdm

from autoprompt.search import SearchConfig, Searcher, State, filled_template, initial_trigger
from frozen_lm import data as data_mod
from frozen_lm.artifact import check_model, load_artifact, save_artifact
from frozen_lm.errors import UserError
from frozen_lm.model import FrozenLM
from frozen_lm.task import Encoded, PromptTask, TaskConfig, evaluate, ids_logits_fn

logger = logging.getLogger(__name__)
METHOD = "autoprompt"


class Interrupted(UserError):
    """Ctrl-C during a search: the best-so-far artifact is saved."""


def prepare(task_cfg: TaskConfig, cfg: SearchConfig, seed: int):
    """(searcher, task) for a resolved task config."""
    lm = FrozenLM.load(task_cfg.model, task_cfg.device, task_cfg.dtype)
    task = PromptTask.from_config(lm, task_cfg)
    if task.template.n_triggers == 0:
        raise UserError(f"template {task_cfg.template!r} has no [T] slots to search; add some, e.g. '{{sentence}} [T] [T] [P]'")
    if task_cfg.dev is None:
        raise UserError("give --dev: the split used to pick the best trigger")
    train = task.encode(data_mod.load(task_cfg.train))
    dev = task.encode(data_mod.load(task_cfg.dev))
    for note in train.notes:
        logger.info("train: %s", note)
    return Searcher(task, cfg, train, dev, seed), task, dev


def _tensors(state: State) -> dict[str, torch.Tensor]:
    return {"trigger_ids": state.best, "beam": state.beam, "beam_scores": state.beam_scores}


def _results(searcher: Searcher, task: PromptTask, state: State, status: str, dev_metrics: dict | None) -> dict:
    best = state.best
    return {
        "status": status, "metric": task.metric, "best_dev": state.best_dev,
        "trigger_ids": best.tolist(), "trigger_tokens": searcher.decode(best),
        "trigger_text": task.lm.tokenizer.decode(best.tolist()), "filled_template": filled_template(task, best),
        "dev": dev_metrics, "history": state.history,
        "state": {"iteration": state.iteration, "best_dev": state.best_dev, "current_dev": state.current_dev,
                  "stale": state.stale, "best_dev_loglik": state.best_dev_loglik,
                  "current_dev_loglik": state.current_dev_loglik},
        "seconds_per_iteration": (sum(h["seconds"] for h in state.history) / len(state.history)) if state.history else None,
    }


def save(out, searcher, task_cfg, cfg, task, state, seed, status, dev_metrics=None) -> Path:
    return save_artifact(out, METHOD, cfg, task_cfg, searcher.task.lm, seed, _tensors(state),
                         _results(searcher, task, state, status, dev_metrics))


def load_state(path) -> tuple[TaskConfig, SearchConfig, int, State, dict]:
    """Configs, seed and search state of a saved (possibly interrupted) search."""
    art = load_artifact(path)
    if art.method != METHOD:
        raise UserError(f"{path} holds a {art.method!r} run, not an autoprompt search; --resume needs a search --out folder")
    task_cfg = TaskConfig(**{k: v for k, v in art.task.items() if k in {f.name for f in fields(TaskConfig)}})
    cfg = SearchConfig(**{k: v for k, v in art.config.items() if k in {f.name for f in fields(SearchConfig)}})
    s = art.results["state"]
    state = State(s["iteration"], art.tensors["beam"].long(), art.tensors["beam_scores"].double(),
                  art.tensors["trigger_ids"].long(), s["best_dev"], s["current_dev"], s["stale"],
                  art.results.get("history", []), s.get("best_dev_loglik", float("-inf")),
                  s.get("current_dev_loglik", float("-inf")))
    return task_cfg, cfg, art.meta["seed"], state, {"artifact": art}


def run(task_cfg: TaskConfig, cfg: SearchConfig, seed: int, out, resume: str | None = None,
        iters: int | None = None, progress: bool = True) -> dict:
    """Search (or continue a saved search) and return the results dict; the artifact is in `out`."""
    state = None
    if resume:
        task_cfg, saved_cfg, seed, state, extra = load_state(resume)
        cfg = SearchConfig(**{**asdict(saved_cfg), "iters": iters or saved_cfg.iters})
        out = out or resume
    searcher, task, dev_enc = prepare(task_cfg, cfg, seed)
    if resume:
        check_model(extra["artifact"], task.lm)
    else:
        state = searcher.start(initial_trigger(task, cfg.initial_trigger))
    logger.info("search: %d train / %d dev examples, %d allowed trigger tokens, %s scoring",
                len(searcher.train), len(searcher.dev), int(searcher.allowed.sum()),
                "packed" if searcher.packed or (searcher.packed is None and _packs(searcher)) else "full-sequence")
    bar = tqdm(total=cfg.iters, initial=state.iteration, desc="search", disable=not progress, dynamic_ncols=True)
    try:
        while not searcher.finished(state):
            state = searcher.step(state)
            save(out, searcher, task_cfg, cfg, task, state, seed, "running")
            bar.update(1)
            bar.set_postfix(dev=f"{state.best_dev:.3f}", trigger=" ".join(searcher.decode(state.beam[0]))[:40])
    except KeyboardInterrupt:
        bar.close()
        save(out, searcher, task_cfg, cfg, task, state, seed, "interrupted")
        raise Interrupted(f"interrupted after iteration {state.iteration}; best-so-far saved to {out}; "
                          f"continue with: autoprompt search --resume {out}") from None
    bar.close()
    dev_metrics = _final_dev(searcher, task, dev_enc, state)
    save(out, searcher, task_cfg, cfg, task, state, seed, "done", dev_metrics)
    return _results(searcher, task, state, "done", dev_metrics) | {"out": str(out)}


def _packs(searcher) -> bool:
    from autoprompt.scoring import can_pack

    return can_pack(searcher.task.lm, searcher.train)


def _final_dev(searcher: Searcher, task: PromptTask, dev_enc, state: State) -> dict:
    """Full-dev metrics of the best trigger with the shared evaluator (what `evaluate` reports)."""
    rows = dev_enc.rows.set_triggers(state.best)
    return evaluate(task, Encoded(rows, dev_enc.n_skipped, dev_enc.n_multi_token), ids_logits_fn(task.lm))
