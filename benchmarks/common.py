"""Small helpers shared by the benchmark scripts: data location, thread report, tables, JSON, and the
committed result files (`write_result`: benchmarks/results/<name>.json, the documentation site's
results pages; format in benchmarks/results/README.md)."""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SHARED_DATA", ROOT.parent / "shared" / "data"))
OUT = ROOT / "runs" / "bench"
# Committed, small result files; benchmarks/run_all.py points BENCH_RESULTS elsewhere for --quick runs.
RESULTS = Path(os.environ.get("BENCH_RESULTS", ROOT / "benchmarks" / "results"))


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
    """The full output under runs/bench/<name>.json (ignored by git); a finished run's rows
    (obj['rows'], not obj['partial']) also become benchmarks/results/<name>.json (write_result)."""
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.json"
    path.write_text(json.dumps({"saved_at": time.strftime("%Y-%m-%dT%H:%M:%S"), **obj}, indent=2, default=str))
    if isinstance(obj, dict) and obj.get("rows") and not obj.get("partial"):
        write_result(name, obj["rows"], notes=obj.get("notes", ""))
    return path


def machine() -> dict:
    """The facts a result needs to be read: CPU model, cores, torch threads, library versions, GPU."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import transformers

        transformers_version = transformers.__version__
    except ImportError:
        transformers_version = None
    return {"cpu": cpu, "cpus": os.cpu_count(), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "transformers": transformers_version, "python": platform.python_version(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def command_line() -> str:
    """The command that ran this benchmark: benchmarks/run_all.py passes its own in BENCH_COMMAND;
    otherwise this process's arguments (a `-m` module run is written as `python -m NAME`)."""
    if os.environ.get("BENCH_COMMAND"):
        return os.environ["BENCH_COMMAND"]
    argv = list(sys.argv)
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name and spec.name != "__main__":
        head = ["-m", spec.name.removesuffix(".__main__")]
    else:
        head = [os.path.relpath(argv[0], ROOT) if argv and os.path.isabs(argv[0]) else (argv[0] if argv else "")]
    return shlex.join(["python", *head, *argv[1:]])


def _commit() -> str | None:
    """HEAD's short hash, with '+dirty' when tracked files differ from it (None outside git)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")


def _plain(value):
    """JSON for numpy/torch scalars (their Python value) and anything else (its str)."""
    item = getattr(value, "item", None)
    if callable(item):
        try:
            return item()
        except (TypeError, ValueError, RuntimeError):
            pass
    return str(value)


def write_result(name: str, rows: list[dict], notes: str = "", *, command: str | None = None,
                 title: str | None = None, tables: dict[str, list[dict]] | None = None,
                 figures: list[str] | None = None) -> Path:
    """Write benchmarks/results/<name>.json (or $BENCH_RESULTS/<name>.json), the small committed file
    the documentation site renders as a results page (docs/hooks/results.py).

    rows: the main table, one dict per row (keys = columns, in first-seen order); notes: what the
    numbers mean (Markdown); command: the command that ran (default: command_line()); title: the
    page title (default: name); tables: further tables {title: rows}; figures: PNG paths under
    docs/ (relative to the repository root) the page shows. Machine facts, date and commit are
    added here. Returns the path written.
    """
    result = {"benchmark": name, "title": title or name, "command": command or command_line(),
              "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "commit": _commit(), "machine": machine(),
              "rows": list(rows), "notes": notes}
    if tables:
        result["tables"] = {key: list(value) for key, value in tables.items()}
    if figures:
        result["figures"] = [str(f) for f in figures]
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2, default=_plain, ensure_ascii=False) + "\n")
    return path
