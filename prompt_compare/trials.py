"""A cell's runs: one setting through the one runner, measured (`run_setting`), or every setting of
a sweep, one after another in the cell's worker, keeping the best on dev (`run_sweep`).

A sweep's settings run as parts of their cell, not as cells of their own, so a grid's cells stay
(task, model, method, seed) and Ray schedules whole cells. Each setting's artifact is
DIR/cells/<id>/setting-<k>/ and each finished setting is appended to DIR/cells/<id>/sweep.jsonl
at once, so a cell cut short (a killed worker, Ctrl-C, the retry of a failed attempt) runs only the
settings it has not finished (a setting run on other data, by the files' digests, runs again).
Settings are seeded from the cell's seed like any run: a setting's numbers are those of the same
config run alone. A failed setting is recorded with its error and left out of the choice; the cell
fails when every setting failed. The chosen setting's weights are kept; the others' weights files
are deleted once the cell has chosen (a full fine-tuning setting is 513 MiB), unless the cell keeps
them all (keep_weights); their config.json and results.json stay.

A setting that differs from a finished one only in fields a resume of the method may raise (its
`resumable` fields, e.g. a search's iters) continues that setting's artifact instead of starting
over (`resume_source`): AutoPrompt's 40 iterations go on from its 20 (a resumed run equals the
uninterrupted one, tested per method). Its costs are the increment, so the cell's summed costs are
what the sweep really spent; its outcome names the setting it continued (`resumed_from`). A setting
whose own run was cut short (a killed machine) continues that run the same way, when the method can
resume: `resumed_from` is then its own k, and its costs add what the cut run had spent (kept in
setting-<k>.spent.json after every iteration or step).
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from frozen_lm.artifact import CONFIG, WEIGHTS
from frozen_lm.errors import UserError
from frozen_lm.parallel import error_text
from prompt_compare.cells import Cell
from prompt_compare.meter import Meter
from prompt_compare.spec import file_digest, source_digest
from prompt_compare.sweep import choose, edges, setting_text

logger = logging.getLogger(__name__)
PROGRESS = "sweep.jsonl"
COSTS = ("forward_tokens", "backward_tokens", "wall_s")  # summed over a sweep's settings (peak_mb: the largest)


def run_setting(c: Cell, method, task, config, art: Path, selecting: bool = False,
                resume: Path | None = None) -> tuple[dict, object]:
    """Run one config of a cell into `art` and score it on dev: (its outcome, the result). The meter
    counts the method's run; with `selecting` (a sweep picks on this dev score) also the dev scoring,
    which is then part of the tuning's cost. resume: an artifact of the same cell to continue (`art`
    itself: its run was cut short, and what that run spent, kept in `spent_file(art)` after every
    event, is added to the costs). Raises what the run raises."""
    from frozen_lm.evaluate import evaluate
    from frozen_lm.runner import run

    spent = spent_file(art)
    base = read_spent(spent) if resume is not None and Path(resume).resolve() == art.resolve() else {}
    with Meter(task.lm.device) as meter:
        started = time.perf_counter()

        def note(event) -> None:  # after every iteration or step: what this setting has spent so far
            write_spent(spent, _add(base, meter.forward_tokens, meter.backward_tokens, time.perf_counter() - started))

        result = run(method, task, c.train, c.dev, config, out=art, overwrite=True, progress=False, resume=resume,
                     callback=note)
        if selecting:
            dev = evaluate(task, c.dev, prompt=result)
        wall = time.perf_counter() - started
    if not selecting:
        dev = evaluate(task, c.dev, prompt=result)
    costs = _add(base, meter.forward_tokens, meter.backward_tokens, wall)
    outcome = {"status": "done", "dev": dev[task.metric], "dev_metrics": dev,
               "trainable_params": trainable(meter, result, method.trains), "bytes_stored": stored_bytes(result),
               "weights_sha256": file_digest(art / WEIGHTS), **costs, "peak_mb": meter.peak_bytes / 2**20,
               "memory_source": meter.memory_source}
    spent.unlink(missing_ok=True)
    return outcome, result


def _add(base: dict, forward: int, backward: int, wall: float) -> dict:
    return {"forward_tokens": base.get("forward_tokens", 0) + forward,
            "backward_tokens": base.get("backward_tokens", 0) + backward, "wall_s": base.get("wall_s", 0.0) + wall}


def spent_file(art: Path) -> Path:
    """Where a setting's run keeps what it has spent so far (beside its artifact, not in it)."""
    return art.parent / f"{art.name}.spent.json"


def read_spent(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: data[k] for k in COSTS if isinstance(data.get(k), (int, float))}


def write_spent(path: Path, costs: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(costs), encoding="utf-8")
    os.replace(tmp, path)


def run_sweep(c: Cell, method, task, out: Path) -> tuple[dict, object, dict]:
    """Every setting of a sweep cell (those finished before are read back): (the chosen setting's
    outcome, its result, what the record adds: space, chosen, settings, sweep, edge, costs summed)."""
    from frozen_lm.configs import from_dict
    from frozen_lm.results import load_result

    folder = out / "cells" / c.id
    folder.mkdir(parents=True, exist_ok=True)
    data = {split: source_digest(getattr(c, split)) for split in ("train", "dev")}
    before = read_progress(folder, data)
    outcomes, kept = [], (None, None)  # kept: (k, result) of the best so far run in this process
    there = _artifact_there(folder)
    for k, setting in enumerate(c.settings()):
        art = folder / f"setting-{k}"
        outcome = before.get(k)
        if outcome is None or outcome.get("setting") != setting or not (art / CONFIG).exists():
            config = from_dict(method.config, {**c.config, **setting}, c.label)
            cut = method.resumable is not None and there(k)  # its own run, cut short
            source = k if cut else resume_source(method.resumable, outcomes, setting, there)
            outcome, result = _try(c, method, task, config, art, source)
            outcome = {"k": k, "setting": setting, "artifact": f"cells/{c.id}/setting-{k}", "data_sha256": data,
                       **outcome}
            append_progress(folder, outcome)
            logger.info("%s: setting %d of %d (%s): %s", c.label, k + 1, len(c.settings()), setting_text(setting),
                        f"dev {outcome['dev']:.4f}" if outcome["status"] == "done" else outcome["error"])
        else:
            result = None
        outcomes.append(outcome)
        if result is not None and choose(_devs(outcomes)) == k:
            kept = (k, result)
    chosen = choose(_devs(outcomes))
    if chosen is None:
        raise RuntimeError(f"every setting of the sweep failed; the first: {outcomes[0].get('error')}")
    result = kept[1] if kept[0] == chosen else load_result(folder / f"setting-{chosen}")
    if not c.keep_weights:
        for k in range(len(outcomes)):
            if k != chosen:
                (folder / f"setting-{k}" / WEIGHTS).unlink(missing_ok=True)
    return outcomes[chosen], result, sweep_fields(c, outcomes, chosen)


def _try(c: Cell, method, task, config, art: Path, source: int | None = None) -> tuple[dict, object]:
    """run_setting (continuing setting `source` of the cell when given; if the method refuses that
    resume, from scratch); a setting that raises is an outcome with its error (Ctrl-C still stops)."""
    started = time.perf_counter()
    if source is not None:
        try:
            outcome, result = run_setting(c, method, task, config, art, selecting=True,
                                          resume=art.parent / f"setting-{source}")
            return {**outcome, "resumed_from": source}, result
        except UserError as e:
            logger.info("%s: setting %s cannot continue setting %d (%s); it starts over", c.label, art.name, source, e)
        except Exception:  # noqa: BLE001 - what fails on resume is tried again from scratch
            logger.debug("continuing setting %d failed", source, exc_info=True)
    try:
        return run_setting(c, method, task, config, art, selecting=True)
    except Exception as e:  # noqa: BLE001 - one setting (a diverging rate, say) must not fail the sweep
        logger.debug("setting failed", exc_info=True)
        return {"status": "failed", "error": error_text(e), "wall_s": time.perf_counter() - started}, None


def resume_source(resumable: tuple[str, ...] | None, outcomes: list[dict], setting: dict,
                  usable=lambda k: True) -> int | None:
    """The finished setting a new `setting` may continue: one whose values are the same except for
    numeric fields in `resumable` (the fields a resume of the method may change), each no larger
    than the new one's, and `usable(k)` (its artifact is there); of several, the one furthest along
    (largest values; the later on ties). None when there is none, or the method cannot resume."""
    if not resumable:
        return None
    best, best_key = None, None
    for o in outcomes:
        old = o.get("setting") or {}
        if o.get("status") != "done" or set(old) != set(setting) or old == setting:
            continue
        differ = [f for f in setting if old[f] != setting[f]]
        if not all(f in resumable and _number(old[f]) and _number(setting[f]) and old[f] <= setting[f]
                   for f in differ) or not usable(o["k"]):
            continue
        key = tuple(old[f] for f in differ)
        if best_key is None or key >= best_key:
            best, best_key = o["k"], key
    return best


def _artifact_there(folder: Path):
    return lambda k: (folder / f"setting-{k}" / CONFIG).exists() and (folder / f"setting-{k}" / WEIGHTS).exists()


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _devs(outcomes: list[dict]) -> list[float | None]:
    return [o.get("dev") if o.get("status") == "done" else None for o in outcomes]


def sweep_fields(c: Cell, outcomes: list[dict], chosen: int) -> dict:
    """What a sweep cell's record adds and replaces: its costs summed over every setting (tuning is
    part of a method's price; peak memory: the largest), the space, the chosen setting, every
    setting's dev and costs, and the chosen values at the edge of their space."""
    setting = outcomes[chosen]["setting"]
    warn = edges(c.space, setting)
    if warn:
        logger.warning("%s: the chosen %s (%s): a wider space may do better", c.label, setting_text(setting),
                       "; ".join(warn))
    fields = {k: sum(o.get(k) or 0 for o in outcomes) for k in COSTS}
    fields["peak_mb"] = max(o.get("peak_mb") or 0.0 for o in outcomes)
    keys = ("k", "setting", "status", "dev", "error", "resumed_from", *COSTS, "peak_mb")
    return {**fields, "space": c.space, "chosen": setting, "settings": len(outcomes), "edge": warn,
            "weights_kept": "all" if c.keep_weights else "chosen",
            "sweep": [{k: o[k] for k in keys if k in o} for o in outcomes]}


# ---------------------------------------------------------------- the progress file
def read_progress(folder: Path, data: dict) -> dict[int, dict]:
    """{k: outcome} of the settings finished before on the same data (the last line of a k counts;
    damaged lines and failed settings are skipped, so those run again)."""
    path = folder / PROGRESS
    out: dict[int, dict] = {}
    if not path.exists():
        return out
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            outcome = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(outcome, dict) and outcome.get("status") == "done" and outcome.get("data_sha256") == data:
            out[int(outcome["k"])] = outcome
    return out


def append_progress(folder: Path, outcome: dict) -> None:
    """Append one finished setting as one line (one write, synced)."""
    fd = os.open(folder / PROGRESS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(outcome, sort_keys=True, default=str) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------------- accounting
def trainable(meter: Meter, result, trains: str) -> int:
    """Values the method optimized: the optimizer's tensors; discrete search: its token slots."""
    if meter.trainable:
        return meter.trainable
    if trains == "tokens" and "trigger_ids" in result.tensors:
        return int(result.tensors["trigger_ids"].numel())
    return 0


def stored_bytes(result) -> int:
    """Bytes a task keeps beside the shared frozen model: the data of the result's `task_tensors()`
    (a soft prompt's vectors, not the initial values its artifact also keeps; a search's trigger ids,
    not its beam; no file headers)."""
    return sum(t.numel() * t.element_size() for t in result.task_tensors().values())
