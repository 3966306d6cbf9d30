"""bench_models' joint part and its saved runs: which finished search is reused, the seeds a split's
searches run with, and the rows a committed seeds file lends for prompts not run now (--against)."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def seed_numbers(split: int, seeds: list[str]) -> list[int]:
    """The search seeds of `split` from --seeds items ('split' = the split's own number)."""
    return [split if x == "split" else int(x) for x in seeds]


def finished(folder: Path, cfg, more) -> object | None:
    """A finished search saved in `folder` with this config (every field; a field the saved config
    lacks, an option added since, counts as its default, the behaviour the run had; a one-model run
    ignores the options that act only with other models) and the same other models, loaded; else
    None (the search runs again)."""
    from frozen_lm.configs import read_mapping, to_dict
    from frozen_lm.results import load_result

    saved = read_mapping(folder / "config.json", "saved config") if (folder / "results.json").exists() else None
    alone = set() if more else {"cross_gradients", "gradient_mix", "score_mix"}  # act only with other models
    drop = lambda d: {k: v for k, v in d.items() if k not in alone}  # noqa: E731
    before = {**to_dict(type(cfg)()), **((saved or {}).get("config") or {})}  # the defaults, then what was saved
    if not saved or drop(before) != drop(to_dict(cfg)):
        return None
    r = load_result(folder)
    names = [m.get("name") for m in (getattr(r, "models", None) or [])]
    if names != [m.name for m in (more or [])] or getattr(r, "status", "done") != "done":
        return None
    print(f"  {folder.name}: finished run reused", flush=True)
    return r


def read_against(path: str, names: list[str]) -> tuple[str, list[dict]]:
    """(the file's name, its per-run rows) of a committed seeds file (--against); exits with one
    line when it cannot be read or was measured on other models than `names`."""
    try:
        runs = json.loads(Path(path).read_text())["tables"]["per run"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        sys.exit(f"--against: {path} is not a models_joint_seeds file with a 'per run' table ({e})")
    if not runs or any(n not in runs[0] for n in names):
        sys.exit(f"--against: {path} has no columns for {', '.join(names)}; give a file measured on these models")
    return Path(path).name, runs


def stand_ins(source: str, runs: list[dict], rows: list[dict], splits, seeds) -> list[dict]:
    """The rows of `runs` (read_against) for the (split, seed, prompt) not in `rows`, among these
    splits and seeds (--seeds items); each marked 'from' `source`."""
    wanted = {(split, seed) for split in splits for seed in seed_numbers(split, seeds)}
    have = {(r["split"], r["seed"], r["prompt"]) for r in rows}
    return [{**r, "from": source} for r in runs
            if (r["split"], r["seed"]) in wanted and (r["split"], r["seed"], r["prompt"]) not in have]


def start_text(rows: list[dict], against: tuple[str, list[dict]] | None, prompt: str, split: int, seed: int) -> str:
    """The filled template of `prompt`'s search on (split, seed), from this run's rows or else the
    --against file's (a joint search's --start-from); exits with one line when neither has it."""
    lent = against[1] if against else []
    for r in [*rows, *lent]:
        if (r["prompt"], r["split"], r["seed"]) == (prompt, split, seed):
            return r["text"]
    sys.exit(f"--start-from {prompt}: no {prompt} search on split {split} with seed {seed}; add {prompt} to --prompts "
             "or give --against a file that has it")


def joint_variant(args) -> tuple[str, str, str]:
    """(the joint searches' folder suffix, the result file's tail, the title's words) of the joint
    part's options that change the joint search: --gradient-mix, --score-mix, --start-from."""
    parts = [(args.gradient_mix != "sum", f"-{args.gradient_mix}", f"_{args.gradient_mix}_mix",
              f", gradient_mix {args.gradient_mix}"),
             (args.score_mix != "mean", f"-{args.score_mix}", f"_{args.score_mix}_score", f", score_mix {args.score_mix}"),
             (bool(args.start_from), f"-from-{args.start_from}", f"_from_{args.start_from}",
              f", the joint search starting from {args.start_from}'s prompt")]
    on = [x for x in parts if x[0]]
    return "".join(x[1] for x in on), "".join(x[2] for x in on), "".join(x[3] for x in on)
