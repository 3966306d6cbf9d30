"""Is a method's test score different from another's beyond chance? A paired test over the test
examples, pooled across seeds.

    prompt_compare.significance("prompt", "manual", "runs/grid")   # or a CompareResult, or records
    prompt_compare.significance(records_a, records_b)              # two lists of results.jsonl records

Every cell keeps its test examples one by one (`test_examples`: correct or not). Two methods' cells
of the same task, model and seed scored the same test examples in the same order; the pairs of all
seeds both finished are pooled (an example appears once per seed).

The test: a paired sign-flip permutation test of the mean difference in correctness, two-sided.
Under the null hypothesis the two methods' answers on an example are exchangeable, so each pair's
difference keeps or flips its sign with probability 1/2. With 0/1 correctness the pairs both got
right (or both wrong) differ by 0 whatever the sign, and each of the m pairs only one got right
counts +1 or -1, so the permutation distribution is binomial and is computed exactly (this is
McNemar's exact test): p = min(1, 2 P(B <= min(b, c))), B ~ Binomial(m, 1/2), b and c the pairs
only the first / only the second got right, m = b + c. No sampling, so no seed: the same records
give the same p. Identical answers: p = 1.

The table (prompt_compare.table) marks each method that is not significantly worse than the best
of its task and model (p >= 0.05 against the method with the highest mean test score) and gives
each method's p against the manual template.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from frozen_lm.errors import UserError

ALPHA = 0.05
TEST = "paired sign-flip permutation test over the test examples pooled across seeds (exact, = McNemar), two-sided"


@dataclass
class Significance:
    """a, b: what was compared; p: the two-sided p-value; diff: a's accuracy minus b's over the pooled
    pairs; n: pairs; a_only / b_only: pairs only a / only b got right; seeds: the seeds pooled."""

    a: str
    b: str
    p: float
    diff: float
    n: int
    a_only: int
    b_only: int
    seeds: list = field(default_factory=list)
    test: str = TEST

    @property
    def significant(self) -> bool:
        return self.p < ALPHA


def sign_flip_p(a_only: int, b_only: int) -> float:
    """Exact two-sided p of the paired sign-flip test for 0/1 outcomes (McNemar's exact test)."""
    m, k = a_only + b_only, min(a_only, b_only)
    if m == 0:
        return 1.0
    term, tail = 1, 1  # C(m, 0); the sum of C(m, i) for i <= k, exact integers
    for i in range(k):
        term = term * (m - i) // (i + 1)
        tail += term
    return min(1.0, 2 * tail / 2**m)


def significance(a, b, grid=None, *, task: str | None = None, model: str | None = None) -> Significance:
    """The paired test of `a` against `b`: method names (as the grid's table names them, derived rows
    such as 'prompt (nearest tokens)' too) looked up in `grid` (a CompareResult, a grid's folder, or
    a list of records; task / model pick one when it has several), or two lists of records. UserError
    when a method has no records with test examples, or the two share no (task, model, seed)."""
    records = _records(grid) if grid is not None else None
    name_a, ra = _side(a, records, task, model, "a")
    name_b, rb = _side(b, records, task, model, "b")
    return paired(name_a, ra, name_b, rb)


def paired(name_a: str, ra: list[dict], name_b: str, rb: list[dict]) -> Significance:
    """The test on two methods' records, paired by (task, model, seed)."""
    by_b = {_key(r): r for r in rb}
    pairs = [(r, by_b[_key(r)]) for r in ra if _key(r) in by_b]
    if not pairs:
        raise UserError(f"{name_a!r} and {name_b!r} share no finished (task, model, seed) with test examples to pair")
    a_only = b_only = n = 0
    for x, y in pairs:
        cx, cy = x["test_examples"]["correct"], y["test_examples"]["correct"]
        lx, ly = x["test_examples"].get("label"), y["test_examples"].get("label")
        if len(cx) != len(cy) or (lx is not None and ly is not None and lx != ly):
            raise UserError(f"{name_a!r} and {name_b!r} scored different test examples on {x['task']} seed {x['seed']} "
                            f"({len(cx)} and {len(cy)} examples)")
        for u, v in zip(cx, cy):
            a_only += u == "1" and v == "0"
            b_only += u == "0" and v == "1"
        n += len(cx)
    diff = (a_only - b_only) / max(n, 1)
    return Significance(name_a, name_b, sign_flip_p(a_only, b_only), diff, n, a_only, b_only,
                        sorted({x["seed"] for x, _ in pairs}))


def _key(r: dict) -> tuple:
    return r.get("task"), r.get("model"), r.get("seed")


def _side(x, records, task, model, arg: str) -> tuple[str, list[dict]]:
    """(name, records with test examples) of one side of the test."""
    if isinstance(x, list | tuple):
        rows = [r for r in x if r.get("status", "done") == "done" and r.get("test_examples")]
        if not rows:
            raise UserError(f"{arg}: none of these records has test examples (run the grid again to score them)")
        return str(rows[0].get("method", arg)), rows
    if records is None:
        raise UserError(f"{arg}={x!r} is a method name: give the grid (a CompareResult, its folder or its records)")
    mine = [r for r in records if r.get("method") == x]
    if not mine:
        raise UserError(f"{arg}: no method called {x!r} in the grid (its methods: "
                        f"{', '.join(dict.fromkeys(r.get('method') for r in records))})")
    for key, value in (("task", task), ("model", model)):
        kinds = list(dict.fromkeys(r.get(key) for r in mine))
        if value is not None:
            mine = [r for r in mine if r.get(key) == value]
            if not mine:
                raise UserError(f"{key}={value!r}: {x!r} has no records of it (its {key}s: {', '.join(map(str, kinds))})")
        elif len(kinds) > 1:
            raise UserError(f"{x!r} ran on several {key}s ({', '.join(map(str, kinds))}); give {key}=")
    rows = [r for r in mine if r.get("test_examples")]
    if not rows:
        raise UserError(f"{arg}: the records of {x!r} have no test examples (run the grid again to score them)")
    return str(x), rows


def _records(grid) -> list[dict]:
    """Every finished record of a grid, derived rows as records of their own."""
    if isinstance(grid, list | tuple):
        records = list(grid)
    elif hasattr(grid, "rows"):
        records = list(grid.rows)
    else:
        from prompt_compare.store import read_records

        if not (Path(grid) / "results.jsonl").exists():
            raise UserError(f"grid={grid}: no results.jsonl there; give a CompareResult, a grid's folder or records")
        records = list(read_records(grid).values())
    return flatten(records)


def flatten(records: list[dict]) -> list[dict]:
    """Finished records, each followed by its derived rows (with the parent's task, model and seed)."""
    out = []
    for r in records:
        if r.get("status") != "done":
            continue
        out.append(r)
        for d in r.get("derived", []):
            out.append({**d, "task": r["task"], "model": r.get("model"), "seed": r["seed"], "status": "done",
                        "metric": r.get("metric")})
    return out


# ---------------------------------------------------------------- the table's marks
def annotate(rows: list[dict], records: list[dict]) -> list[dict]:
    """Add to each table row (task, model, method): 'p_vs_best' (None for the best row itself),
    'not_worse' (not significantly worse than the best: p >= ALPHA, or the best) and 'p_vs_manual'
    (against the task and model's manual template, the first method whose registered method is
    'manual'); None where a row has no test examples."""
    flat = flatten(records)
    manual = {(r["task"], r.get("model")): r["method"] for r in flat if r.get("preset") == "manual"}
    for group in dict.fromkeys((row["task"], row.get("model")) for row in rows):
        mine = [row for row in rows if (row["task"], row.get("model")) == group]
        sides = {row["method"]: [r for r in flat if (r["task"], r.get("model")) == group
                                 and r["method"] == row["method"] and r.get("test_examples")] for row in mine}
        ranked = [row for row in mine if sides[row["method"]] and row.get("test_mean") is not None]
        best = max(ranked, key=lambda row: row["test_mean"], default=None)
        for row in mine:
            row["p_vs_best"] = row["not_worse"] = row["p_vs_manual"] = None
            if best is None or not sides[row["method"]]:
                continue
            row["best"] = row is best
            row["p_vs_best"] = None if row is best else _p(row["method"], best["method"], sides)
            row["not_worse"] = row is best or (row["p_vs_best"] is not None and row["p_vs_best"] >= ALPHA)
            reference = manual.get(group)
            if reference is not None and reference != row["method"] and sides.get(reference):
                row["p_vs_manual"] = _p(row["method"], reference, sides)
    return rows


def _p(a: str, b: str, sides: dict) -> float | None:
    try:
        return paired(a, sides[a], b, sides[b]).p
    except UserError:
        return None
