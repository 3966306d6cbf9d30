"""Soft prompts on SST-2 16-shot with SmolLM2-135M: ours (prompt, prefix) vs PEFT prompt tuning vs manual.

Every (method, seed) runs in its own subprocess, wrapped in `flock /tmp/bench.lock` (real-model runs
are serialized across users of the machine), with 2 torch threads. Same data, k, init, optimizer,
steps and loss for ours and PEFT: 20 virtual tokens, text init, AdamW lr 0.03,
batch 8, 40 steps, constant lr (prefix: 1e-4 through the MLP, 5e-3 direct), no clipping, loss = cross-entropy over the great/terrible logits
after `{sentence} It was`. No checkpoint selection: the prompt after the last step is scored.
`prompt_nearest` scores each prompt's discrete reading (every vector replaced by its nearest token).
Ours run through the public API (`softprompt.tune`, `frozen_lm.evaluate`, `softprompt.nearest`);
PEFT keeps its own loop (it is the reference). s/step is the result's timings["step_seconds"].
Memory: peak resident memory during `tune` (or PEFT's loop) minus resident memory before it (Linux clear_refs).

    python benchmarks/bench_softprompt.py                 # the table in the README
    python benchmarks/bench_softprompt.py --seeds 42 --steps 5 --test-limit 64   # a quick check
    python benchmarks/bench_softprompt.py --train-set full --seeds 42 --steps 200 \
        --methods manual prompt prefix prefix_direct    # trained on the full SST-2 train set
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "k-shot" / "sst2"
FULL = DATA.parents[1] / "sst2"  # full SST-2: train 6920, dev 872, test 1821
MANUAL = "{sentence} It was [P] ."
LABELS = '{"0": "terrible", "1": "great"}'
INIT = "Classify the sentiment of this review as great or terrible"
METHODS = ("manual", "prompt", "prefix", "prefix_direct", "peft_prompt")
ROWS = ("manual", "prompt", "prompt_nearest", "prefix", "prefix_direct", "peft_prompt")


def _rss_reset() -> int:
    """Reset the peak-RSS counter; return the current RSS in kB (0 where /proc is unavailable)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return _status("VmRSS")
    except OSError:
        return 0


def _status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def _setup(args):
    """(model, the manual task, {train, dev, test} datasets)."""
    import torch

    from frozen_lm import data as data_mod
    from frozen_lm.model import FrozenLM
    from frozen_lm.task import PromptTask

    torch.set_num_threads(2)
    torch.manual_seed(args.seed)
    lm = FrozenLM.load(args.model)
    task = PromptTask(lm, MANUAL, LABELS)  # tune prepends the virtual tokens, or reserves the prefix's positions
    root = FULL if args.train_set == "full" else DATA
    split = root if args.train_set == "full" else root / f"16-{args.seed}"
    test = data_mod.load(str(root / "test.jsonl"))
    if args.test_limit:
        test = test.sample(args.test_limit, 0)
    data = {name: data_mod.load(str(split / f"{name}.jsonl")) for name in ("train", "dev")}
    data["test"] = test
    return lm, task, data


def _tune_config(args):
    from softprompt import PrefixTuningConfig, PromptTuningConfig

    lr = {"prefix": args.prefix_lr, "prefix_direct": args.prefix_direct_lr}.get(args.worker, args.lr)
    common = dict(num_virtual_tokens=args.k, init=f"text:{INIT}", lr=lr, steps=args.steps, batch_size=8,
                  schedule="constant", max_grad_norm=0.0, weight_decay=0.0, eval_every=0, loss="classes", seed=args.seed)
    if args.worker.startswith("prefix"):
        return PrefixTuningConfig(prefix_projection=args.worker == "prefix", **common)
    return PromptTuningConfig(**common)


def worker(args) -> dict:
    import softprompt
    from frozen_lm import evaluate

    lm, task, data = _setup(args)
    out = {"method": args.worker, "seed": args.seed}
    if args.worker == "peft_prompt":
        return {**out, **_peft(args, lm, task, data)}
    result = None
    if args.worker != "manual":
        base = _rss_reset()
        result = softprompt.tune(task, data["train"], None, _tune_config(args), progress=False)  # no dev: the last step
        out.update(step_s=result.timings["step_seconds"], cpu_step_s=result.timings["step_cpu_seconds"],
                   peak_mb=(_status("VmHWM") - base) / 1024, final_loss=result.history[-1]["loss"])
    for name in ("dev", "test"):
        out[name] = evaluate(task, data[name], prompt=result, batch_size=32)["accuracy"]
    if args.worker == "prompt":
        out.update(_nearest_reading(task, data, result))
    return out


def _nearest_reading(task, data, result) -> dict:
    """Scores of the prompt's discrete reading: each vector replaced by its nearest token (cosine)."""
    import softprompt
    from frozen_lm import evaluate

    reading = softprompt.nearest(result, k=1, metric="cosine")
    out = {"nearest_tokens": reading.trigger_text}
    for name in ("dev", "test"):
        out[f"nearest_{name}"] = evaluate(task, data[name], prompt=reading.prompt, batch_size=32)["accuracy"]
    return out


def _peft(args, lm, task, data) -> dict:
    """PEFT's prompt tuning on the same model, batches and loss; its init copied from ours (TEXT init).
    Its own loop on purpose: it is the reference the shared loop is measured against."""
    import torch
    from peft import PromptTuningConfig, get_peft_model

    from frozen_lm import evaluate
    from frozen_lm.prompts.init import prompt_init
    from frozen_lm.train import batches

    task = task.derive(reserved_positions=args.k)  # PEFT's virtual tokens take k positions
    enc = {name: task.encode(ds) for name, ds in data.items()}
    base = _rss_reset()
    init, _ = prompt_init(lm, task, args.k, f"text:{INIT}", torch.Generator().manual_seed(args.seed))
    model = get_peft_model(lm.model, PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=args.k))
    emb = model.prompt_encoder["default"].embedding
    with torch.no_grad():
        emb.weight.copy_(init)
    opt = torch.optim.AdamW(emb.parameters(), lr=args.lr, weight_decay=0.0)
    rows, stream, seconds = enc["train"].rows, batches(len(enc["train"].rows), 8, args.seed), 0.0
    cpu = 0.0
    model.train()
    for _ in range(args.steps):
        start, start_cpu = time.perf_counter(), time.process_time()
        batch = rows.subset(next(stream))
        loss = task.loss(_peft_logits(model, batch, args.k), batch, kind="classes")
        opt.zero_grad()
        loss.backward()
        opt.step()
        seconds, cpu = seconds + time.perf_counter() - start, cpu + time.process_time() - start_cpu
    out = {"step_s": seconds / args.steps, "cpu_step_s": cpu / args.steps, "peak_mb": (_status("VmHWM") - base) / 1024, "final_loss": float(loss)}
    model.eval()
    for name in ("dev", "test"):
        out[name] = evaluate(task, enc[name], prompt=lambda b: _peft_logits(model, b, args.k), batch_size=32)["accuracy"]
    return out


def _peft_logits(model, rows, k):
    logits = model(input_ids=rows.input_ids, attention_mask=rows.attention_mask).logits
    pos = rows.predict_pos + k
    return logits.gather(1, pos.unsqueeze(-1).expand(-1, -1, logits.shape[-1]))


def run_one(args, method: str, seed: int) -> dict:
    cmd = ["flock", "/tmp/bench.lock", sys.executable, __file__, "--worker", method, "--seed", str(seed),
           "--model", args.model, "--steps", str(args.steps), "--k", str(args.k), "--lr", str(args.lr),
           "--prefix-lr", str(args.prefix_lr), "--prefix-direct-lr", str(args.prefix_direct_lr), "--test-limit", str(args.test_limit or 0),
           "--train-set", args.train_set]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{method} seed {seed} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _fmt(values: list[float], scale: float = 1.0, digits: int = 1) -> str:
    if not values:
        return "-"
    mean = statistics.mean(values) * scale
    spread = statistics.stdev(values) * scale if len(values) > 1 else 0.0
    return f"{mean:.{digits}f} ± {spread:.{digits}f}"


def table(results: list[dict], seeds: list[int]) -> list[str]:
    results = results + [{"method": "prompt_nearest", "seed": r["seed"], "dev": r["nearest_dev"], "test": r["nearest_test"]}
                         for r in results if "nearest_test" in r]
    head = f"| method | {' | '.join(f'test s{s}' for s in seeds)} | dev mean ± sd | test mean ± sd | s/step (wall) | CPU s/step | peak MB |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for method in ROWS:
        rs = [r for r in results if r["method"] == method]
        if not rs:
            continue
        by_seed = {r["seed"]: r for r in rs}
        cells = [f"{100 * by_seed[s]['test']:.1f}" if s in by_seed else "-" for s in seeds]
        step = _fmt([r["step_s"] for r in rs if "step_s" in r], digits=2)
        cpu = _fmt([r["cpu_step_s"] for r in rs if "cpu_step_s" in r], digits=2)
        peak = _fmt([r["peak_mb"] for r in rs if "peak_mb" in r], digits=0)
        lines.append(f"| {method} | {' | '.join(cells)} | {_fmt([r['dev'] for r in rs], 100)} | "
                     f"{_fmt([r['test'] for r in rs], 100)} | {step} | {cpu} | {peak} |")
    return lines


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=42, help=argparse.SUPPRESS)
    p.add_argument("--seeds", type=int, nargs="+", default=[42, 13, 21])
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--k", type=int, default=20, help="virtual tokens / prefix length")
    p.add_argument("--lr", type=float, default=0.03)
    p.add_argument("--prefix-lr", type=float, default=1e-4, help="prefix tuning through the MLP")
    p.add_argument("--prefix-direct-lr", type=float, default=5e-3, help="prefix tuning without the MLP")
    p.add_argument("--test-limit", type=int, default=0, help="score only this many test rows (0: all)")
    p.add_argument("--train-set", choices=("16-shot", "full"), default="16-shot",
                   help="16-shot: LM-BFF splits 16-SEED, test 872 rows; full: SST-2 train 6920 (dev 872, test 1821)")
    p.add_argument("--save", default=None, help="also write the raw results as JSON here")
    p.add_argument("--from-json", default=None, help="print the table of a --save file and exit")
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return
    if args.from_json:
        results = json.loads(Path(args.from_json).read_text())
        print("\n".join(table(results, sorted({r["seed"] for r in results}, key=args.seeds.index))))
        return
    root = FULL if args.train_set == "full" else DATA
    if not root.exists():
        print(f"skipped: {root} not found (the shared data folder)")
        return
    results = []
    for seed in args.seeds:
        for method in args.methods:
            results.append(run_one(args, method, seed))
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    if args.save:
        Path(args.save).write_text(json.dumps(results, indent=2))
    n_test = args.test_limit or (1821 if args.train_set == "full" else 872)
    print(f"SST-2 {args.train_set}, {args.model}, k={args.k}, {args.steps} steps, batch 8, test rows: {n_test}")
    print("\n".join(table(results, args.seeds)))


if __name__ == "__main__":
    main()
