"""What the runner (frozen_lm.runner) calls for `instruct`: `prepare` (checks before any work) and
`fit_instruct(run)`, the proposal rounds.

Round 1 asks the proposer for instructions from training examples (APE); each later round shows it
the best instructions so far with their training scores (OPRO). Every candidate is scored on the
same seeded batch of training examples (as OPRO's fixed training subset: scores from different
rounds compare, for the proposer and for the choice); then the best few are scored on dev and the
best on dev is the result so far, written by `run.checkpoint` after every round. Ctrl-C keeps it.
A run cannot be resumed (each round's sampling follows from the ones before).
"""

from __future__ import annotations

import logging
import random

from tqdm.auto import tqdm

from frozen_lm import distributed
from frozen_lm.configs import field_error
from frozen_lm.errors import UserError
from frozen_lm.events import Event, notify
from frozen_lm.model import DTYPES, FrozenLM
from frozen_lm.runner import Run, RunInterrupted
from frozen_lm.task import PromptTask
from prompt_instruct.config import InstructConfig
from prompt_instruct.pool import Pool
from prompt_instruct.propose import Proposer, ape_message, clean, opro_message, pick_demos
from prompt_instruct.result import InstructResult

logger = logging.getLogger(__name__)


def prepare(task: PromptTask, config: InstructConfig, splits: dict) -> tuple[PromptTask, InstructConfig]:
    """Refuse a template with [T] slots, and a masked LM as the proposer, before any work."""
    if task.template.n_triggers:
        raise UserError(f"template {task.spec.template!r} has [T] slots; instructions go before a hand-written "
                        "template without them, e.g. '{sentence} It was [P] .'")
    if config.proposer_model is None and task.lm.is_masked:
        raise field_error(config, "proposer_model", f"is not given, so the task's model {task.lm.name!r} would write "
                          "the instructions, but it is a masked LM; give a causal LM, e.g. 'smollm2-135m'")
    return task, config


def load_proposer(task: PromptTask, config: InstructConfig) -> FrozenLM:
    """The proposer: the task's model, or config.proposer_model on the task model's device and dtype."""
    name = config.proposer_model
    if name is None or name == task.lm.name:
        return task.lm
    dtype = next((k for k, v in DTYPES.items() if v == task.lm.dtype), "float32")
    try:
        lm = FrozenLM.load(name, str(task.lm.device), dtype)
    except UserError as e:
        raise field_error(config, "proposer_model", f"is {name!r}, which did not load: {e}") from None
    if lm.is_masked:
        raise field_error(config, "proposer_model", f"is {name!r}, a masked LM; it cannot write instructions (give a "
                          "causal LM, e.g. 'smollm2-135m')")
    return lm


def fit_instruct(run: Run) -> InstructResult:
    """Propose, score and choose instructions for `run.config.rounds` rounds."""
    task, cfg = run.task, run.config
    proposer_lm = load_proposer(task, cfg)
    proposer = Proposer(proposer_lm, cfg.max_new_tokens, cfg.temperature, cfg.top_p, cfg.seed)
    specials = tuple(getattr(task.lm.tokenizer, "all_special_tokens", ())) + tuple(
        getattr(proposer.tok, "all_special_tokens", ()))
    rng = random.Random(cfg.seed)
    pool = Pool(task, cfg, run.dev)
    batch = run.train.sample(cfg.eval_size, rng.randrange(2**31))  # one for the run: scores compare across rounds
    pool.add(0, "", batch)  # candidate zero (round 0): the hand-written template as written
    pool.choose()
    run.checkpoint(_result(run, pool, proposer_lm, "running", 0))
    logger.info("instruct: %s writes %d instructions per round for %d rounds (%s); the template alone scores "
                "%.3f on dev", proposer_lm.name, cfg.n_candidates, cfg.rounds,
                "chat template" if proposer.chat else "plain text", pool.winner["dev"])
    bar = tqdm(total=cfg.rounds, desc="instruct", disable=not run.progress or not distributed.is_main(),
               dynamic_ncols=True)
    status, done = "done", 0
    try:
        for round_ in range(cfg.rounds):
            new = _round(run, pool, proposer, round_, batch, rng, specials)
            winner = pool.choose()
            done = round_ + 1
            run.checkpoint(_result(run, pool, proposer_lm, "running", done))
            bar.update(1)
            bar.set_postfix(dev=f"{winner['dev']:.3f}", instruction=winner["instruction"][:40])
            metrics = {"new_candidates": new, "best_train": pool.best(1)[0]["train"], "best_dev": winner["dev"]}
            if notify(run.callback, Event(run.method.name, "iteration", done, cfg.rounds, metrics,
                                          stage="ape" if round_ == 0 else "opro")):
                status = "stopped"
                break
    except KeyboardInterrupt:
        bar.close()
        raise RunInterrupted(_result(run, pool, proposer_lm, "interrupted", done), f"after round {done}") from None
    bar.close()
    return _result(run, pool, proposer_lm, status, done)


def _round(run: Run, pool: Pool, proposer: Proposer, round_: int, batch, rng: random.Random,
           specials: tuple[str, ...]) -> int:
    """One round: a meta-prompt, n_candidates completions, the new cleaned instructions scored on the
    training batch; returns how many were new."""
    cfg, task = run.config, run.task
    demos = pick_demos(task, run.train.rows, cfg.n_demos, rng)
    shown = [(r["instruction"], r["train"]) for r in pool.best(cfg.keep, with_empty=False)]
    if round_ == 0 or not shown:  # (no instruction yet to improve on: ask from the examples again)
        build = lambda k: ape_message(demos[:k], proposer.chat)  # noqa: E731
    else:
        build = lambda k: opro_message(shown, demos[:k], task.metric, proposer.chat)  # noqa: E731
    texts = proposer.sample_texts(proposer.prompt_ids(build, len(demos)), cfg.n_candidates)
    new = 0
    for text in texts:
        instruction = clean(text, specials)
        if instruction and pool.is_new(instruction):
            pool.add(round_ + 1, instruction, batch)
            new += 1
    logger.info("round %d: %d of %d completions are new instructions", round_ + 1, new, len(texts))
    return new


def _result(run: Run, pool: Pool, proposer: FrozenLM, status: str, rounds_done: int) -> InstructResult:
    best = pool.winner
    return InstructResult(
        **run.fields(), metrics={"dev": dict(best["dev_metrics"])}, history=[dict(r) for r in pool.records],
        timings={"total_seconds": run.elapsed(), "seconds_per_round": run.elapsed() / max(rounds_done, 1)},
        status=status, instruction=best["instruction"], template=best["template"], proposer=proposer.name,
        rounds_done=rounds_done)
