"""A grid's `models` axis: every method runs on each model (cells of their own); then every discrete
result (a method that trains 'tokens' or 'nothing', and a derived discrete prompt such as a soft
prompt's nearest-token reading) is also scored on the test split of every other model. A soft prompt
or trained weights belong to their model, so those fill only the diagonal.

Scoring on another model is the shared evaluator's: `evaluate(task_on_target, test, prompt=result)`
(frozen_lm.transfer), which keeps the token ids on a model with the same tokenizer and carries the
prompt as text to another tokenizer; what it reports of the tokens (metrics' 'transfer': the drift,
e.g. how many slots stayed one token) is the record's 'drift'. A derived prompt is marked with the
model it was read on (`frozen_lm.transfer.sourced`) so it moves the same way. Each (source cell,
target model, prompt) is a job of its own, run like cells (in order or on Ray, retried once) after
the cells; its record goes to DIR/transfer.jsonl, and a rerun skips the jobs whose source cell is
unchanged. transfer.md / transfer.csv: per task, rows (method, source model) x columns (target
model), mean test score over seeds; plots/transfer.png the same as a heatmap.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from frozen_lm.parallel import Job

DISCRETE = ("tokens", "nothing")


@dataclass(frozen=True)
class TransferJob(Job):
    """One discrete result of a finished cell, to score on another model."""

    id: str
    cell: str  # the source cell's id
    task: str
    method: str  # the table's row: the cell's method, or 'METHOD (derived name)'
    preset: str
    seed: int
    source: str  # the model it was made on
    target: str  # the model it is scored on
    artifact: str
    template: str
    label_map: dict | None
    label_field: str | None
    text_fields: str | None
    test: str
    derived: str | None = None  # the derived prompt's name (None: the result itself)
    device: str = "auto"
    dtype: str = "auto"
    module: str = ""

    @property
    def label(self) -> str:
        return f"{self.task} / {self.method} / seed {self.seed}: {self.source} -> {self.target}"


def transfer_jobs(cells: list, records: dict[str, dict], models: list[str]) -> list[TransferJob]:
    """The jobs of a grid's finished cells: each discrete result (and derived discrete prompt) on each
    model it was not made on. A job's id names its source cell's run (its finish time), so a cell
    run again gets new jobs."""
    jobs = []
    for c in cells:
        record = records.get(c.id)
        if record is None or record.get("status") != "done":
            continue
        prompts = [(c.method, None)] if record.get("trains") in DISCRETE else []
        prompts += [(d["method"], d["method"][len(c.method) + 2:-1]) for d in record.get("derived", [])
                    if d.get("trains") in DISCRETE]
        for target in models:
            if target == c.model:
                continue
            for row, derived in prompts:
                key = json.dumps([c.id, record.get("finished_at"), target, derived])
                jobs.append(TransferJob(hashlib.sha256(key.encode()).hexdigest()[:16], c.id, c.task, row, c.preset,
                                        c.seed, c.model, target, record["artifact"], c.template, c.label_map,
                                        c.label_field, c.text_fields, c.test, derived, c.device, c.dtype, c.module))
    return jobs


def run_transfer(job: dict, out: str, threads: int | None = None) -> dict:
    """Score one discrete result on its target model's test split; the record for transfer.jsonl."""
    import torch

    from frozen_lm.evaluate import evaluate
    from frozen_lm.results import load_result
    from frozen_lm.task import PromptTask
    from prompt_compare.execute import compact, load_model

    j = TransferJob.from_dict(job)
    if threads:
        torch.set_num_threads(threads)
    started = time.perf_counter()
    result = load_result(Path(out) / j.artifact)
    prompt = result if j.derived is None else _derived_prompt(j, result)
    task = PromptTask(load_model(j.target, j.device, j.dtype), j.template, j.label_map, label_field=j.label_field,
                      text_fields=j.text_fields)
    test = evaluate(task, j.test, prompt=prompt, examples=True)
    examples = compact(test.pop("examples"))
    drift = (test.pop("transfer", None) or {}).get("drift")
    return {"id": j.id, "cell": j.cell, "task": j.task, "method": j.method, "preset": j.preset, "seed": j.seed,
            "source": j.source, "target": j.target, "model": j.target, "status": "done", "metric": task.metric,
            "test": test[task.metric], "test_metrics": test, "test_examples": examples, "drift": drift,
            "eval_s": time.perf_counter() - started, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S")}


def _derived_prompt(j: TransferJob, result):
    """The derived prompt `j.derived` of a result, read off on its source model (and marked with it)."""
    from frozen_lm.task import PromptTask
    from frozen_lm.transfer import sourced
    from prompt_compare.execute import cell_method, load_model

    method = cell_method(j)
    task = PromptTask(load_model(j.source, j.device, j.dtype), j.template, j.label_map, label_field=j.label_field,
                      text_fields=j.text_fields)
    for d in method.derived(result, task):
        if d.name == j.derived:
            return sourced(d.prompt, task)
    raise RuntimeError(f"{j.label}: the result no longer derives {j.derived!r}")


def failed_transfer(job: TransferJob, error: str, attempts: int) -> dict:
    return {"id": job.id, "cell": job.cell, "task": job.task, "method": job.method, "preset": job.preset,
            "seed": job.seed, "source": job.source, "target": job.target, "model": job.target, "status": "failed",
            "error": error, "attempts": attempts, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S")}


# ---------------------------------------------------------------- the table
def transfer_rows(rows: list[dict], transfers: list[dict], models: list[str]) -> list[dict]:
    """One row per (task, method, source model): {target model: (mean, sd, seeds)} over seeds; the
    diagonal is the cell's own test score. rows: the grid's cell records (derived rows inside)."""
    from prompt_compare.significance import flatten

    own = flatten(rows)
    out = []
    for task, method, source in dict.fromkeys((r["task"], r["method"], r.get("model")) for r in own):
        scores = {}
        for target in models:
            if target == source:
                mine = [r for r in own if (r["task"], r["method"], r.get("model")) == (task, method, source)]
            else:
                mine = [t for t in transfers if t.get("status") == "done"
                        and (t["task"], t["method"], t["source"], t["target"]) == (task, method, source, target)]
            values = [r["test"] for r in mine if r.get("test") is not None]
            drifts = [r.get("drift") for r in mine if target != source and r.get("drift")]
            failed = [t.get("error") for t in transfers if t.get("status") == "failed"
                      and (t["task"], t["method"], t["source"], t["target"]) == (task, method, source, target)]
            scores[target] = {"mean": statistics.fmean(values) if values else None,
                              "sd": statistics.stdev(values) if len(values) > 1 else None, "seeds": len(values),
                              "error": failed[-1] if failed and not values else "", "drift": drift_text(drifts)}
        first = next(r for r in own if (r["task"], r["method"]) == (task, method))
        out.append({"task": task, "method": method, "source": source, "trains": first.get("trains", ""),
                    "metric": first.get("metric", ""), "scores": scores})
    return out


def drift_text(drifts: list[dict]) -> str:
    """What became of the prompts' tokens over the seeds: 'ids kept', or 'as text: 7 of 9 slots one
    token, 1 unknown' (summed over seeds); '' without drift reports."""
    if not drifts:
        return ""
    if all(d.get("how") == "ids" for d in drifts):
        return "ids kept"
    slots = sum(d.get("n_tokens_before") or 0 for d in drifts)
    one, unknown = sum(d.get("n_one_token") or 0 for d in drifts), sum(d.get("n_unknown") or 0 for d in drifts)
    return f"as text: {one} of {slots} slots one token, {unknown} unknown" if slots else "as text"


def transfer_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["task", "method", "trains", "source", "target", "test_mean", "test_sd", "seeds", "error", "drift"])
    for r in rows:
        for target, s in r["scores"].items():
            writer.writerow([r["task"], r["method"], r["trains"], r["source"], target, s["mean"], s["sd"], s["seeds"],
                             s["error"], s["drift"]])
    return buf.getvalue()


def transfer_markdown(rows: list[dict], models: list[str]) -> str:
    lines = []
    for task in dict.fromkeys(r["task"] for r in rows):
        lines += [f"### {task}", "", "| method | made on | " + " | ".join(f"on {m}" for m in models) + " |",
                  "|" + "---|" * (len(models) + 2)]
        for r in (r for r in rows if r["task"] == task):
            cells = []
            for m in models:
                s = r["scores"][m]
                text = "-" if s["mean"] is None else f"{100 * s['mean']:.1f}" + (
                    f" ± {100 * s['sd']:.1f}" if s["sd"] is not None else "")
                cells.append(f"**{text}**" if m == r["source"] else ("failed" if s["error"] else text))
            lines.append(f"| {r['method']} | {r['source']} | " + " | ".join(cells) + " |")
        lines.append("")
    errors = {f"- {r['task']} / {r['method']} from {r['source']} on {m}: {s['error']}"
              for r in rows for m, s in r["scores"].items() if s["error"]}
    drifts = [f"- {r['task']} / {r['method']} from {r['source']} on {m}: {s['drift']}"
              for r in rows for m, s in r["scores"].items() if s["drift"] and s["drift"] != "ids kept"]
    lines += [*sorted(errors), *drifts, *([""] if errors or drifts else [])]
    lines.append("Test score (mean ± sd over seeds) of each result made on one model (rows) and scored on each "
                 "model (columns); bold: the model it was made on (the grid's table). Discrete prompts (methods "
                 "that train tokens or nothing) are scored on every model (token ids kept where the tokenizer is "
                 "the same, else carried as text; the notes above say how many slots stayed one token); soft "
                 "prompts and trained weights belong to their model (-).")
    return "\n".join(lines) + "\n"
