"""The methods a grid can name: each a registered method (frozen_lm.methods) with fixed settings,
the template it runs on, and what kind of values it trains (for the accounting and the plots).

A preset's `fixed` settings define it (prompt tuning is softprompt's `tune` with method 'prompt');
its `defaults` are starting values a grid may change. `template` says which of a task's templates
the method gets: 'manual' (the hand-written one, which prompt and prefix tuning extend with their
virtual tokens and the baselines train on) or 'trigger' (the one with [T] slots, for discrete search).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

from frozen_lm.errors import UserError


@dataclass(frozen=True)
class Preset:
    name: str
    package: str  # imported so that its methods register
    method: str  # the registered method's name
    template: str  # 'manual' or 'trigger'
    trains: str  # 'nothing', 'tokens' (discrete: token ids), 'vectors' (soft prompts) or 'weights'
    fixed: dict = field(default_factory=dict)
    defaults: dict = field(default_factory=dict)
    nearest: bool = False  # also score the nearest-token reading of the learned vectors
    help: str = ""
    imports: tuple[str, ...] = ()  # imported before a cell is measured (PEFT alone adds ~140 MB of resident memory)

    def registered(self):
        """The registered Method (its package imported first)."""
        from frozen_lm.methods import methods

        importlib.import_module(self.package)
        found = methods().get(self.method)
        if found is None:
            raise UserError(f"method {self.name!r} needs the {self.package!r} package's {self.method!r} method, "
                            "which is not installed")
        return found


def _finetune(name: str, help_: str, imports: tuple[str, ...] = ()) -> Preset:
    return Preset(name, "baselines", "finetune", "manual", "weights", {"method": name}, help=help_, imports=imports)


PRESETS = {p.name: p for p in [
    Preset("manual", "baselines", "manual", "manual", "nothing", help="the hand-written template as written"),
    Preset("autoprompt", "autoprompt", "autoprompt", "trigger", "tokens", {"method": "autoprompt"},
           help="AutoPrompt: HotFlip search of the [T] tokens"),
    Preset("gcg", "autoprompt", "autoprompt", "trigger", "tokens", {"method": "gcg"}, {"search_width": 64, "topk": 64},
           help="GCG: multi-position token search"),
    Preset("pez", "softprompt", "tune", "trigger", "tokens", {"method": "pez"},
           help="PEZ: continuous vectors trained through their nearest tokens (a discrete prompt)"),
    Preset("prompt", "softprompt", "tune", "manual", "vectors", {"method": "prompt"}, {"num_virtual_tokens": 20},
           nearest=True, help="prompt tuning: 20 vectors before the template (+ its nearest-token reading)"),
    Preset("prefix", "softprompt", "tune", "manual", "vectors", {"method": "prefix"}, {"num_virtual_tokens": 10},
           help="prefix tuning: 10 key/value positions at every layer"),
    _finetune("lora", "LoRA (PEFT)", ("peft",)),
    _finetune("ia3", "(IA)3 (PEFT)", ("peft",)),
    _finetune("adapter", "bottleneck adapter (PEFT LoRA on the feed-forward output projection)", ("peft",)),
    _finetune("bitfit", "BitFit: biases only"),
    _finetune("last_k", "the last k transformer blocks"),
    _finetune("full", "full fine-tuning"),
]}


def preset(name: str, where: str = "") -> Preset:
    """The preset called `name`; UserError naming `where` for an unknown one."""
    if name not in PRESETS:
        raise UserError(f"{where + ': ' if where else ''}unknown method {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[name]
