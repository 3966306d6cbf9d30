"""Write an artifact of every method on tiny in-process models with fixed seeds (a few seconds), and
print a fingerprint of each: per tensor its shape, dtype, sha256 and sums, and the dev metrics.

    python scripts/golden_artifacts.py OUT                 # artifacts in OUT/<case>/, fingerprints on stdout
    python scripts/golden_artifacts.py OUT --only gcg,pez

tests/test_golden.py runs the same cases and compares them with tests/golden_fingerprints.json,
written by the code before the method-layer refactor (package 0.2.0): same seeds, same tensors.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import torch

LABELS = {"0": "terrible", "1": "great"}
TRAIN, DEV = "demo:sentiment:train", "demo:sentiment:dev"
TRIG, MANUAL = "{sentence} [T] [T] [T] [P]", "{sentence} It was [P] ."


def cases(draft: str) -> dict:
    """{case: (method, model kind, template, task options, config values, splits)}."""
    finetune = {"steps": 4, "eval_every": 2, "lr": 5e-2, "seed": 4}
    out = {
        "autoprompt": ("autoprompt", "gpt2", TRIG, {}, {"iters": 3, "num_cand": 5, "seed": 1}, None),
        "autoprompt_bert": ("autoprompt", "bert", "[CLS] {sentence} [T] [T] [P] . [SEP]", {},
                            {"iters": 3, "num_cand": 5, "slots": "all", "beam_size": 2}, None),
        "autoprompt_fluency": ("autoprompt", "llama", TRIG, {}, {"iters": 3, "fluency_weight": 0.1, "score": "accuracy"}, None),
        "autoprompt_start": ("autoprompt", "gpt2", TRIG, {}, {"iters": 2, "from_template": MANUAL, "extra_slots": 1}, None),
        "gcg": ("gcg", "gpt2", TRIG, {}, {"iters": 3, "search_width": 16, "topk": 8, "n_replace": 2, "seed": 2}, None),
        "gcg_target": ("gcg", "gpt2", "Say yes. [T] [T] [T] [T]", {"target": "great film"},
                       {"iters": 3, "search_width": 16, "topk": 8, "mellowmax": True}, "none"),
        "gcg_probe": ("gcg", "gpt2", TRIG, {}, {"iters": 2, "search_width": 16, "topk": 8, "probe_sampling": {
            "draft_model": draft, "probe_ratio": 4, "probe_factor": 4}}, None),
        "prompt": ("prompt", "llama", MANUAL, {}, {"num_virtual_tokens": 4, "steps": 6, "eval_every": 2, "seed": 3}, None),
        "prompt_bert": ("prompt", "bert", "[T] [T] {sentence} [P] .", {}, {"steps": 5, "init": "random"}, None),
        "prefix": ("prefix", "gpt2", MANUAL, {}, {"num_virtual_tokens": 3, "steps": 5, "prefix_hidden": 16}, None),
        "prefix_direct": ("prefix", "llama", MANUAL, {}, {"num_virtual_tokens": 3, "steps": 5, "prefix_projection": False}, None),
        "pez": ("pez", "llama", TRIG, {}, {"steps": 6, "eval_every": 2, "fluency_weight": 0.05}, None),
        "prompt_target": ("prompt", "gpt2", "Say [T] [T]", {"target": "great film"}, {"steps": 4}, "empty"),
        "lora_gpt2": ("lora", "gpt2", MANUAL, {}, {"steps": 3}, None),
        "manual": ("manual", "gpt2", MANUAL, {}, {}, None),
        "id_model": ("intrinsic_dim", "llama", MANUAL, {}, {"dims": [2, 8], "steps": 3, "plot": False, "min_gain": 0.0}, None),
        "id_prompt": ("intrinsic_dim", "gpt2", MANUAL, {}, {"space": "prompt", "num_virtual_tokens": 2, "dims": [4], "steps": 3,
                                                       "plot": False, "projection": "dense"}, None),
        "id_prefix": ("intrinsic_dim", "llama", MANUAL, {}, {"space": "prefix", "num_virtual_tokens": 2, "dims": [4], "steps": 3,
                                                        "plot": False, "projection": "sparse", "seeds": 2}, None),
    }
    for m in ("lora", "ia3", "adapter", "bitfit", "last_k", "full"):
        out[m] = (m, "llama", MANUAL, {}, {**finetune, **({"last_k": 1} if m == "last_k" else {})}, None)
    return out


def run_case(name: str, case: tuple, models: dict, out: Path):
    import frozen_lm
    from frozen_lm import PromptTask, configs

    method_name, kind, template, task_kw, values, splits = case
    method = frozen_lm.methods()[method_name]
    task = PromptTask(models[kind], template, None if task_kw else LABELS, **task_kw)
    train, dev = {"none": (None, None), "empty": ([{}], [{}])}.get(splits, (TRAIN, DEV))
    config = configs.from_dict(method.config, values)
    return frozen_lm.run(method, task, train, dev, config, out=out / name, progress=False)


def fingerprint(folder: Path) -> dict:
    from safetensors.torch import load_file

    tensors = load_file(str(folder / "weights.safetensors"))
    results = json.loads((folder / "results.json").read_text())
    return {"tensors": {k: {"shape": list(v.shape), "dtype": str(v.dtype).split(".")[-1],
                            "sha256": hashlib.sha256(v.contiguous().numpy().tobytes()).hexdigest()[:16],
                            "sum": float(v.double().sum()), "abs": float(v.double().abs().sum())}
                        for k, v in sorted(tensors.items()) if not k.startswith("checkpoint.")},
            "metrics": {k: v for k, v in results.get("metrics", {}).items() if k in ("dev", "train", "test")}}


def build(out: Path, only: list[str] | None = None) -> dict:
    """Run the cases into OUT and return {case: fingerprint}."""
    import frozen_lm
    from frozen_lm.testing import save_tiny, tiny_lm

    frozen_lm.methods()  # register every installed method
    torch.set_num_threads(1)
    models = {k: tiny_lm(k) for k in ("gpt2", "llama", "bert")}
    all_cases = cases(str(save_tiny("gpt2", out / "_draft", seed=1)))
    prints = {}
    for name, case in all_cases.items():
        if only and name not in only:
            continue
        run_case(name, case, models, out)
        prints[name] = fingerprint(out / name)
    return prints


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder for the artifacts")
    parser.add_argument("--only", default=None, help="comma-separated cases (default: all)")
    args = parser.parse_args()
    prints = build(args.out, args.only.split(",") if args.only else None)
    print(json.dumps(prints, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
