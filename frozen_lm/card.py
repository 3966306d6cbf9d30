"""The model card: README.md in every artifact folder, so a run folder is ready to share as it is.

`model_card(meta, results, folder, lines)` writes, from what the artifact saves (config.json's meta
and results.json's fields): the method and its one-line summary, the model, the task, the data
splits (source, rows, sha256), the metrics, the seed and config, the versions and how to load the
folder (`load_result` and `autoprompt evaluate`). Nothing method-specific: a method adds lines
through its Result's `card_lines()`.
"""

from __future__ import annotations

import json
import math

LOAD = """```python
from frozen_lm import FrozenLM, evaluate, load_result

r = load_result("{folder}")
lm = FrozenLM.load(r.model["name"])
evaluate(r.task_for(lm), "{data}", prompt=r)
```

or from the command line: `autoprompt evaluate {folder} --data {data}`"""


def model_card(meta: dict, results: dict, folder: str, lines: list[str] | None = None) -> str:
    """README.md text of an artifact (meta: what config.json holds; results: what results.json holds;
    folder: the folder's name as the loading lines show it; lines: the method's own lines)."""
    method, model = meta["method"], meta.get("model") or {}
    status = results.get("status", "done")
    out = ["---", "tags:", "- autoprompt-suite", f"- {method}", "---", "",
           f"# {method} on {model.get('name', 'a frozen model')}", ""]
    summary = _summary(method)
    if summary:
        out += [summary, ""]
    out += [f"A `{method}` run of autoprompt-suite {meta.get('versions', {}).get('package', '')}".rstrip()
            + f" (status: {status}; seed {meta.get('seed')}). Files: `config.json` (everything to rerun it), "
            "`weights.safetensors` (what it learned), `results.json` (metrics, history, timings).", ""]
    if lines:
        out += [*lines, ""]
    out += ["## Model", "", _model_line(model), "", "## Task", ""]
    out += [f"- {k}: {_inline(v)}" for k, v in (meta.get("task") or {}).items() if v not in (None, False, 0)]
    out += ["", "## Data", "", *_data_table(meta.get("data") or {}), "", "## Metrics", ""]
    out += _metrics_table(results.get("metrics") or {})
    out += ["", "## Config", "", f"seed: {meta.get('seed')}", "", "```json",
            json.dumps(meta.get("config") or {}, indent=2, sort_keys=True, default=str), "```", "",
            "## How to load it", "", LOAD.format(folder=folder, data=_data_to_score(meta.get("data") or {})), ""]
    versions = meta.get("versions") or {}
    if versions:
        out += ["## Versions", "", ", ".join(f"{k} {v}" for k, v in sorted(versions.items())), ""]
    return "\n".join(out)


def _summary(method: str) -> str:
    """The registered method's one-line summary ('' when it is not registered here)."""
    from frozen_lm.methods import methods

    found = methods().get(method)
    return found.summary if found is not None else ""


def _model_line(model: dict) -> str:
    facts = [model.get("architecture"), model.get("kind") and f"{model['kind']} LM",
             model.get("n_layers") and f"{model['n_layers']} layers",
             model.get("hidden_size") and f"hidden size {model['hidden_size']}",
             model.get("vocab_size") and f"vocabulary {model['vocab_size']}", model.get("dtype")]
    shown = ", ".join(str(f) for f in facts if f)
    return f"`{model.get('name')}`" + (f" ({shown})" if shown else "") + ", frozen: its weights are not changed."


def _inline(value) -> str:
    if isinstance(value, str):
        return f"`{value}`"
    return f"`{json.dumps(value, sort_keys=True, default=str)}`"


def _data_table(data: dict) -> list[str]:
    if not data:
        return ["(no data: a task with a fixed target)"]
    rows = ["| split | source | rows | sha256 |", "|---|---|---|---|"]
    for split, d in data.items():
        rows.append(f"| {split} | {d.get('source', '')} | {d.get('rows', '')} | `{d.get('sha256', '')}` |")
    return rows


def _metrics_table(metrics: dict) -> list[str]:
    """One row per split (dev, test, ...) with its numbers; numbers outside a split as a list."""
    splits = {k: v for k, v in metrics.items() if isinstance(v, dict)}
    rest = {k: v for k, v in metrics.items() if _number(v)}
    if not splits and not rest:
        return ["(none recorded)"]
    cols = list(dict.fromkeys(c for v in splits.values() for c, x in v.items() if _number(x)))
    out = []
    if splits and cols:
        out += ["| split | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
        out += [f"| {name} | " + " | ".join(_fmt(v.get(c)) for c in cols) + " |" for name, v in splits.items()]
    if rest:
        out += ([""] if out else []) + [f"- {k}: {_fmt(v)}" for k, v in rest.items()]
    return out


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _fmt(value) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4f}"
    return "" if value is None else str(value)


def _data_to_score(data: dict) -> str:
    """The split a reader scores the prompt on: the run's test (else dev) file, else a placeholder."""
    for split in ("test", "dev"):
        source = (data.get(split) or {}).get("source")
        if isinstance(source, str) and source and not source.startswith("<"):
            return source
    return "test.jsonl"
