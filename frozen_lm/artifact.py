"""Artifact files: a directory with config.json, weights.safetensors, results.json and README.md.

config.json holds everything needed to rerun: the method and the package that made it, its config
dataclass (seed included), the task spec, the model, where the data came from, and the versions.
weights.safetensors holds the learned tensors (random projections are regenerated from their seed,
never saved). results.json holds metrics, history, timings and the run's status. README.md is the
model card (frozen_lm.card), written from the same facts, so the folder can be shared as it is.
Files are written
to a temporary name and renamed, so an interrupted write never leaves a half-written file behind.
This module only reads and writes; `frozen_lm.results.Result` gives artifacts their meaning.
Under torch.distributed (several processes, frozen_lm.distributed) process 0 alone prepares and
writes the folder; the others get the same errors and write nothing.
"""

from __future__ import annotations

import json
import logging
import os
import platform
from dataclasses import dataclass
from pathlib import Path

import torch

from frozen_lm import distributed
from frozen_lm.errors import UserError

logger = logging.getLogger(__name__)
CONFIG, WEIGHTS, RESULTS, CARD = "config.json", "weights.safetensors", "results.json", "README.md"
FORMAT = 3  # 1: package 0.1 (task options and data paths in "task"); 2: 0.2 (a method name per package)


@dataclass
class Artifact:
    path: Path
    meta: dict
    tensors: dict[str, torch.Tensor]
    results: dict
    weights_missing: bool = False  # weights.safetensors is not there (deleted, or never copied)

    @property
    def method(self) -> str:
        return self.meta["method"]


def model_info(lm) -> dict:
    n_layers, _, _ = lm.kv_layout()
    return {"name": lm.name, "architecture": type(lm.model).__name__, "kind": lm.kind, "dtype": str(lm.dtype).split(".")[-1],
            "vocab_size": lm.vocab_size, "hidden_size": lm.hidden_size, "n_layers": n_layers}


def versions() -> dict:
    import transformers

    from frozen_lm import __version__

    return {"package": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version()}


OWN_FILES = (CONFIG, WEIGHTS, RESULTS, CARD, "d90.png")  # what a run writes into its folder
OWN_DIRS = ("tensorboard",)  # folders a run writes into its folder (report_to='tensorboard': frozen_lm.tracking)


def _write_json(path: Path, obj) -> None:
    _write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_artifact(out_dir, meta: dict, tensors: dict[str, torch.Tensor], results: dict, card: str | None = None) -> Path:
    """Write (or update) an artifact directory; returns its path. card: the README.md text (the model
    card). The weights file carries no metadata, so the same tensors give the same bytes. Several
    processes: only process 0 writes."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    if not distributed.is_main():
        return out
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / (WEIGHTS + ".tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in sorted(tensors.items())}, str(tmp))
    os.chmod(tmp, 0o666 & ~_umask())  # safetensors creates its file 0600; give it the other files' mode
    os.replace(tmp, out / WEIGHTS)
    _write_json(out / RESULTS, results)
    if card is not None:
        _write_text(out / CARD, card)
    _write_json(out / CONFIG, {"format": FORMAT, **meta})
    return out


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _read_json(path: Path, required: bool) -> dict:
    if not path.exists():
        if required:
            raise UserError(f"{path.parent} is not an artifact directory (no {path.name}); give the folder a run saved (its out=)")
        return {}
    try:
        value = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is damaged: not valid JSON ({e}); rerun or restore it") from None
    if not isinstance(value, dict):
        raise UserError(f"{path} is damaged: it holds a {type(value).__name__}, not a JSON object")
    return value


def _read_weights(path: Path) -> dict[str, torch.Tensor] | None:
    """The tensors of weights.safetensors; None when the file is missing."""
    if not path.exists():
        return None
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as e:  # SafetensorError, truncated or random bytes: all a damaged file
        raise UserError(f"{path} is damaged ({type(e).__name__}: {e}); rerun or restore it") from None


def read_artifact(path) -> Artifact:
    """Read an artifact directory (format 1, 2 or 3); UserError if it is missing, incomplete or damaged."""
    p = Path(path)
    if not p.is_dir():
        raise UserError(f"{p} is not an artifact directory; give the folder a run saved (its out=)")
    meta = _read_json(p / CONFIG, required=True)
    if not isinstance(meta.get("method"), str):
        raise UserError(f"{p / CONFIG} is damaged: it names no method")
    if isinstance(meta.get("format"), int) and meta["format"] > FORMAT:
        logger.warning("%s: written in artifact format %d by a newer package (this one reads up to %d); "
                       "fields it does not know are ignored", p / CONFIG, meta["format"], FORMAT)
    meta = upgrade_meta(meta)
    for key, kind in (("config", dict), ("task", dict), ("model", dict)):
        if not isinstance(meta.get(key), kind):
            raise UserError(f"{p / CONFIG} is damaged: '{key}' is missing or not an object")
    tensors = _read_weights(p / WEIGHTS)
    art = Artifact(p, meta, tensors or {}, _read_json(p / RESULTS, required=False))
    art.weights_missing = tensors is None
    return art


def upgrade_meta(meta: dict) -> dict:
    """Format 1 (package 0.1) -> format 2: data sources and model name move out of "task"."""
    if meta.get("format", 1) >= 2:
        return meta
    task = dict(meta.get("task") or {})
    data = {k: {"source": task.pop(k)} for k in ("train", "dev") if task.get(k)}
    model = dict(meta.get("model") or {})
    model.setdefault("name", task.get("model"))
    if task.get("dtype") not in (None, "auto"):
        model["dtype"] = task["dtype"]
    for key in ("model", "device", "dtype"):
        task.pop(key, None)
    return {**meta, "format": 2, "task": task, "data": data, "model": model, "module": meta.get("module", "")}


def check_model(saved: dict, lm, where) -> None:
    """UserError if an artifact (its saved model info) was made on a different model than `lm`."""
    now = model_info(lm)
    for key in ("vocab_size", "hidden_size", "n_layers", "architecture"):
        if key in saved and saved[key] != now[key]:
            raise UserError(
                f"{where} was made with model {saved.get('name')!r} ({key} {saved[key]}), "
                f"not {lm.name!r} ({key} {now[key]}); load it with model {saved.get('name')!r}"
            )
