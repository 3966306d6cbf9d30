"""Artifacts: a directory with config.json, weights.safetensors and results.json.

config.json holds everything needed to rerun: the method, its config dataclass, the task options,
the seed, the model and the package versions. Random projections are regenerated from their seed,
never saved. Files are written to a temporary name and renamed, so an interrupted write never
leaves a half-written artifact behind.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path

import torch

from frozen_lm.errors import UserError

CONFIG, WEIGHTS, RESULTS = "config.json", "weights.safetensors", "results.json"


@dataclass
class Artifact:
    path: Path
    meta: dict
    tensors: dict[str, torch.Tensor]
    results: dict

    @property
    def method(self) -> str:
        return self.meta["method"]

    @property
    def config(self) -> dict:
        return self.meta["config"]

    @property
    def task(self) -> dict:
        return self.meta["task"]


def model_info(lm) -> dict:
    n_layers, kv_heads, head_dim = lm.kv_layout()
    return {"name": lm.name, "architecture": type(lm.model).__name__, "kind": lm.kind,
            "vocab_size": lm.vocab_size, "hidden_size": lm.hidden_size, "n_layers": n_layers}


def _versions() -> dict:
    import transformers

    from frozen_lm import __version__

    return {"package": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version()}


def _as_dict(obj) -> dict:
    return asdict(obj) if is_dataclass(obj) else dict(obj)


def _write_json(path: Path, obj) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)


def save_artifact(out_dir, method: str, config, task, lm, seed: int, tensors: dict[str, torch.Tensor],
                  results: dict) -> Path:
    """Write (or overwrite) an artifact directory; returns its path."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"method": method, "config": _as_dict(config), "task": _as_dict(task), "seed": seed,
            "model": model_info(lm), "versions": _versions(),
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    tmp = out / (WEIGHTS + ".tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp),
              metadata={"method": method, "model": lm.name})
    os.replace(tmp, out / WEIGHTS)
    _write_json(out / RESULTS, results)
    _write_json(out / CONFIG, meta)
    return out


def load_artifact(path) -> Artifact:
    """Read an artifact directory; UserError if it is missing or incomplete."""
    from safetensors.torch import load_file

    p = Path(path)
    if not (p / CONFIG).exists():
        raise UserError(f"{p} is not an artifact directory (no {CONFIG}); give the --out folder of a run")
    try:
        meta = json.loads((p / CONFIG).read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{p / CONFIG} is not valid JSON ({e.msg})") from e
    tensors = load_file(str(p / WEIGHTS)) if (p / WEIGHTS).exists() else {}
    results = json.loads((p / RESULTS).read_text()) if (p / RESULTS).exists() else {}
    return Artifact(p, meta, tensors, results)


def check_model(artifact: Artifact, lm) -> None:
    """UserError if the artifact was made on a different model than `lm`."""
    saved = artifact.meta.get("model", {})
    now = model_info(lm)
    for key in ("vocab_size", "hidden_size", "n_layers", "architecture"):
        if key in saved and saved[key] != now[key]:
            raise UserError(
                f"{artifact.path} was made with model {saved.get('name')!r} ({key} {saved[key]}), "
                f"not {lm.name!r} ({key} {now[key]}); load it with --model {saved.get('name')}"
            )
