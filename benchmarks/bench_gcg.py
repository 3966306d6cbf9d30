"""Discrete search beyond AutoPrompt, on smollm2-135m (run alone on the machine; prints torch threads).

    python -m benchmarks.bench_gcg --part nanogcg --nanogcg-python /path/to/venv/bin/python   # (a) ~5 min
    python -m benchmarks.bench_gcg --part sst2        # (b) discrete prompts on SST-2 16-shot, ~46 min
    python -m benchmarks.bench_gcg --part fluency     # (c) the fluency weight, ~7 min per AutoPrompt run, ~4 per PEZ run

(a) GCG side by side with nanoGCG 0.3.0, which needs transformers <= 4.47.1 and so runs in its own
venv (`python -m venv V && V/bin/pip install torch==2.13.0 transformers==4.47.1 nanogcg==0.3.0`;
never a dependency of this package). The same weights (the project's cached smollm2-135m folder,
given a 4.x config and tokenizer_config in runs/bench/smollm2-4x), chat message 'Write a short poem
about the sea.' with 20 optimized tokens after it (init 'x x ... x'), target 'Sure, here is a poem
about the sea', search width 64, top-k 64, 10 steps, seeds 0 1 2, on the CPU in float32 and in
bfloat16 (--dtypes; this CPU runs bfloat16 matmuls on AMX, about 10x its fp32 rate). Reported:
seconds per step (nanoGCG: its whole run / 10; ours: the mean iteration time, and of it the gradient
pass and the candidate scoring) and the loss (mean
cross-entropy per target token) at the start and the end, in the run's dtype and, for every final
prompt, scored by one fp32 evaluator.
(b) SST-2 LM-BFF 16-shot splits (seeds 13 21 42), 872 test rows, label words terrible/great: the
manual template, prompt tuning with 20 virtual tokens before it (text init) and its nearest-token
reading, PEZ on the same 20 slots and init (the library's defaults: 100 steps with linear decay, lr from the
embedding scale; its dev split scores the projection after every step, a projection already scored is not
scored again), AutoPrompt and GCG on '[T]x5 {sentence} It was [P] .'. Also reported: the minutes each
method's training or search takes per seed (test scoring excluded).
(c) AutoPrompt and PEZ on '[T]x5 {sentence} It was [P] .' with fluency weight 0, 0.01 and 0.1 on the
same splits: test accuracy, the prompt's perplexity, the prompts (--reuse takes the rows of an earlier
run's runs/bench/gcg_fluency.json, which is written after every run).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import time
from pathlib import Path

from benchmarks.common import OUT, SHARED, print_table, require, save_json, threads_line

MESSAGE, TARGET = "Write a short poem about the sea.", "Sure, here is a poem about the sea"
INIT = " ".join(["x"] * 20)
MANUAL, LABELS = "{sentence} It was [P] .", {"0": "terrible", "1": "great"}
SOFT_INIT = "text:Classify the sentiment of this review as great or terrible"
SST2 = SHARED / "k-shot" / "sst2"

NANOGCG_DRIVER = r"""
import json, sys, time, torch, transformers
import nanogcg
from nanogcg import GCGConfig
folder, seed, steps, init, message, target, dtype = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), *sys.argv[4:8]
torch.set_num_threads(2)
model = transformers.AutoModelForCausalLM.from_pretrained(folder, torch_dtype=getattr(torch, dtype))
tok = transformers.AutoTokenizer.from_pretrained(folder)
config = GCGConfig(num_steps=steps, search_width=64, topk=64, optim_str_init=init, seed=seed, verbosity="WARNING")
start = time.perf_counter()
result = nanogcg.run(model, tok, message, target, config)
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "losses": result.losses, "best_loss": result.best_loss,
                  "best_string": result.best_string, "transformers": transformers.__version__}))
"""


def converted_folder(lm_name: str = "smollm2-135m") -> Path:
    """The cached smollm2 weights with a transformers-4.x config (rope_theta at the top level) and a
    GPT2TokenizerFast tokenizer_config carrying the chat template (bos left as a plain token, so
    nanoGCG keeps the template's first <|im_start|>)."""
    from frozen_lm.registry import cache_dir

    src = next(cache_dir().glob(f"{lm_name}-*/source.json")).parent
    dst = OUT / "smollm2-4x"
    dst.mkdir(parents=True, exist_ok=True)
    config = json.loads((src / "config.json").read_text())
    config["rope_theta"] = config.pop("rope_parameters", {}).get("rope_theta", 100000.0)
    config["torch_dtype"] = config.pop("dtype", "float32")
    (dst / "config.json").write_text(json.dumps(config, indent=2))
    tok = json.loads((src / "tokenizer_config.json").read_text())
    tok.update({"tokenizer_class": "GPT2TokenizerFast", "chat_template": (src / "chat_template.jinja").read_text(),
                "bos_token": "<|endoftext|>", "add_bos_token": False})
    tok.pop("backend", None)
    (dst / "tokenizer_config.json").write_text(json.dumps(tok, indent=2))
    shutil.copy(src / "tokenizer.json", dst / "tokenizer.json")
    if not (dst / "model.safetensors").exists():
        (dst / "model.safetensors").symlink_to(src / "model.safetensors")
    return dst


def part_nanogcg(args) -> list[dict]:
    """Both implementations in each dtype (the weights and every pass in it; on this CPU bfloat16
    matmuls run on AMX). Every final prompt is also scored by one fp32 evaluator, so losses compare
    across dtypes and implementations ('final_loss_fp32')."""
    import autoprompt
    from autoprompt import GCGConfig
    from frozen_lm import FrozenLM, PromptTask, evaluate

    folder = converted_folder()
    judge = PromptTask(FrozenLM.load("smollm2-135m"), MESSAGE + " [T]x20", target=TARGET, chat=True)
    fp32_loss = lambda prompt: evaluate(judge, judge.default_data(), prompt=prompt)["loss"]  # noqa: E731
    rows = []
    for dtype in args.dtypes:
        lm = FrozenLM.load("smollm2-135m", dtype=dtype)
        task = PromptTask(lm, MESSAGE + " [T]x20", target=TARGET, chat=True)
        for seed in args.seeds:
            cfg = GCGConfig(iters=args.steps, search_width=64, topk=64, initial_trigger=INIT, seed=seed)
            start = time.perf_counter()
            r = autoprompt.search(task, None, None, cfg, progress=False)
            ours = time.perf_counter() - start
            losses = [h["train_loss"] for h in r.history]
            rows.append({"run": "ours", "dtype": dtype, "seed": seed, "s_per_step": r.timings["seconds_per_iteration"],
                         "total_s": ours, "start_loss": r.metrics["start_dev"]["loss"],
                         "final_loss": r.metrics["dev"]["loss"], "final_loss_fp32": fp32_loss(r),
                         "gradient_s": statistics.mean(h["gradient_s"] for h in r.history),
                         "scoring_s": statistics.mean(h["scoring_s"] for h in r.history),
                         "reproduces": r.metrics["generations"][0]["reproduces"], "losses": losses,
                         "prompt": r.trigger_text})
            print_table([{k: v for k, v in rows[-1].items() if k != "losses"}])
            if args.nanogcg_python:
                proc = subprocess.run([args.nanogcg_python, "-c", NANOGCG_DRIVER, str(folder), str(seed), str(args.steps),
                                       INIT, MESSAGE, TARGET, dtype], capture_output=True, text=True)
                if proc.returncode != 0:
                    raise SystemExit(f"nanoGCG failed:\n{proc.stderr[-3000:]}")
                n = json.loads(proc.stdout.strip().splitlines()[-1])
                rows.append({"run": f"nanoGCG 0.3.0 (transformers {n['transformers']})", "dtype": dtype, "seed": seed,
                             "s_per_step": n["seconds"] / args.steps, "total_s": n["seconds"], "start_loss": None,
                             "final_loss": n["best_loss"], "final_loss_fp32": fp32_loss(n["best_string"]),
                             "reproduces": None, "losses": n["losses"], "prompt": n["best_string"]})
                print_table([{k: v for k, v in rows[-1].items() if k != "losses"}])
    return rows


def _sst2(seed: int) -> tuple[str, str, str]:
    split = SST2 / f"16-{seed}"
    return str(split / "train.jsonl"), str(split / "dev.jsonl"), str(SST2 / "test.jsonl")


def _since(start: float) -> float:
    """Seconds since `start` (a method's training or search; its test scoring is timed apart)."""
    return round(time.perf_counter() - start, 1)


def part_sst2(args) -> list[dict]:
    import autoprompt
    import softprompt
    from frozen_lm import FrozenLM, PromptTask, evaluate

    lm = FrozenLM.load("smollm2-135m")
    manual = PromptTask(lm, MANUAL, LABELS)
    slots5 = PromptTask(lm, "[T]x5 " + MANUAL, LABELS)
    rows = []
    for seed in args.seeds:
        train, dev, test = _sst2(seed)
        acc = lambda task, prompt=None, test=test: evaluate(task, test, prompt=prompt, batch_size=32)["accuracy"]  # noqa: E731
        row = {"seed": seed, "manual": acc(manual)}
        clock = time.perf_counter()
        tune = softprompt.PromptTuningConfig(num_virtual_tokens=20, init=SOFT_INIT, lr=0.03, steps=40,
                                             schedule="constant", max_grad_norm=0.0, eval_every=0, seed=seed)
        s = softprompt.tune(manual, train, None, tune, progress=False)
        row["soft_prompt_s"] = _since(clock)
        row["soft_prompt"] = acc(manual, s)
        row["nearest_reading"] = acc(manual, softprompt.nearest(s, k=1).prompt)
        clock = time.perf_counter()
        pez = softprompt.tune(manual, train, dev, softprompt.PezConfig(
            num_virtual_tokens=20, init=SOFT_INIT, steps=args.pez_steps, eval_every=1, seed=seed),
            progress=False)
        row["pez_s"] = _since(clock)
        row["pez"], row["pez_prompt"] = acc(manual, pez), pez.prompt.text
        clock = time.perf_counter()
        ap = autoprompt.search(slots5, train, dev, autoprompt.AutoPromptConfig(iters=20, num_cand=16, seed=seed),
                               progress=False)
        row["autoprompt_s"] = _since(clock)
        row["autoprompt"], row["autoprompt_prompt"] = acc(slots5, ap), ap.filled_template
        clock = time.perf_counter()
        gcg = autoprompt.search(slots5, train, dev, autoprompt.GCGConfig(
            iters=12, search_width=64, topk=64, eval_size=16, seed=seed), progress=False)
        row["gcg_s"] = _since(clock)
        row["gcg"], row["gcg_prompt"] = acc(slots5, gcg), gcg.filled_template
        rows.append(row)
        print_table([{k: v for k, v in row.items() if k == "soft_prompt" or not k.endswith("_prompt")}])
        save_json("gcg_sst2", {"args": vars(args), "rows": rows, "partial": True})  # a cut run keeps these
    return rows


def part_fluency(args) -> list[dict]:
    import autoprompt
    import softprompt
    from frozen_lm import FrozenLM, PromptTask, evaluate

    lm = FrozenLM.load("smollm2-135m")
    task = PromptTask(lm, "[T]x5 " + MANUAL, LABELS)
    rows, earlier = [], _earlier_rows(args.reuse, args.pez_steps)
    for method in args.fluency_methods:
        for weight in args.weights:
            for seed in args.seeds:
                if (method, weight, seed) in earlier:  # a run an earlier invocation finished (same settings)
                    rows.append({**earlier[(method, weight, seed)], "reused": True})
                    print_table(rows[-1:])
                    continue
                train, dev, test = _sst2(seed)
                if method == "autoprompt":
                    cfg = autoprompt.AutoPromptConfig(iters=20, num_cand=16, fluency_weight=weight, seed=seed)
                    r = autoprompt.search(task, train, dev, cfg, progress=False)
                else:  # PEZ on the same 5 slots, --pez-steps steps, the projection scored on dev after every step
                    cfg = softprompt.PezConfig(steps=args.pez_steps, eval_every=1, fluency_weight=weight, seed=seed)
                    r = softprompt.tune(task, train, dev, cfg, progress=False)
                rows.append({"method": method, "weight": weight, "seed": seed,
                             **({"pez_steps": args.pez_steps} if method == "pez" else {}),
                             "test": evaluate(task, test, prompt=r)["accuracy"],
                             "perplexity": r.metrics["prompt_perplexity"], "prompt": r.filled_template})
                print_table(rows[-1:])
                save_json("gcg_fluency", {"args": vars(args), "rows": rows, "partial": True})  # a cut run keeps these
    return rows


def _earlier_rows(path: str | None, pez_steps: int) -> dict:
    """{(method, weight, seed): row} of an earlier fluency run's JSON (AutoPrompt ran 20 iterations x 16
    candidates as now); PEZ rows count only if they ran `pez_steps` steps (rows without the field: 40)."""
    if not path:
        return {}
    rows = json.loads(Path(path).read_text())["rows"]
    return {(r["method"], float(r["weight"]), int(r["seed"])): r for r in rows
            if r["method"] != "pez" or r.get("pez_steps", 40) == pez_steps}


def summarize(part: str, rows: list[dict]) -> None:
    mean_sd = lambda xs: f"{100 * statistics.mean(xs):.1f} ± {100 * statistics.stdev(xs):.1f}" if len(xs) > 1 else f"{100 * xs[0]:.1f}"  # noqa: E731
    if part == "nanogcg":
        for run, dtype in dict.fromkeys((r["run"], r["dtype"]) for r in rows):
            rs = [r for r in rows if r["run"] == run and r["dtype"] == dtype]
            print(f"{run}, {dtype}: {statistics.mean(r['s_per_step'] for r in rs):.2f} s/step, final loss "
                  f"{statistics.mean(r['final_loss'] for r in rs):.3f} in its dtype, "
                  f"{statistics.mean(r['final_loss_fp32'] for r in rs):.3f} scored in fp32 (seeds {[r['seed'] for r in rs]})")
    elif part == "sst2":
        cols = ["manual", "soft_prompt", "nearest_reading", "pez", "autoprompt", "gcg"]
        print_table([{"method": c, **{f"s{r['seed']}": f"{100 * r[c]:.1f}" for r in rows}, "mean ± sd": mean_sd([r[c] for r in rows]),
                      "minutes per seed": f"{statistics.mean(r[c + '_s'] for r in rows) / 60:.1f}" if c + "_s" in rows[0] else ""}
                     for c in cols])
    else:
        groups = dict.fromkeys((r.get("method", "autoprompt"), r["weight"]) for r in rows)
        pick = lambda m, w: [r for r in rows if r.get("method", "autoprompt") == m and r["weight"] == w]  # noqa: E731
        print_table([{"method": m, "weight": w, "test mean ± sd": mean_sd([r["test"] for r in pick(m, w)]),
                      "perplexity (geometric mean)": f'{statistics.geometric_mean(r["perplexity"] for r in pick(m, w)):.4g}'} for m, w in groups])


def main() -> None:
    from softprompt.config import PezConfig

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=["nanogcg", "sst2", "fluency"], required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=None)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--pez-steps", type=int, default=PezConfig().steps,
                    help="parts sst2 and fluency: PEZ optimizer steps (default: the library's, %(default)s, with its linear decay)")
    ap.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.01, 0.1])
    ap.add_argument("--reuse", default=None, help="part fluency: a JSON of an earlier fluency run whose rows are taken as they are (PEZ rows only if they ran the same --pez-steps)")
    ap.add_argument("--fluency-methods", nargs="+", default=["autoprompt", "pez"], choices=["autoprompt", "pez"],
                    help="part fluency: the methods run with each weight")
    ap.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"], choices=["float32", "bfloat16"],
                    help="part nanogcg: the dtypes both implementations run in")
    ap.add_argument("--nanogcg-python", default=None, help="python of a venv with nanogcg 0.3.0 (part nanogcg)")
    args = ap.parse_args()
    args.seeds = args.seeds or ([0, 1, 2] if args.part == "nanogcg" else [13, 21, 42])
    if args.part != "nanogcg":
        require(SST2 / "test.jsonl")
    print(threads_line(), flush=True)
    rows = {"nanogcg": part_nanogcg, "sst2": part_sst2, "fluency": part_fluency}[args.part](args)
    summarize(args.part, rows)
    save_json(f"gcg_{args.part}", {"args": vars(args), "rows": rows})


if __name__ == "__main__":
    main()
