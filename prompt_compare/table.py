"""The grid's table: one row per (task, method), mean and sd over the finished seeds, written as
table.md (for people) and table.csv (for scripts). A soft prompt's nearest-token reading is a row
of its own, right after the prompt it was read from."""

from __future__ import annotations

import csv
import io
import statistics

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


def aggregate(records: list[dict], order: list[tuple[str, str]]) -> list[dict]:
    """Rows in `order` ((task, method) pairs, the grid's order); derived rows follow their parent."""
    rows = []
    for task, method in order:
        mine = [r for r in records if r["task"] == task and r["method"] == method]
        done = [r for r in mine if r.get("status") == "done"]
        rows.append(_row(task, method, done, len(mine) - len(done), mine))
        for name in dict.fromkeys(d["method"] for r in done for d in r.get("derived", [])):
            derived = [{**d, "metric": r["metric"]} for r in done for d in r.get("derived", []) if d["method"] == name]
            rows.append(_row(task, name, derived, 0, derived))
    return rows


def _row(task: str, method: str, done: list[dict], failed: int, mine: list[dict]) -> dict:
    row = {"task": task, "method": method, "metric": done[0]["metric"] if done else "", "seeds": len(done),
           "failed": failed}
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
    return row


def to_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    cols = ["task", "method", "metric", "seeds", "failed", "test_mean", "test_sd", "dev_mean", "dev_sd", *NUMBERS,
            "trains", "error"]
    writer = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def to_markdown(rows: list[dict], memory: str = "resident memory") -> str:
    head = ["task", "method", "test", "dev", "seeds", "trainable", "stored", "fwd tokens", "bwd tokens", "wall",
            "peak"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        seeds = str(r["seeds"]) + (f" ({r['failed']} failed)" if r["failed"] else "")
        cells = [r["task"], r["method"], _score(r, "test"), _score(r, "dev"), seeds, _count(r["trainable_params"]),
                 _bytes(r["bytes_stored"]), _count(r["forward_tokens"]), _count(r["backward_tokens"]),
                 _unit(r["wall_s"], "s"), _unit(r["peak_mb"], "MB")]
        lines.append("| " + " | ".join(cells) + " |")
    failed = [f"- {r['task']} / {r['method']}: {r['error']}" for r in rows if r["failed"]]
    notes = NOTES.format(memory=memory).replace("\n", " ")
    return "\n".join(lines + [""] + ([*failed, ""] if failed else []) + [notes, ""])


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
