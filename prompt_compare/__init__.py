"""Learned vs discrete prompts vs fine-tuning, one protocol: a grid of tasks x (models x) methods x seeds.

    import prompt_compare
    r = prompt_compare.compare("grid.yaml", out="runs/grid", workers=2)    # or a dict, or a Grid
    r = prompt_compare.compare({"template": "{sentence} It was [P] .", "label_map": {"0": "terrible", "1": "great"},
                                "train": "train.jsonl", "dev": "dev.jsonl", "test": "test.jsonl"},
                               ["manual", "autoprompt", "prompt", "prefix", {"lora": {"r": 16}}], [13, 21, 42],
                               out="runs/grid")
    r.table, r.rows, r.plots
    sorted(prompt_compare.comparable_methods())   # the registered methods a grid can name
    r = prompt_compare.compare("grid.yaml", out="runs/tuned", tune=True)    # each method's default space
    r = prompt_compare.compare(task, ["manual", "lora"], [13, 21], out="runs/lr", sweep={"lora": {"lr": [1e-4, 1e-3]}})
    prompt_compare.significance("lora", "manual", r)   # paired test over the test examples of every seed
    r = prompt_compare.compare(task, ["manual", "autoprompt"], [13], out="runs/two", models=["smollm2-135m", "gemma3-270m"])

A grid names registered methods (frozen_lm.methods; a new method is one folder plus one entry
point, and a grid can name it at once). Every cell (task, method, seed) runs its method through the
one runner on train with dev for selection, and the shared evaluator scores it on test; it records
the test score (and each test example's outcome), trainable values, bytes stored, forward and
backward tokens, wall time and peak memory. Cells run in this process (workers=1) or on Ray
(workers > 1, or an existing cluster); a rerun skips the finished ones. A sweep (tune=True: every
method's default space; sweep=: your own) trains every setting inside the cell and keeps the best on
dev per seed; its costs count the whole sweep. With several models every discrete result is also
scored on the other models (transfer.md).

Modules: entries (a grid's method entries, from the registry), sweep (spaces, settings, the choice
on dev), spec (grid files and their checks), cells (cell ids), meter (the accounting), trials (a
cell's runs: one setting, or a sweep's), execute (one cell in a worker), transfer (the models axis),
engine (in order, or on Ray, with retries), store (results.jsonl and the folder), significance
(paired tests), table (table.md / table.csv), plots, api (`compare`).
"""

from prompt_compare.api import CompareResult, compare
from prompt_compare.entries import MethodDef, comparable_methods
from prompt_compare.significance import Significance, significance
from prompt_compare.spec import Grid, TaskDef, load_spec

__all__ = ["CompareResult", "Grid", "MethodDef", "Significance", "TaskDef", "comparable_methods", "compare",
           "load_spec", "significance"]
