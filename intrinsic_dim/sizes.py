"""Intrinsic dimension against model size: the same measurement on several models, and d90 against
their parameter counts (Aghajanyan et al., 2020: larger pretrained models tend to need fewer).

    s = intrinsic_dim.measure_models(task, train, dev, IntrinsicDimConfig(space="prompt", dims=[...]),
                                     models=["gemma3-270m"])
    s.rows          # one per model: model, parameters, D, d90 (min-max over seeds), baseline, manual, ...
    s.results[1]    # that model's D90Result; s.trend: whether the larger model needs fewer dimensions
    s.plot("d90_by_size.png"); s.save("runs/sizes")   # summary.json + d90_by_size.png

The task's model comes first and `models=` adds the others (as `autoprompt.search(models=)`). Each
model runs `intrinsic_dim.measure` on its own, one after the other (the task's spec on that model,
the same config and seed), so memory holds one model's training at a time; models given by name are
loaded when their turn comes and released after it (their result's `lm` is None). With `out`, each
model's artifact goes to OUT/<n>-<model>/ (resume=True continues the ones already there) and OUT
gets summary.json and d90_by_size.png.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from frozen_lm.errors import UserError
from frozen_lm.events import Callback
from frozen_lm.runner import run
from frozen_lm.task import PromptTask
from intrinsic_dim.config import IntrinsicDimConfig
from intrinsic_dim.params import n_parameters
from intrinsic_dim.result import METHOD, D90Result

logger = logging.getLogger(__name__)
SUMMARY, PLOT = "summary.json", "d90_by_size.png"


def folder_name(i: int, name: str) -> str:
    """OUT/<n>-<model>: the model's folder name in a sweep over models (a path's last part, made safe)."""
    return f"{i}-{re.sub(r'[^A-Za-z0-9._-]+', '-', Path(str(name)).name).strip('-') or 'model'}"


@dataclass
class ModelSizes:
    """d90 of one task on several models: results (one D90Result per model, in order) and rows (one per
    model: model, parameters, D, d90, d90_min, d90_max, baseline, target, manual, majority, refused,
    status). trend: a sentence comparing the largest and the smallest model with a d90."""

    results: list[D90Result]
    rows: list[dict] = field(default_factory=list)

    @classmethod
    def of(cls, results: list[D90Result], parameters: list[int | None] | None = None) -> ModelSizes:
        """From finished results (parameters: each model's count; default: the count each result recorded,
        else its model's)."""
        counts = parameters or [r.parameters if r.parameters is not None else n_parameters(r.lm) for r in results]
        rows = [{"model": r.model.get("name"), "parameters": n, "D": r.D, "d90": r.d90, "d90_min": r.d90_min,
                 "d90_max": r.d90_max, "baseline": r.baseline, "target": r.target, "manual": r.manual,
                 "majority": r.majority, "refused": (r.d90_refused or {}).get("reason"), "status": r.status}
                for r, n in zip(results, counts)]
        return cls(list(results), rows)

    @property
    def trend(self) -> str | None:
        """Whether the largest model with a d90 needs fewer dimensions than the smallest one."""
        found = sorted((r for r in self.rows if r["d90"] is not None and r["parameters"]), key=lambda r: r["parameters"])
        if len(found) < 2:
            missing = [r["model"] for r in self.rows if r["d90"] is None]
            return f"no comparison: no d90 on {', '.join(map(str, missing))}" if missing else None
        small, large = found[0], found[-1]
        if large["d90"] == small["d90"]:
            word = "as many dimensions as"
        else:
            word = "fewer dimensions than" if large["d90"] < small["d90"] else "more dimensions than"
        return (f"{large['model']} ({large['parameters']:,} parameters) needs {word} {small['model']} "
                f"({small['parameters']:,}): d90 {large['d90']:,} vs {small['d90']:,}")

    def plot(self, path) -> Path:
        """d90 against parameter count (PNG, needs matplotlib)."""
        from intrinsic_dim.plot import plot_d90_by_size

        cfg = self.results[0].config if self.results else None
        what = f"{cfg.space} space, {cfg.projection}" if cfg is not None else ""
        return plot_d90_by_size(self.rows, path, f"d90 against model size ({what})")

    def save(self, out) -> Path:
        """OUT/summary.json (rows, trend) and OUT/d90_by_size.png (without matplotlib: not written, a warning)."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / SUMMARY).write_text(json.dumps({"rows": self.rows, "trend": self.trend}, indent=2, default=str) + "\n")
        try:
            self.plot(out / PLOT)
        except UserError as e:  # no matplotlib
            logger.warning("%s: not written (%s)", out / PLOT, e)
        return out


def measure_models(task: PromptTask, train, dev, config: IntrinsicDimConfig | None = None, *, models, prompt=None,
                   out=None, resume: bool = False, overwrite: bool = False, callback: Callback | None = None,
                   progress: bool = True) -> ModelSizes:
    """d90 of the task on its model and on each of `models` (FrozenLMs or names, loaded on the task's
    model's device and dtype), with the same config: a ModelSizes (one D90Result per model, the
    summary rows, d90 against parameter count). prompt: trigger text for [T] slots in model space
    (text, so every model reads it). out: OUT/<n>-<model>/ per model, OUT/summary.json and
    OUT/d90_by_size.png; resume=True continues (or takes as they are) the models' runs already in
    OUT; overwrite=True replaces them."""
    from frozen_lm.model import FrozenLM

    if isinstance(models, str | FrozenLM):
        models = [models]
    if not models:
        raise UserError("models= is empty; give the models to measure besides the task's (FrozenLMs or names)")
    if prompt is not None and not isinstance(prompt, str):
        raise UserError("prompt= for several models must be trigger text (every model reads text; token ids are "
                        "one tokenizer's)")
    config = config or IntrinsicDimConfig()
    results = []
    for i, entry in enumerate([task.lm, *models]):
        if not isinstance(entry, FrozenLM | str):
            raise UserError(f"models= takes models (FrozenLM) or their names, got {type(entry).__name__}")
        lm = entry if isinstance(entry, FrozenLM) else FrozenLM.load(entry, str(task.lm.device),
                                                                       str(task.lm.dtype).split(".")[-1])
        here = task if lm is task.lm else PromptTask.from_spec(lm, task.spec)
        sub = Path(out) / folder_name(i, lm.name) if out is not None else None
        again = sub if resume and sub is not None and (sub / "config.json").exists() else None
        logger.info("intrinsic dimension on %s (%d of %d)", lm.name, i + 1, 1 + len(models))
        result = run(METHOD, here, train, dev, config, out=sub, resume=again, overwrite=overwrite, callback=callback,
                     progress=progress, inputs={"prompt": prompt})  # = intrinsic_dim.measure
        if result.parameters is None:  # an artifact written before results recorded their model's size
            result.parameters = n_parameters(lm)
        if isinstance(entry, str):
            result.lm = None  # loaded here: released after its run
        results.append(result)
    sizes = ModelSizes.of(results)
    if out is not None:
        sizes.save(out)
    return sizes
