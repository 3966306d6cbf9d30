"""GCG time-to-target against nanoGCG 0.3.0 (issue 30): wall time to reach nanoGCG's own final loss.

    python -m benchmarks.bench_gcg_ttt --nanogcg-python /work/venvs/nanogcg/bin/python       # full, <= 50 min
    python -m benchmarks.bench_gcg_ttt --nanogcg-python V/bin/python --targets 1 --seeds 0 --steps 4 \\
        --ablations plain merge                                                            # a check, ~3 min

Setting (the README's nanoGCG side by side): smollm2-135m, the first --targets goal/target rows of
benchmarks/data/behaviors_benign.csv as the chat user message with 20 optimised tokens after it
(init 'x x ... x'), search width 64, top-k 64, --dtype on the CPU with --threads torch threads for
both. nanoGCG runs in its own venv (`python3 -m venv V && V/bin/pip install torch==2.13.0
transformers==4.47.1 nanogcg==0.3.0`) for --steps steps per target and seed; its wall time is the
budget B of that run, and L* is its best loss. Ours runs the same task until B has passed (a run
goes on after greedy generation reproduces the target: the presets' early stop is off here).

Every kept trigger along both runs (nanoGCG's per-step string, our per-iteration trigger) is scored
again by one float32 evaluator (ours, on the same weights), so losses compare across
implementations and dtypes; L* = min over nanoGCG's steps of that loss. Reported per run: seconds to
first reach L* (nanoGCG: its best step; inf when never within B), the speed-up (nanoGCG's seconds /
ours), and success at B: greedy generation (float32) after the lowest-loss trigger found within B
reproduces the target. The headline variants (--headline, default the 'fast' preset) run every
target and seed; the ablations (--ablations: plain GCG and each technique alone, with the 'all'
preset's value of that switch; also any preset name) run --ablation-seeds only and stop once their
own loss is 0.02 under L*. Time is measured from the call (setup included) to the end of each
iteration, model loading excluded, for both.

Duration alone on the README's CPU (bfloat16, 2 threads, ~1.2 s per nanoGCG step): 3 targets x 3
seeds x 60 steps: nanoGCG 9 x ~75 s, the headline preset 9 x ~75 s, 6 ablations x 3 targets x
<= 75 s (most stop earlier), the float32 rescoring ~10 s per run: at most about 50 minutes (a CPU
without AMX, e.g. AMD EPYC, runs a nanoGCG step in ~3 s: about 2 hours there, so give it
--targets 2 --ablation-seeds 0 --ablations plain merge; --dtype float32 takes ~2.5x as long).

Writes benchmarks/results/gcg_ttt.json (summary per variant, runs table), gcg_ttt_runs.csv (per
run) and docs/gcg_ttt.png (loss against seconds; a reduced run: gcg_ttt_reduced*), and the full curves to
runs/bench/gcg_ttt.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import subprocess
import time
from pathlib import Path

from benchmarks.common import RESULTS, print_table, save_json, threads_line, write_result

ROOT = Path(__file__).resolve().parents[1]
BENIGN = ROOT / "benchmarks" / "data" / "behaviors_benign.csv"
INIT = " ".join(["x"] * 20)
ABLATIONS = ("plain", "ramp", "history", "no-repeats", "distance", "merge")
HEADLINE = ("fast",)
STOP_MARGIN = 0.02  # ablations stop once their own loss is this far under L* (the float32 rescoring decides)

NANOGCG_DRIVER = r"""
import json, sys, time, torch, transformers
import nanogcg
import nanogcg.gcg as gcg_module
from nanogcg import GCGConfig
folder, seed, steps, init, message, target, dtype, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), *sys.argv[4:8], int(sys.argv[8])
torch.set_num_threads(threads)
model = transformers.AutoModelForCausalLM.from_pretrained(folder, torch_dtype=getattr(torch, dtype))
tok = transformers.AutoTokenizer.from_pretrained(folder)
stamps = []
def timed(iterable, *args, **kwargs):  # the end of every step: when the loop asks for the next one
    for item in iterable:
        stamps.append(time.perf_counter())
        yield item
    stamps.append(time.perf_counter())
gcg_module.tqdm = timed
config = GCGConfig(num_steps=steps, search_width=64, topk=64, optim_str_init=init, seed=seed, verbosity="WARNING")
start = time.perf_counter()
result = nanogcg.run(model, tok, message, target, config)
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "step_ends": [s - start for s in stamps[1:]], "losses": result.losses,
                  "strings": result.strings, "best_loss": result.best_loss, "best_string": result.best_string,
                  "transformers": transformers.__version__}))
"""


def variant_config(name: str, seed: int):
    """Our GCGConfig of a variant: plain GCG, one technique alone ('all' preset's value), or a preset
    (whose early stop is switched off: the run goes on to the budget, as nanoGCG's)."""
    from autoprompt import GCGConfig, GCGSchedule

    base = {"iters": 100_000, "search_width": 64, "topk": 64, "initial_trigger": INIT, "seed": seed}
    full = GCGConfig(**base, schedule="all").schedule
    alone = {"plain": None,
             "ramp": GCGSchedule(n_replace_start=full.n_replace_start, search_width_start=full.search_width_start,
                                 ramp=full.ramp),
             "history": GCGSchedule(history=full.history), "no-repeats": GCGSchedule(repeats=False),
             "distance": GCGSchedule(distance_weight=full.distance_weight), "merge": GCGSchedule(merge=full.merge),
             "early-stop": GCGSchedule(stop_on_success=True)}
    schedule = alone[name] if name in alone else GCGSchedule(preset=name, stop_on_success=False)
    return GCGConfig(**base, schedule=schedule)


def run_nanogcg(args, folder: Path, goal: str, target: str, seed: int) -> dict:
    proc = subprocess.run([args.nanogcg_python, "-c", NANOGCG_DRIVER, str(folder), str(seed), str(args.steps), INIT, goal,
                           target, args.dtype, str(args.threads)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"nanoGCG failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_ours(task, name: str, seed: int, budget: float, stop_below: float | None) -> dict:
    """One of our runs until the budget (seconds) has passed, greedy success, or (ablations) its own loss
    under stop_below; per iteration: the seconds at its end and its kept trigger."""
    import autoprompt

    ends: list[float] = []
    start = time.perf_counter()

    def callback(event) -> bool:
        ends.append(time.perf_counter() - start)
        own = event.metrics.get("loss")  # the gradient pass's loss at the iteration's start trigger
        return ends[-1] >= budget or (stop_below is not None and own is not None and own <= stop_below)

    r = autoprompt.search(task, None, None, variant_config(name, seed), progress=False, callback=callback)
    history = r.history[: len(ends)]
    return {"step_ends": ends, "triggers": [h["trigger_ids"] for h in history],
            "own_losses": [h.get("train_loss") for h in history], "success_steps": [bool(h.get("success")) for h in history],
            "iterations": len(history), "n_scored": sum(h.get("n_scored", h["n_candidates"] + 1) for h in history)}


class Judge:
    """One float32 evaluator for every trigger of one target: loss and greedy reproduction, cached."""

    def __init__(self, lm, goal: str, target: str):
        from frozen_lm import PromptTask

        self.task = PromptTask(lm, goal + " [T]x20", target=target, chat=True)
        self.data = self.task.default_data()
        self.seen: dict = {}

    def __call__(self, prompt) -> dict:
        from frozen_lm import evaluate
        from frozen_lm.evaluate import DiscretePrompt

        key = prompt if isinstance(prompt, str) else tuple(prompt)
        if key not in self.seen:
            p = prompt if isinstance(prompt, str) else DiscretePrompt.from_ids(self.task.lm.tokenizer, list(prompt))
            m = evaluate(self.task, self.data, prompt=p)
            self.seen[key] = {"loss": m["loss"], "success": bool(m["exact_match"])}
        return self.seen[key]


def analyse(ends: list[float], prompts: list, judge: Judge, budget: float, lstar: float | None) -> dict:
    """The judged curve within the budget, seconds to first reach L* and success of its best trigger."""
    curve = [(t, judge(p)["loss"]) for t, p in zip(ends, prompts) if t <= budget + 1e-9]
    if not curve:
        return {"curve": [], "t_lstar": math.inf, "best_loss": None, "success": False}
    best = min(range(len(curve)), key=lambda i: curve[i][1])
    hit = next((t for t, loss in curve if lstar is not None and loss <= lstar + 1e-6), math.inf)
    return {"curve": [[round(t, 3), round(loss, 5)] for t, loss in curve], "t_lstar": hit,
            "best_loss": curve[best][1], "success": judge(prompts[best])["success"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nanogcg-python", required=True, help="python of a venv with nanogcg 0.3.0")
    ap.add_argument("--targets", type=int, default=3, help="the first N rows of the benign behaviors file")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=60, help="nanoGCG steps (its wall time is the budget)")
    ap.add_argument("--headline", nargs="+", default=list(HEADLINE), help="variants run on every target and seed")
    ap.add_argument("--ablations", nargs="*", default=list(ABLATIONS), help="variants run on --ablation-seeds")
    ap.add_argument("--ablation-seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--resume", metavar="FILE", help="keep the runs of a saved runs/bench/gcg_ttt*.json made with the "
                                                     "same --steps, --dtype and --threads (nanoGCG's included, so its "
                                                     "budget and L*) and make only the missing ones")
    ap.add_argument("--report", metavar="FILE", help="no run: the tables, plot and results files again from a saved "
                                                     "run's runs/bench/gcg_ttt*.json (its own options)")
    args = ap.parse_args()
    if args.report:
        saved = json.loads(Path(args.report).read_text())
        report(argparse.Namespace(**{**saved["args"], "report": None}), saved["runs"])
        return
    import torch

    from benchmarks.bench_gcg import converted_folder
    from frozen_lm import FrozenLM, PromptTask

    runs = resumed(args) if args.resume else []
    torch.set_num_threads(args.threads)
    print(threads_line(), flush=True)
    rows = list(csv.DictReader(BENIGN.open(encoding="utf-8")))[: args.targets]
    folder = converted_folder()
    lm = FrozenLM.load("smollm2-135m", dtype=args.dtype)
    judge_lm = lm if args.dtype == "float32" else FrozenLM.load("smollm2-135m", dtype="float32")
    for t, row in enumerate(rows):
        goal, target = row["goal"], row["target"]
        task, judge = PromptTask(lm, goal + " [T]x20", target=target, chat=True), Judge(judge_lm, goal, target)
        for seed in args.seeds:
            done = {r["variant"]: r for r in runs if (r["target"], r["seed"]) == (t, seed)}
            if "nanogcg" in done:
                budget, lstar, nano = done["nanogcg"]["budget_s"], done["nanogcg"]["lstar"], done["nanogcg"]
            else:
                n = run_nanogcg(args, folder, goal, target, seed)
                budget = n["seconds"]
                lstar = min(judge(s)["loss"] for s in n["strings"])
                nano = analyse(n["step_ends"], n["strings"], judge, budget, lstar)
                runs.append({"target": t, "goal": goal, "seed": seed, "impl": "nanoGCG 0.3.0", "variant": "nanogcg",
                             "budget_s": budget, "lstar": lstar, "steps": len(n["losses"]), **nano})
                print_table([_row(runs[-1], nano["t_lstar"])])
            names = list(args.headline) + [a for a in args.ablations if seed in args.ablation_seeds]
            for name in [n for n in dict.fromkeys(names) if n not in done]:
                stop = lstar - STOP_MARGIN if name not in args.headline else None
                ours = run_ours(task, name, seed, budget, stop)
                got = analyse(ours["step_ends"], ours["triggers"], judge, budget, lstar)
                runs.append({"target": t, "goal": goal, "seed": seed, "impl": "ours", "variant": name, "budget_s": budget,
                             "lstar": lstar, "steps": ours["iterations"], "n_scored": ours["n_scored"], **got})
                print_table([_row(runs[-1], nano["t_lstar"])])
            save_json("gcg_ttt", {"args": vars(args), "runs": runs, "partial": True})
    report(args, runs)


def resumed(args) -> list[dict]:
    """The runs of a saved run (--resume) that this one would make too; its options must match where they
    change a run's numbers."""
    saved = json.loads(Path(args.resume).read_text())
    for key in ("steps", "dtype", "threads"):
        if saved["args"][key] != getattr(args, key):
            raise SystemExit(f"--resume {args.resume}: it was run with --{key} {saved['args'][key]}, not {getattr(args, key)}")
    keep = [r for r in saved["runs"] if r["target"] < args.targets and r["seed"] in args.seeds]
    print(f"resuming: {len(keep)} runs of {args.resume} kept", flush=True)
    return keep


def _row(run: dict, nano_t: float) -> dict:
    t = run["t_lstar"]
    return {"target": run["target"], "seed": run["seed"], "variant": run["variant"], "L*": round(run["lstar"], 4),
            "s_to_L*": round(t, 2) if math.isfinite(t) else "not within B", "budget_s": round(run["budget_s"], 1),
            "speedup": round(nano_t / t, 2) if math.isfinite(t) and t > 0 else 0.0,
            "best_loss": round(run["best_loss"], 4) if run["best_loss"] is not None else None,
            "success_at_B": run["success"], "steps": run["steps"]}


def summarize(runs: list[dict]) -> tuple[list[dict], list[dict]]:
    """(per-run rows, one summary row per variant) with speed-ups against the same target and seed's nanoGCG."""
    nano = {(r["target"], r["seed"]): r["t_lstar"] for r in runs if r["variant"] == "nanogcg"}
    per_run = [_row(r, nano[(r["target"], r["seed"])]) for r in runs]
    summary = []
    plain = {(r["target"], r["seed"]): r["t_lstar"] for r in runs if r["variant"] == "plain"}
    for name in dict.fromkeys(r["variant"] for r in runs):
        rs = [r for r in runs if r["variant"] == name]
        times = [r["t_lstar"] for r in rs]
        ratios = [nano[(r["target"], r["seed"])] / r["t_lstar"] if math.isfinite(r["t_lstar"]) else 0.0 for r in rs]
        base = [nano[(r["target"], r["seed"])] for r in rs]
        med = statistics.median(times)
        summary.append({"variant": name, "runs": len(rs), "reached_L*": sum(math.isfinite(t) for t in times),
                        "median_s_to_L*": round(med, 2) if math.isfinite(med) else "inf",
                        "nanogcg_median_s_to_L*": round(statistics.median(base), 2),
                        "median_speedup": round(statistics.median(ratios), 2),
                        "speedup_of_medians": round(statistics.median(base) / med, 2) if math.isfinite(med) else 0.0,
                        "success_at_B": f"{sum(r['success'] for r in rs)}/{len(rs)}"})
        both = [plain[k] for k in ((r["target"], r["seed"]) for r in rs) if k in plain]
        if plain and len(both) == len(rs):  # its own factor: our plain GCG's median seconds to L* on its runs / its
            plain_med = statistics.median(both)
            summary[-1]["vs_plain"] = (round(plain_med / med, 2) if math.isfinite(med) and math.isfinite(plain_med)
                                       else "inf" if math.isfinite(med) else 0.0)
        elif plain:
            summary[-1]["vs_plain"] = None  # plain GCG did not run on all of this variant's targets and seeds
    return per_run, summary


def report(args, runs: list[dict]) -> None:
    per_run, summary = summarize(runs)
    print("\nper variant (speed-up = nanoGCG's seconds to L* / ours, same target and seed):")
    print_table(summary)
    full = args.targets >= 3 and len(args.seeds) >= 3 and args.steps >= 60
    name = "gcg_ttt" if full else "gcg_ttt_reduced"
    save_json(name, {"args": vars(args), "runs": runs})
    png = plot(runs, ROOT / "docs" / f"{name}.png", args.headline[0] if args.headline else None)
    cut = "" if full else (f"Reduced run: {args.targets} targets x {len(args.seeds)} seeds x {args.steps} nanoGCG steps "
                           "(the full benchmark: 3 x 3 x 60), ablations on seeds "
                           f"{', '.join(map(str, args.ablation_seeds))}. ")
    if getattr(args, "resume", None):
        cut += "Made in more than one sitting on the same machine (--resume keeps the earlier runs). "
    notes = (cut + "Seconds to first reach L* (nanoGCG 0.3.0's best loss in its --steps steps, every trigger "
             "rescored by one float32 evaluator) and success (greedy generation reproduces the target) with the best "
             "trigger found within nanoGCG's wall time B; speed-up = nanoGCG's seconds to L* / ours, same target and "
             f"seed (0 when ours never reached L* within B); vs_plain = our plain GCG's median seconds to L* / the "
             f"variant's, over the same runs (a technique's own factor; 0: its median run never reached L*). Per run: "
             f"{name}_runs.csv.")
    path = write_result(name, summary, notes=notes, command=command_of(args), title="GCG time to target against nanoGCG",
                        tables={"runs": per_run}, figures=[str(png.relative_to(ROOT))] if png else None)
    write_csv(RESULTS / f"{name}_runs.csv", per_run, json.loads(path.read_text()))


def command_of(args) -> str:
    """The command that runs these options (what a results file records, also when --report rewrites it)."""
    cmd = ["python", "-m", "benchmarks.bench_gcg_ttt", "--nanogcg-python", "V/bin/python", "--targets", str(args.targets),
           "--seeds", *map(str, args.seeds), "--steps", str(args.steps), "--headline", *args.headline,
           "--ablations", *args.ablations, "--ablation-seeds", *map(str, args.ablation_seeds), "--dtype", args.dtype,
           "--threads", str(args.threads)]
    return " ".join(cmd)


def write_csv(path: Path, rows: list[dict], meta: dict) -> None:
    """The per-run table as a results CSV: '# key: value' lines (benchmarks/results/README.md), then the rows."""
    head = {"benchmark": path.stem, "title": "GCG time to target against nanoGCG, per run", "command": meta["command"],
            "date": meta["date"], "commit": meta.get("commit") or "", "notes": meta["notes"].replace("\n", " ")}
    head.update({f"machine.{k}": v for k, v in meta["machine"].items()})
    with path.open("w", newline="", encoding="utf-8") as f:
        f.writelines(f"# {k}: {v}\n" for k, v in head.items())
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def plot(runs: list[dict], path: Path, variant: str | None) -> Path | None:
    """Loss (float32) against seconds: nanoGCG and one of our variants, every seed, one panel per target."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    targets = sorted({r["target"] for r in runs})
    fig, axes = plt.subplots(1, len(targets), figsize=(4.2 * len(targets), 3.2), squeeze=False)
    for ax, t in zip(axes[0], targets):
        for r in runs:
            if r["target"] != t or r["variant"] not in ("nanogcg", variant) or not r["curve"]:
                continue
            xs, ys = zip(*r["curve"])
            nano = r["variant"] == "nanogcg"
            ax.plot(xs, ys, "--" if nano else "-", color="black" if nano else "tab:blue", alpha=0.5 + 0.2 * (r["seed"] % 3),
                    label=("nanoGCG 0.3.0" if nano else f"ours ({variant})") if r["seed"] == runs[0]["seed"] else None)
            if nano:
                ax.axhline(r["lstar"], color="gray", linewidth=0.5)
        goal = next(r["goal"] for r in runs if r["target"] == t)
        ax.set_title(goal[:38], fontsize=8)
        ax.set_xlabel("seconds")
        ax.set_ylabel("loss (float32)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


if __name__ == "__main__":
    main()
