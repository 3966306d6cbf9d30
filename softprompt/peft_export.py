"""Export soft prompts in PEFT's layout, loadable with `peft.PeftModel.from_pretrained`.

Written without importing peft: adapter_config.json + adapter_model.safetensors with
`prompt_embeddings`. Prompt tuning: PEFT prepends its virtual tokens to every input, so only a
prompt whose slots are all at the start of the template has a PEFT equivalent. Prefix tuning: the
folded key/values as PEFT's PREFIX_TUNING table without projection, (P, n_layers * 2 * kv_dim),
with PEFT's grouped-query convention (num_attention_heads = key/value heads).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from frozen_lm.encode import special_tokens_around
from frozen_lm.errors import UserError
from frozen_lm.model import FrozenLM
from frozen_lm.prompts.effective import parse_slots

logger = logging.getLogger(__name__)

PEFT_VERSION = "0.21.2"  # the layout written here; later releases read it too


def check_prepended(template: str, k: int) -> None:
    """UserError unless the template's first k segments are its only [T] slots."""
    segments = parse_slots(template).segments
    slots = [i for i, s in enumerate(segments) if s.kind == "trigger"]
    if slots != list(range(k)):
        raise UserError(f"PEFT export: PEFT prompt tuning prepends its virtual tokens, but template {template!r} "
                        "has [T] slots inside the text; train with PromptTuningConfig.num_virtual_tokens and no [T] "
                        "in the template")


def check_exportable(lm: FrozenLM, method: str, template: str, k: int) -> None:
    """UserError unless a soft prompt of `method` ('prompt' or 'prefix') trained with the effective
    `template` (k slots) on `lm` has a PEFT equivalent (run before training, so nothing is wasted)."""
    if lm.is_masked:
        if method == "prefix":
            raise UserError("PEFT export: PEFT prefix tuning here supports causal LMs only")
        raise UserError("PEFT export: PEFT prompt tuning has no masked-LM task type; export works for causal LMs")
    if method == "prompt":
        check_prepended(template, k)


def peft_config(lm: FrozenLM, k: int, base_model: str) -> dict:
    """adapter_config.json contents for PEFT's PROMPT_TUNING on a causal LM."""
    c = lm.config.get_text_config() if hasattr(lm.config, "get_text_config") else lm.config
    try:
        import peft

        version = peft.__version__
    except ImportError:
        version = PEFT_VERSION
    return {
        "peft_type": "PROMPT_TUNING", "task_type": "CAUSAL_LM", "auto_mapping": None, "peft_version": version,
        "base_model_name_or_path": base_model, "revision": None, "inference_mode": True,
        "num_virtual_tokens": k, "token_dim": lm.hidden_size, "num_transformer_submodules": 1,
        "num_attention_heads": c.num_attention_heads, "num_layers": c.num_hidden_layers,
        "modules_to_save": None, "prompt_tuning_init": "RANDOM", "prompt_tuning_init_text": None,
        "tokenizer_name_or_path": None, "tokenizer_kwargs": None,
    }


def export_peft_prefix(out_dir, kv: torch.Tensor, lm: FrozenLM, base_model: str | None = None) -> Path:
    """Write PEFT's prefix-tuning files for folded key/values (L, 2, kv_heads, P, head_dim)."""
    from safetensors.torch import save_file

    check_exportable(lm, "prefix", "", kv.shape[3])
    n_layers, _, kv_heads, length, head_dim = kv.shape
    table = kv.detach().float().permute(3, 0, 1, 2, 4).reshape(length, -1)  # PEFT: view(P, L*2, heads, hd)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file({"prompt_embeddings": table.contiguous().cpu()}, str(out / "adapter_model.safetensors"),
              metadata={"format": "pt"})
    config = {**peft_config(lm, length, base_model or lm.name), "peft_type": "PREFIX_TUNING",
              "token_dim": kv_heads * head_dim, "num_attention_heads": kv_heads, "num_layers": n_layers,
              "encoder_hidden_size": kv_heads * head_dim, "prefix_projection": False}
    for key in ("prompt_tuning_init", "prompt_tuning_init_text", "tokenizer_name_or_path", "tokenizer_kwargs"):
        config.pop(key)
    (out / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return out


def export_peft(out_dir, vectors: torch.Tensor, lm: FrozenLM, template: str, base_model: str | None = None) -> Path:
    """Write PEFT's prompt-tuning files for vectors (k, H) trained with `template`; returns the folder."""
    from safetensors.torch import save_file

    k = vectors.shape[0]
    check_exportable(lm, "prompt", template, k)
    before, _ = special_tokens_around(lm.tokenizer)
    if before:
        logger.warning("PEFT puts its virtual tokens before %s, this prompt was trained after it; "
                       "scores under PEFT can differ", lm.tokenizer.convert_ids_to_tokens(before))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file({"prompt_embeddings": vectors.detach().float().contiguous().cpu()}, str(out / "adapter_model.safetensors"),
              metadata={"format": "pt"})
    config = peft_config(lm, k, base_model or lm.name)
    (out / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return out
