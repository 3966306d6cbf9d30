"""The GPU check's Python parts (benchmarks/gpu_check.sh runs them; each part prints what it measured).

    python -m benchmarks.gpu_check speed --model smollm2-135m [--dtype bfloat16]
        bf16 search and prompt tuning on the demo sentiment task: seconds per search iteration and per
        tuning step, peak GPU memory of each.
    python -m benchmarks.gpu_check run --model M --dtype D --save FILE
        a short search and tune with fixed seeds (under torchrun: every process runs it, process 0
        saves); run once plain and once with `torchrun --nproc-per-node 2`, then
    python -m benchmarks.gpu_check compare ONE.pt TWO.pt [--dtype D]
        prints whether 1 and 2 processes found the same trigger and trained the same prompt.
    python -m benchmarks.gpu_check quant --model M [--quantize 8bit 4bit]
        bitsandbytes: search and prompt tuning over 8- and 4-bit linear layers (bf16 elsewhere): seconds,
        peak memory, and whether the prompt trained (its loss fell and its vectors moved).
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

LABELS = {"0": "terrible", "1": "great"}
TRAIN, DEV = "demo:sentiment:train", "demo:sentiment:dev"
TOLERANCE = {"float32": 1e-4, "bfloat16": 2e-2, "float16": 5e-3}


def _peak_mib() -> float:
    return torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else float("nan")


def _reset_peak() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def _load(model: str, dtype: str, quantize: str | None = None):
    from frozen_lm.model import FrozenLM

    start = time.perf_counter()
    lm = FrozenLM.load(model, device="auto", dtype=dtype, quantize=quantize)
    return lm, time.perf_counter() - start


def speed(args) -> None:
    """Seconds per search iteration and per tuning step, and peak GPU memory, on one device."""
    import autoprompt
    import softprompt
    from frozen_lm.task import PromptTask

    lm, load_s = _load(args.model, args.dtype)
    print(f"[speed] {args.model} {args.dtype} on {lm.device} (load {load_s:.1f} s)", flush=True)
    task = PromptTask(lm, "{sentence} [T] [T] [T] [P]", LABELS)
    _reset_peak()
    found = autoprompt.search(task, TRAIN, DEV, autoprompt.AutoPromptConfig(iters=args.iters, seed=0), progress=False)
    search_mib = _peak_mib()
    per_iter = found.timings["seconds_per_iteration"]
    _reset_peak()
    tuned = softprompt.tune(task, TRAIN, DEV, softprompt.PromptTuningConfig(steps=args.steps, batch_size=8, seed=0),
                            progress=False)
    tune_mib = _peak_mib()
    per_step = tuned.timings["step_seconds"]
    print(f"RESULT model={args.model} dtype={args.dtype} search_s_per_iter={per_iter:.3f} "
          f"search_peak_mib={search_mib:.0f} search_dev={found.metrics['dev']['accuracy']:.3f} "
          f"tune_s_per_step={per_step:.4f} tune_peak_mib={tune_mib:.0f} "
          f"tune_dev={tuned.metrics['dev']['accuracy']:.3f} trigger={found.trigger_text!r}", flush=True)


def quant(args) -> int:
    """Search and prompt tuning over bitsandbytes-quantized linear layers: they run, the trigger search
    gets gradients through the (unquantized) input embeddings, and the soft prompt trains."""
    import autoprompt
    import softprompt
    from frozen_lm.task import PromptTask

    status = 0
    for bits in args.quantize:
        lm, load_s = _load(args.model, "bfloat16", bits)
        task = PromptTask(lm, "{sentence} [T] [T] [T] [P]", LABELS)
        _reset_peak()
        found = autoprompt.search(task, TRAIN, DEV, autoprompt.AutoPromptConfig(iters=args.iters, seed=0), progress=False)
        search_mib = _peak_mib()
        _reset_peak()
        tuned = softprompt.tune(task, TRAIN, DEV, softprompt.PromptTuningConfig(steps=args.steps, batch_size=8, seed=0),
                                progress=False)
        losses = [h["loss"] for h in tuned.history if "loss" in h]
        moved = float((tuned.tensors["prompt_embeddings"] - tuned.tensors["init_embeddings"]).abs().max())
        trained = bool(losses) and min(losses[-3:]) < losses[0] and moved > 0
        status |= 0 if trained else 1
        print(f"RESULT model={args.model} quantize={bits} load_s={load_s:.1f} "
              f"search_s_per_iter={found.timings['seconds_per_iteration']:.3f} search_peak_mib={search_mib:.0f} "
              f"tune_s_per_step={tuned.timings['step_seconds']:.4f} tune_peak_mib={_peak_mib():.0f} "
              f"tune_loss_first={losses[0] if losses else float('nan'):.3f} "
              f"tune_loss_last={losses[-1] if losses else float('nan'):.3f} prompt_moved={moved:.2e} trained={trained}",
              flush=True)
        del lm, task, found, tuned
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return status


def run(args) -> None:
    """A short search and tune with fixed seeds; process 0 saves what the processes agreed on."""
    import autoprompt
    import softprompt
    from frozen_lm import distributed
    from frozen_lm.task import PromptTask

    lm, _ = _load(args.model, args.dtype)
    task = PromptTask(lm, "{sentence} [T] [T] [P]", LABELS)
    start = time.perf_counter()
    found = autoprompt.search(task, TRAIN, DEV, autoprompt.AutoPromptConfig(
        iters=3, batch_size=9, eval_size=9, num_cand=8, dev_size=15, seed=1), progress=False)
    tuned = softprompt.tune(task, TRAIN, None, softprompt.PromptTuningConfig(
        steps=4, batch_size=9, grad_accum=2, lr=0.01, seed=1), progress=False)
    seconds = time.perf_counter() - start
    if distributed.is_main():
        torch.save({"trigger": found.trigger_ids, "dev": [h["dev"] for h in found.history],
                    "prompt": tuned.tensors["prompt_embeddings"].cpu(), "world": distributed.world_size(),
                    "seconds": seconds}, args.save)
        print(f"[run] {args.model} {args.dtype}: {distributed.world_size()} process(es) on {lm.device}, "
              f"{seconds:.1f} s, trigger {found.trigger_ids}", flush=True)


def compare(args) -> int:
    one, two = (torch.load(p, weights_only=False) for p in (args.one, args.two))
    same_trigger = one["trigger"] == two["trigger"]
    diff = float((one["prompt"].float() - two["prompt"].float()).abs().max())
    close = diff <= TOLERANCE.get(args.dtype, 1e-4)
    print(f"EQUALITY model={args.model} dtype={args.dtype} processes={one['world']}vs{two['world']} "
          f"same_trigger={same_trigger} prompt_max_abs_diff={diff:.2e} prompt_close={close} "
          f"dev_one={one['dev']} dev_two={two['dev']}", flush=True)
    return 0 if same_trigger and close else 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=["speed", "run", "compare", "quant"])
    parser.add_argument("files", nargs="*", help="compare: ONE.pt TWO.pt")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--save", default=None)
    parser.add_argument("--quantize", nargs="+", default=["8bit", "4bit"], choices=["8bit", "4bit"])
    args = parser.parse_args(argv)
    if args.part == "speed":
        speed(args)
    elif args.part == "quant":
        return quant(args)
    elif args.part == "run":
        if not args.save:
            parser.error("run needs --save FILE")
        run(args)
    else:
        if len(args.files) != 2:
            parser.error("compare needs two files")
        args.one, args.two = args.files
        return compare(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
