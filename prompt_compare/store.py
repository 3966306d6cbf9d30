"""A grid's folder: results.jsonl (one JSON line per finished or failed cell, appended atomically),
grid.json (the cells of the last run), table.md / table.csv, plots/, and cells/<id>/ (artifacts; a
sweep's settings in cells/<id>/setting-<k>/); with several models, transfer.jsonl (a discrete result
scored on each other model, same form), transfer.md / transfer.csv.

Every record keeps its task's definition (key 'task_spec': templates, label words, fields, data
sources), and a grid whose task of the same name is defined otherwise is refused in that folder:
its table would show only its own rows while results.jsonl kept both.

Only the process that schedules the cells writes results.jsonl. A line is written with one
`write` on a file opened for appending and flushed to disk, so a crash leaves whole lines (a cut
last line is skipped with a warning). When a cell appears on several lines the last one counts.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from frozen_lm.errors import UserError

logger = logging.getLogger(__name__)
RESULTS, GRID, TABLE_MD, TABLE_CSV = "results.jsonl", "grid.json", "table.md", "table.csv"
TRANSFER, TRANSFER_MD, TRANSFER_CSV = "transfer.jsonl", "transfer.md", "transfer.csv"
OWN = {RESULTS, GRID, TABLE_MD, TABLE_CSV, TRANSFER, TRANSFER_MD, TRANSFER_CSV, "plots", "cells"}


def claim_grid_out(out) -> Path:
    """Make `out` ready: a new or empty folder, or one that holds a grid (its finished cells are kept);
    UserError for a file, a folder holding other things, or one that cannot be written."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"out={out} is a file; give a folder")
    if out.is_dir():
        foreign = [p.name for p in out.iterdir() if p.name not in OWN and not p.name.endswith(".tmp")]
        if foreign and not (out / RESULTS).exists():
            raise UserError(f"out={out} holds other files ({', '.join(sorted(foreign)[:3])}); give a new or empty "
                            "folder, or the folder of an earlier grid to continue it")
    try:
        (out / "cells").mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test.tmp"
        probe.write_bytes(b"0" * 4096)
        probe.unlink()
    except OSError as e:
        raise UserError(f"out={out} cannot be written ({e.strerror or e}); choose another folder") from None
    return out


def check_tasks(out, records: dict[str, dict], tasks: dict[str, dict]) -> None:
    """UserError when the folder holds results of a task of one of these names ({name: definition})
    defined otherwise (records written before definitions were kept are taken as they are)."""
    for record in records.values():
        saved, now = record.get("task_spec"), tasks.get(record.get("task"))
        if not saved or now is None:
            continue
        key = next((k for k in now if saved.get(k) != now[k]), None)
        if key is not None:
            raise UserError(f"out={out} holds a grid whose task {record['task']!r} is defined otherwise ({key} "
                            f"{saved.get(key)!r} there, {now[key]!r} here), and its table would show only this "
                            "grid's rows: give another out= (or the task another name)")


def append_record(out, record: dict, name: str = RESULTS) -> None:
    """Append one record as one line (a single write, flushed and synced); a line cut short by a
    crash is ended first, so it stays one damaged line of its own."""
    path = Path(out) / name
    line = (json.dumps(record, sort_keys=True, default=str) + "\n").encode()
    if path.exists() and path.stat().st_size:
        with path.open("rb") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                line = b"\n" + line
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_records(out, name: str = RESULTS) -> dict[str, dict]:
    """{cell id: its last record} from results.jsonl (or `name`; missing file: {}; damaged lines skipped)."""
    path = Path(out) / name
    if not path.exists():
        return {}
    records: dict[str, dict] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            logger.warning("%s:%d is not a whole JSON line (a run cut short?); skipped", path, n)
            continue
        if isinstance(record, dict) and "id" in record:
            records[record["id"]] = record
    return records


def write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
