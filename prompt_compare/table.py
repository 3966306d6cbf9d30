"""The grid's table: one row per (task, model, method), mean and sd over the finished seeds, written
as table.md (for people) and table.csv (for scripts). A soft prompt's nearest-token reading is a row
of its own, right after the prompt it was read from. A swept method's row shows the setting each
seed chose and counts the whole sweep in its costs; significance marks come from
prompt_compare.significance."""

from __future__ import annotations

import csv
import io
import statistics
from collections import Counter

from prompt_compare.significance import TEST
from prompt_compare.sweep import setting_text

NUMBERS = ("trainable_params", "bytes_stored", "forward_tokens", "backward_tokens", "wall_s", "peak_mb")
NOTES = """Test: the score on the test split, which no method saw; dev (the split every method selects on)
beside it. Mean ± sd over the seeds that finished (sd: sample standard deviation). Trainable: the
values an optimizer updated (discrete search: the token slots it chose; manual: 0). Stored: bytes of
what a task keeps beside the shared frozen model (the tensors that apply the result: a soft prompt's
vectors, a search's token ids, the baselines' trained tensors; not the initial values or search state
the artifact also keeps, nor file headers). Tokens: measured, the
token positions (padding included) of every forward pass through the model during the method's run,
selection on dev and a method's own end-of-run score of its train split included, test scoring excluded; backward: those passes that were differentiated.
Wall: the method's run in its worker. Peak: peak memory above the worker's memory at the start of the
cell ({memory})."""
SWEEP_NOTES = """Chosen: the setting each seed kept, the best on dev of every setting of its space (a tie:
the first in space order), with how many seeds chose it; tokens and wall count every setting's run
and the dev scoring that chose among them (tuning is part of a method's price), peak the largest."""
SIG_NOTES = """vs best: p of the {test} against the best method of the task (✓: not significantly worse, p ≥
0.05); vs manual: p against the manual template."""


def aggregate(records: list[dict], order: list[tuple]) -> list[dict]:
    """Rows in `order` ((task, method) or (task, model, method), the grid's order); derived rows follow
    their parent. A record without a model is taken as the order's model."""
    rows = []
    for key in order:
        task, model, method = (key[0], None, key[1]) if len(key) == 2 else key
        mine = [r for r in records if r["task"] == task and r["method"] == method
                and (model is None or r.get("model", model) == model)]
        done = [r for r in mine if r.get("status") == "done"]
        rows.append(_row(task, model, method, done, len(mine) - len(done), mine))
        for name in dict.fromkeys(d["method"] for r in done for d in r.get("derived", [])):
            derived = [{**d, "metric": r["metric"]} for r in done for d in r.get("derived", []) if d["method"] == name]
            rows.append(_row(task, model, name, derived, 0, derived))
    return rows


def _row(task: str, model, method: str, done: list[dict], failed: int, mine: list[dict]) -> dict:
    row = {"task": task, "model": model, "method": method, "metric": done[0]["metric"] if done else "",
           "seeds": len(done), "failed": failed}
    for split in ("test", "dev"):
        values = [r[split] for r in done if r.get(split) is not None]
        row[f"{split}_mean"] = statistics.fmean(values) if values else None
        row[f"{split}_sd"] = statistics.stdev(values) if len(values) > 1 else None
    for key in NUMBERS:
        values = [r[key] for r in done if r.get(key) is not None]
        row[key] = statistics.fmean(values) if values else None
    row["trains"] = done[0].get("trains", "") if done else ""
    errors = [r.get("error") for r in mine if r.get("status") == "failed"]
    row["error"] = errors[-1] if errors else ""
    chosen = Counter(setting_text(r["chosen"]) for r in done if r.get("chosen") is not None)
    row["chosen"] = "; ".join(f"{text} ×{n}" if len(done) > 1 else text for text, n in chosen.most_common())
    row["settings"] = max((r.get("settings") or 1 for r in done if r.get("chosen") is not None), default=None)
    edge = Counter(e for r in done for e in r.get("edge") or [])
    row["edge"] = "; ".join(f"{e} (seeds {', '.join(str(r['seed']) for r in done if e in (r.get('edge') or []))})"
                            for e in edge)
    return row


CSV_COLUMNS = ["task", "method", "metric", "seeds", "failed", "test_mean", "test_sd", "dev_mean", "dev_sd", *NUMBERS,
               "trains", "error", "model", "p_vs_best", "not_worse", "p_vs_manual", "chosen", "settings", "edge"]


def to_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def to_markdown(rows: list[dict], memory: str = "resident memory") -> str:
    models = len({r.get("model") for r in rows}) > 1
    swept = any(r.get("chosen") for r in rows)
    head = ["task", *(["model"] if models else []), "method", "test", "vs best", "vs manual", "dev", "seeds",
            *(["chosen"] if swept else []), "trainable", "stored", "fwd tokens", "bwd tokens", "wall", "peak"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        seeds = str(r["seeds"]) + (f" ({r['failed']} failed)" if r["failed"] else "")
        chosen = (r.get("chosen") or "-") + (" ⚠" if r.get("edge") else "")
        cells = [r["task"], *([str(r.get("model"))] if models else []), r["method"], _score(r, "test"), _vs_best(r),
                 _p(r.get("p_vs_manual")), _score(r, "dev"), seeds, *([chosen] if swept else []),
                 _count(r["trainable_params"]), _bytes(r["bytes_stored"]), _count(r["forward_tokens"]),
                 _count(r["backward_tokens"]), _unit(r["wall_s"], "s"), _unit(r["peak_mb"], "MB")]
        lines.append("| " + " | ".join(cells) + " |")
    failed = [f"- {r['task']} / {r['method']}: {r['error']}" for r in rows if r["failed"]]
    edges = [f"- ⚠ {r['task']} / {r['method']}: the chosen {r['edge']}: a wider space may do better"
             for r in rows if r.get("edge")]
    notes = [NOTES.format(memory=memory), *([SWEEP_NOTES] if swept else []), SIG_NOTES.format(test=TEST)]
    notes = [n.replace("\n", " ") for n in notes]
    return "\n".join(lines + [""] + ([*failed, *edges, ""] if failed or edges else []) + [" ".join(notes), ""])


def _vs_best(r: dict) -> str:
    if r.get("best"):
        return "best"
    p = r.get("p_vs_best")
    return "-" if p is None else ("✓ " if r.get("not_worse") else "") + _p(p)


def _p(p) -> str:
    if p is None:
        return "-"
    return f"p={p:.2g}" if p >= 1e-3 else "p<0.001"


def _score(r: dict, split: str) -> str:
    mean, sd = r[f"{split}_mean"], r[f"{split}_sd"]
    if mean is None:
        return "-"
    return f"{100 * mean:.1f}" + (f" ± {100 * sd:.1f}" if sd is not None else "")


def _count(v) -> str:
    if v is None:
        return "-"
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if v >= limit:
            return f"{v / limit:.1f} {suffix}"
    return f"{v:.0f}"


def _bytes(v) -> str:
    if v is None:
        return "-"
    for limit, suffix in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if v >= limit:
            return f"{v / limit:.1f} {suffix}"
    return f"{v:.0f} B"


def _unit(v, unit: str) -> str:
    return "-" if v is None else f"{v:.0f} {unit}" if v >= 10 else f"{v:.1f} {unit}"
