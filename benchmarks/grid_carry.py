"""Carry a long grid (bench_compare's tuned grid, about 15 hours on 2 workers) across machines that lose runs/.

`save(grid, keep)` copies into `keep` (a folder that is committed) what the grid folder needs to go
on: results.jsonl (every finished cell, with its test examples; grid.json is rewritten by every
run, so it is not kept), and for each cell not yet
finished its progress: cells/<id>/sweep.jsonl and the small files of its settings, finished or cut
short (a search's artifact holds its state after its last iteration, and the setting goes on from
there, prompt_compare.trials), with what a cut setting had spent. A setting
whose artifact holds a file over MAX_FILE (fine-tuned weights) is not carried: its line stays in
sweep.jsonl, but without its artifact it runs again. `restore(keep, grid)` puts them back into a grid
folder that has no results.jsonl; the grid's next run then skips the finished cells, and each
unfinished cell runs only the settings it has not finished.

    python benchmarks/grid_carry.py save      # runs/bench/compare-tuned -> benchmarks/results/compare_tuned_progress
    python benchmarks/grid_carry.py restore   # the other way (bench_compare --part tuned does it itself)
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import OUT, RESULTS  # noqa: E402

GRID, KEEP = OUT / "compare-tuned", RESULTS / "compare_tuned_progress"
MAX_FILE = 2 * 2**20


def finished_ids(folder: Path) -> set[str]:
    """Ids of the cells results.jsonl records as done, by their last record (prompt_compare.store; a
    failed cell runs again, so its progress is kept)."""
    from prompt_compare.store import read_records

    return {i for i, r in read_records(folder).items() if r.get("status") == "done"}


def _small(folder: Path) -> bool:
    return all(f.stat().st_size <= MAX_FILE for f in folder.rglob("*") if f.is_file())


def save(grid: Path = GRID, keep: Path = KEEP) -> dict:
    """Replace `keep` with what `grid` needs to go on; {'cells': finished, 'progress': unfinished cells
    carried, 'settings': their settings carried}."""
    if not (grid / "results.jsonl").exists():
        raise SystemExit(f"{grid} has no results.jsonl: nothing to save")
    tmp = keep.with_name(keep.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shutil.copyfile(grid / "results.jsonl", tmp / "results.jsonl")
    done, carried, settings = finished_ids(grid), 0, 0
    for cell in sorted((grid / "cells").glob("*")) if (grid / "cells").is_dir() else []:
        if cell.name in done or not ((cell / "sweep.jsonl").exists() or any(cell.glob("setting-*"))):
            continue  # finished, or not a sweep's cell
        (tmp / "cells" / cell.name).mkdir(parents=True)
        if (cell / "sweep.jsonl").exists():
            shutil.copyfile(cell / "sweep.jsonl", tmp / "cells" / cell.name / "sweep.jsonl")
        carried += 1
        for setting in sorted(cell.glob("setting-*")):
            if setting.is_dir() and _small(setting):  # finished, or cut short (a search goes on from it)
                shutil.copytree(setting, tmp / "cells" / cell.name / setting.name)
                settings += 1
            elif setting.is_file() and setting.name.endswith(".spent.json"):  # what a cut setting had spent
                shutil.copyfile(setting, tmp / "cells" / cell.name / setting.name)
    shutil.rmtree(keep, ignore_errors=True)
    tmp.rename(keep)
    return {"cells": len(done), "progress": carried, "settings": settings}


def restore(keep: Path = KEEP, grid: Path = GRID) -> bool:
    """Copy `keep` into `grid` when `grid` has no results.jsonl of its own; whether it did."""
    if (grid / "results.jsonl").exists() or not (keep / "results.jsonl").exists():
        return False
    grid.mkdir(parents=True, exist_ok=True)
    for item in keep.iterdir():
        target = grid / item.name
        if item.is_dir():
            shutil.copytree(item, target, dirs_exist_ok=True)
        else:
            shutil.copyfile(item, target)
    return True


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("action", choices=["save", "restore"])
    p.add_argument("--grid", type=Path, default=GRID, help=f"the grid folder (default {GRID})")
    p.add_argument("--keep", type=Path, default=KEEP, help=f"the committed folder (default {KEEP})")
    args = p.parse_args(argv)
    if args.action == "save":
        print(json.dumps(save(args.grid, args.keep)))
    else:
        print("restored" if restore(args.keep, args.grid) else f"not restored: {args.grid} has its own results.jsonl "
              f"or {args.keep} has none")


if __name__ == "__main__":
    main()
