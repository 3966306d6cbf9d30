"""benchmarks/bench_models.py's tables: the finished runs' rows summed up per part (pure functions,
no model loaded). Percent values are rounded to one decimal."""

from __future__ import annotations

import statistics
from pathlib import Path


def label(model: str) -> str:
    """A model as the tables name it: its alias, or a folder's last part."""
    return Path(model).name


def proposer_suffix(models: list[str], default: list[str]) -> tuple[str, str]:
    """What the joint part's file name and title add when the models come in another order than
    `default` (the first model writes the candidates): ('_<first>_proposes', ', <first> proposing'),
    else ('', '')."""
    if [label(m) for m in models] == [label(m) for m in default]:
        return "", ""
    return f"_{label(models[0])}_proposes", f", {label(models[0])} proposing"


def kept(d: dict | None) -> dict:
    """A transfer's drift (frozen_lm.transfer's record; None or no tokens: a prompt moved as plain text)
    in two numbers: tokens before -> after, and the share still one token."""
    if not d or not d.get("n_tokens_before"):
        return {}
    return {"tokens": f"{d['n_tokens_before']}->{d['n_tokens_after']}", "tokens_kept": d["n_one_token"] / d["n_tokens_before"]}


def transfer_table(rows: list[dict], models: list[str]) -> list[dict]:
    """One row per (method, source): mean test accuracy (%) on each target over the splits."""
    out = []
    for method, source in dict.fromkeys((r["method"], r["source"]) for r in rows):
        row = {"method": method, "source": source}
        for target in map(label, models):
            scores = [r["test"] for r in rows if (r["method"], r["source"], r["target"]) == (method, source, target)
                      and r["test"] is not None]
            row[target] = round(100 * statistics.fmean(scores), 1) if scores else None
            if target != source:
                share = [r["tokens_kept"] for r in rows if (r["method"], r["source"], r["target"]) == (method, source, target)
                         and "tokens_kept" in r]
                row["tokens_kept"] = round(statistics.fmean(share), 2) if share else None
        out.append(row)
    return out


def joint_table(rows: list[dict], names: list[str]) -> list[dict]:
    out = []
    for prompt in dict.fromkeys(r["prompt"] for r in rows):
        mine = [r for r in rows if r["prompt"] == prompt]
        out.append({"prompt": prompt, **{n: round(100 * statistics.fmean(r[n] for r in mine), 1) for n in names},
                    "minutes": round(statistics.fmean(r["minutes"] for r in mine), 1)})
    return out


def joint_notes(table: list[dict], names: list[str], splits) -> str:
    """Whether the targets were met: the joint prompt beats each single-model prompt on the other
    model, and is within 2 points of it on its own model."""
    by = {r["prompt"]: r for r in table}
    lines = [f"AutoPrompt test accuracy (%), mean over splits {splits}."]
    for own, other in ((names[0], names[1]), (names[1], names[0])):
        beats = by["joint"][other] > by[own][other]
        close = by["joint"][own] >= by[own][own] - 2
        lines.append(f"- vs the prompt searched on {own}: on {other} {by['joint'][other]} vs {by[own][other]} "
                     f"({'beats it' if beats else 'does not beat it'}); on {own} {by['joint'][own]} vs {by[own][own]} "
                     f"({'within 2 points' if close else 'more than 2 points below'})")
    return "\n".join(lines)


def seeds_table(rows: list[dict], names: list[str]) -> list[dict]:
    """Per split and prompt: each model's test accuracy (%) over the search seeds (mean, lowest,
    highest, sample standard deviation)."""
    out = []
    for key in dict.fromkeys((r["split"], r["prompt"]) for r in rows):
        mine = [r for r in rows if (r["split"], r["prompt"]) == key]
        row = {"split": key[0], "prompt": key[1], "seeds": len(mine)}
        for n in names:
            acc = [100 * r[n] for r in mine]
            row |= {f"{n} mean": round(statistics.fmean(acc), 1), f"{n} min": round(min(acc), 1),
                    f"{n} max": round(max(acc), 1),
                    f"{n} sd": round(statistics.stdev(acc), 1) if len(acc) > 1 else None}
        out.append(row)
    return out


def paired_gaps(rows: list[dict], names: list[str]) -> list[str]:
    """Per model with its own prompt among `rows`: the joint prompt against it, paired by (split,
    seed), on both models (test accuracy, %): the mean gap on its own model with its standard error
    (the target: within 2 points) and whether the joint prompt beats it on the other model."""
    lines = []
    for own in names:
        other = next(n for n in names if n != own)
        by = {(r["split"], r["seed"]): r for r in rows if r["prompt"] == own}
        pairs = [(by[(r["split"], r["seed"])], r) for r in rows if r["prompt"] == "joint" and (r["split"], r["seed"]) in by]
        if not pairs:
            continue
        gaps = [100 * (a[own] - j[own]) for a, j in pairs]
        mean, sd = statistics.fmean(gaps), statistics.stdev(gaps) if len(gaps) > 1 else None
        se = f" +- {sd / len(gaps) ** 0.5:.1f} (se; sd {sd:.1f})" if sd is not None else ""
        mine, theirs = (100 * statistics.fmean(p[i][own] for p in pairs) for i in (0, 1))
        on_other = [100 * statistics.fmean(p[i][other] for p in pairs) for i in (1, 0)]
        lines.append(f"- vs the prompt searched on {own}, {len(pairs)} paired searches: on {own} {theirs:.1f} vs "
                     f"{mine:.1f}, gap {mean:.1f}{se} ({'within 2 points' if mean <= 2 else 'more than 2 points below'}); "
                     f"on {other} {on_other[0]:.1f} vs {on_other[1]:.1f} "
                     f"({'beats it' if on_other[0] > on_other[1] else 'does not beat it'})")
    return lines


def seeds_notes(splits, seeds) -> str:
    return (f"AutoPrompt test accuracy (%) over search seeds {seeds} ('split': the split's own number), "
            f"splits {splits}: the same data, settings and models, only the seed differs.")


def mean_curve(records: list[dict], threshold: float = 0.9) -> dict:
    """One curve over splits: per d the mean of the splits' means; d90 of that curve (None if a split
    has no baseline-backed d90 row, i.e. was refused)."""
    dims = sorted(set.intersection(*(set(r["d"] for r in rec["per_dim"]) for rec in records)))
    means = {d: statistics.fmean(next(r["mean"] for r in rec["per_dim"] if r["d"] == d) for rec in records) for d in dims}
    baseline = statistics.fmean(rec["baseline"] for rec in records)
    refused = any(rec.get("refused") for rec in records)
    d90 = None if refused else next((d for d in dims if means[d] >= threshold * baseline - 1e-12), None)
    return {"baseline": baseline, "d90": d90}


def min_or_none(records: list[dict], pick):
    values = [r["d90"] for r in records if r["d90"] is not None]
    return pick(values) if values else None
