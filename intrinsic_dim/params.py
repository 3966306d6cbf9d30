"""Which weight tensors move: `all`, `attention`, `mlp`, or a regular expression over names.

Names are those of `FrozenLM.named_parameters()` (tied weights appear once). Tensors that are not
selected stay exactly theta_0.
"""

from __future__ import annotations

import re

from frozen_lm.errors import UserError

# Module-name patterns across BERT, GPT-2, Llama-style models.
ATTENTION = r"(^|\.)(attn|attention|self_attn|self_attention)\."
MLP = r"(^|\.)(mlp|intermediate|feed_forward|ffn)\.|(^|\.)layer\.\d+\.output\."
PRESETS = {"all": r".*", "attention": ATTENTION, "mlp": MLP}


def select_names(names: list[str], spec: str, field: str = "IntrinsicDimConfig.params") -> list[str]:
    """The names that `spec` picks, in model order; UserError (naming `field`, the config field it
    came from) for a bad regex or an empty pick.

    `attention` and `mlp` are presets; anything else is a regular expression searched in each name.
    """
    pattern = PRESETS.get(spec, spec)
    try:
        regex = re.compile(pattern)
    except re.error as e:
        raise UserError(f"{field} {spec!r} is not a valid regular expression ({e})") from None
    picked = [n for n in names if regex.search(n)]
    if spec == "mlp":
        attention = re.compile(ATTENTION)
        picked = [n for n in picked if not attention.search(n)]
    if not picked:
        sample = ", ".join(names[:4])
        raise UserError(f"{field} {spec!r} matches no parameter of this model (names look like: {sample}, ...); "
                        f"use all, attention, mlp or a regular expression")
    return picked


def n_parameters(lm) -> int | None:
    """The model's parameters (tied weights counted once); None without a model."""
    if lm is None:
        return None
    return sum(p.numel() for p in lm.model.parameters())
