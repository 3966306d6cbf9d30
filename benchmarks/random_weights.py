"""A model folder with an alias's architecture and tokenizer but seeded random weights, for GPU checks.

A lent GPU machine takes at most 64 MiB from this one, so the real weights (540 MB for smollm2-135m,
1 GB for gemma3-270m once dequantized) cannot travel; the architecture and the tokenizer can. Here:

    python -m benchmarks.random_weights export gemma3-270m .gpu/gemma3-270m    # config + tokenizer only

and on the GPU machine, before benchmarks/gpu_check.sh:

    python -m benchmarks.random_weights build .gpu/gemma3-270m                  # writes model.safetensors
    GPU_CHECK_MODELS=".gpu/smollm2-135m .gpu/gemma3-270m" benchmarks/gpu_check.sh

Speeds and memory on such a folder are the real model's (same shapes, same kernels); equality
checks between 1 and 2 processes hold for any weights; accuracies mean nothing. `build` is
deterministic (torch.manual_seed(--seed) before the model is made), so both processes of a
torchrun check and every rerun see the same weights.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

KEEP = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
        "vocab.txt", "generation_config.json")
MARK = "random_weights.json"


def export(name: str, out: Path) -> Path:
    """Copy an alias's (or a model folder's) config and tokenizer files into `out` (no weights)."""
    from frozen_lm.model import FrozenLM

    lm = FrozenLM.load(name, device="cpu")  # prepares a GGUF alias's cache folder on its first load
    source = Path(getattr(lm.model, "name_or_path", "") or lm.model.config._name_or_path)
    if not (source / "config.json").exists():
        sys.exit(f"{name}: no local model folder behind it ({source}); give an alias or a folder")
    out.mkdir(parents=True, exist_ok=True)
    copied = [f for f in KEEP if (source / f).exists()]
    for f in copied:
        shutil.copy(source / f, out / f)
    (out / MARK).write_text(json.dumps({"architecture_of": name, "files": copied}, indent=2))
    size = sum((out / f).stat().st_size for f in copied) / 2**20
    print(f"exported {name}: {', '.join(copied)} ({size:.1f} MiB) -> {out}")
    return out


def build(folder: Path, seed: int = 0) -> Path:
    """Write seeded random weights (the architecture's own initialization) into an exported folder."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM

    config = AutoConfig.from_pretrained(folder)
    archs = getattr(config, "architectures", None) or []
    cls = AutoModelForMaskedLM if any("MaskedLM" in a for a in archs) else AutoModelForCausalLM
    torch.manual_seed(seed)
    model = cls.from_config(config, dtype=torch.float32)
    model.save_pretrained(folder)
    mark = json.loads((folder / MARK).read_text()) if (folder / MARK).exists() else {}
    (folder / MARK).write_text(json.dumps({**mark, "seed": seed, "class": type(model).__name__}, indent=2))
    n = sum(p.numel() for p in model.parameters())
    print(f"built {type(model).__name__} with {n / 1e6:.1f} M random parameters (seed {seed}) in {folder}")
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export", help="config and tokenizer of an alias or folder, no weights")
    e.add_argument("name")
    e.add_argument("out", type=Path)
    b = sub.add_parser("build", help="seeded random weights into an exported folder")
    b.add_argument("folder", type=Path)
    b.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.cmd == "export":
        export(args.name, args.out)
    else:
        build(args.folder, args.seed)


if __name__ == "__main__":
    main()
