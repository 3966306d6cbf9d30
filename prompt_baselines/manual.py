"""The manual baseline as a method: a hand-written template, scored as written (nothing trains).

Registered as method 'manual' (no command of its own: `autoprompt evaluate --template` scores a
template), so a grid treats it like every other method: `run` returns a result with its dev
metrics, the result saves an artifact (config.json + results.json, an empty weights file), and
`autoprompt evaluate DIR` scores it on any split.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from frozen_lm import data as data_mod
from frozen_lm.artifact import claim_out
from frozen_lm.errors import UserError
from frozen_lm.evaluate import Bound, evaluate
from frozen_lm.results import Result, base_fields

METHOD = "manual"


@dataclass
class ManualConfig:
    """Options of the manual baseline (only how it is scored)."""

    batch_size: int = field(default=32, metadata={"help": "examples per forward pass"})
    seed: int = field(default=0, metadata={"help": "random seed (scoring itself is deterministic)"})

    def __post_init__(self):
        if self.batch_size < 1:
            raise UserError(f"--batch-size must be at least 1, got {self.batch_size}")


@dataclass
class ManualResult(Result):
    """The template as written; metrics['dev'] its dev score."""

    module = "prompt_baselines"

    def bind(self, task) -> Bound:
        self.check_model(task.lm)
        if task.template.n_triggers:
            raise UserError(f"template {task.spec.template!r} has [T] slots; the manual baseline scores a template "
                            "as written")
        return Bound(task)


def run_manual(task, train=None, dev=None, config: ManualConfig | None = None, *, out=None, overwrite: bool = False,
               callback=None, progress: bool = False) -> ManualResult:
    """Score the task's template on `dev` (train is not used); save it to `out` when given."""
    config = config or ManualConfig()
    if task.template.n_triggers:
        raise UserError(f"template {task.spec.template!r} has [T] slots; the manual baseline needs a template "
                        "without them")
    if out is not None:
        claim_out(out, overwrite)
    started = time.perf_counter()
    data, metrics = {}, {}
    if dev is not None:
        ds = data_mod.load(dev)
        data["dev"] = data_mod.describe(dev, ds)
        metrics["dev"] = evaluate(task, ds, batch_size=config.batch_size)
    result = ManualResult(**base_fields(METHOD, config, task, data), metrics=metrics,
                          timings={"total_seconds": time.perf_counter() - started})
    if out is not None:
        result.save(out)
    return result
