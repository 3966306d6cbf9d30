"""Learned vs discrete prompts vs fine-tuning, one protocol: a grid of tasks x methods x seeds.

    import prompt_compare
    r = compare.compare("grid.yaml", out="runs/grid", workers=2)          # or a dict, or a Grid
    r = compare.compare({"template": "{sentence} It was [P] .", "label_map": {"0": "terrible", "1": "great"},
                         "train": "train.jsonl", "dev": "dev.jsonl", "test": "test.jsonl"},
                        ["manual", "autoprompt", "prompt", "prefix", "lora"], [13, 21, 42], out="runs/grid")
    r.table, r.rows, r.plots

Every cell (task, method, seed) runs its registered method on train with dev for selection, and
the shared evaluator scores it on test; it records the test score, trainable values, bytes stored,
forward and backward tokens, wall time and peak memory. Cells run in this process (workers=1) or on
Ray (workers > 1, or an existing cluster); a rerun skips the finished ones.

Modules: presets (the method names a grid uses), spec (grid files and their checks), cells (cell
ids), meter (the accounting), execute (one cell in a worker), engine (in order, or on Ray, with
retries), store (results.jsonl and the folder), table (table.md / table.csv), plots, api (`compare`).
"""

from prompt_compare.api import CompareResult, compare
from prompt_compare.presets import PRESETS
from prompt_compare.spec import Grid, MethodDef, TaskDef, load_spec

__all__ = ["PRESETS", "CompareResult", "Grid", "MethodDef", "TaskDef", "compare", "load_spec"]
