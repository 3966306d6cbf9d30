"""One universal suffix for every behavior, with progressive goals (llm-attacks): the suffix is
optimised on the first goal; once greedy generation reproduces every current goal's target, the next
goal joins and the search goes on from the suffix found so far, until every goal is in or the
config's `iters` (the budget of all stages together) is spent.

Each stage k (goals 1..k) is a registered 'gcg' run through `frozen_lm.run` into
out/universal/stage-<k>/, starting from the previous stage's suffix and stopping on success (the
schedule's stop_on_success is switched on), so a cut harness resumes at its last stage. The records
are the final suffix's on every goal; time_to_success of a goal is the seconds (the stages' own
iteration time, summed) at the end of the first stage in which every goal up to it succeeded.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from autoprompt.behavior_rows import BehaviorsResult, curve_of, record_of, row_task, succeeded
from autoprompt.config import GCGConfig, GCGSchedule
from frozen_lm.results import load_result

logger = logging.getLogger(__name__)


def stage_config(config: GCGConfig, iters: int) -> GCGConfig:
    """The config of one stage: `iters` iterations, stopping once greedy generation reproduces every goal."""
    schedule = config.schedule if config.schedule is not None else GCGSchedule(preset="none")
    return replace(config, iters=iters, schedule=replace(schedule, stop_on_success=True))


def run_universal(lm, rows: list[dict], config: GCGConfig, setup: dict, out: Path | None,
                  progress: bool) -> BehaviorsResult:
    """Stages over growing prefixes of `rows` (see the module docstring) and the final suffix's records."""
    from frozen_lm.runner import run

    task = row_task(lm, setup)
    used, elapsed, start, curve, stages, covered = 0, 0.0, None, [], [], 0
    reached: dict[int, float] = {}
    k = 1
    while k <= len(rows) and used < config.iters:
        folder = str(out / "universal" / f"stage-{k}") if out is not None else None
        previous = load_result(folder) if folder is not None and (Path(folder) / "config.json").exists() else None
        cfg = stage_config(config, config.iters - used)
        if previous is not None and previous.status == "done" and (succeeded(previous)
                                                                   or previous.iterations >= cfg.iters):
            result = previous
        else:
            inputs = {"start_ids": start} if start is not None else None
            result = run("gcg", task, rows[:k], rows[:k], cfg, out=folder, resume=folder if previous else None,
                         progress=progress, inputs=inputs)
        covered = k
        part = curve_of(result.history)
        curve += [[round(elapsed + t, 4), loss, k] for t, loss in part["curve"]]
        used += part["iterations"]
        elapsed += part["seconds"]
        start = list(result.trigger_ids)
        success = succeeded(result)
        stages.append({"goals": k, "iterations": part["iterations"], "seconds": part["seconds"], "success": success,
                       "trigger": result.trigger_text, "out": folder})
        logger.info("universal stage %d: %s after %d iterations", k, "every goal reproduced" if success else "budget spent",
                    part["iterations"])
        if not success:
            break
        for i in range(k):
            reached.setdefault(i, round(elapsed, 4))
        k += 1
    result = BehaviorsResult([], setup)
    if start is None:
        return result
    prefixes = setup["refusal_prefixes"]
    for i, row in enumerate(rows):
        record = record_of(task, [row], None, prefixes, trigger=start)
        result.rows.append({"index": i, **row, **record, "time_to_success": reached.get(i),
                            "in_suffix": i < covered, "iterations": used, "seconds": round(elapsed, 4)})
    result.suffix = {"trigger": lm.tokenizer.decode(start), "trigger_ids": start, "stages": stages,
                     "goals_in": covered, "curve": curve, "iterations": used, "seconds": round(elapsed, 4)}
    if out is not None:
        result.save(out)
    return result
