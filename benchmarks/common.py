"""Small helpers shared by the benchmark scripts: data location, thread report, tables, JSON."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SHARED_DATA", ROOT.parent / "shared" / "data"))
OUT = ROOT / "runs" / "bench"


def require(path: Path) -> None:
    """Exit with a clear message when a data file is missing."""
    if not Path(path).exists():
        sys.exit(f"{path} not found: this benchmark needs ../shared/data (or SHARED_DATA=...)")


def threads_line() -> str:
    return (f"torch {torch.__version__}, torch.get_num_threads() = {torch.get_num_threads()}, "
            f"cpus = {os.cpu_count()}, cuda = {torch.cuda.is_available()}")


def print_table(rows: list[dict]) -> None:
    cols = list(rows[0])
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    cells = [[fmt(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    print(" | ".join(c.ljust(w) for c, w in zip(cols, widths)))
    print("-+-".join("-" * w for w in widths))
    for row in cells:
        print(" | ".join(v.ljust(w) for v, w in zip(row, widths)))
    sys.stdout.flush()


def save_json(name: str, obj) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.json"
    path.write_text(json.dumps({"saved_at": time.strftime("%Y-%m-%dT%H:%M:%S"), **obj}, indent=2, default=str))
    return path
