"""How a baseline changes the model's logits without changing the frozen model.

Two ways, both leave `lm.model` and its weights untouched (tests check the weights bit for bit):

- PEFT (lora, ia3, adapter): a copy of the module tree whose parameters *are* the frozen model's
  tensors (deepcopy with every parameter in the memo, so no weight is copied), with PEFT's layers
  injected into the copy only. The copy is wrapped in its own FrozenLM, so logits come from the
  same code path as every other method. Only the adapter tensors are new memory.
- Functional overrides (bitfit, last_k, full): the trained tensors live outside the model and are
  swapped in for one forward pass by `FrozenLM.logits_at(params=...)` (torch.func.functional_call,
  as intrinsic_dim does). BitFit on a model without biases adds zero-initialized biases to the
  blocks' linear layers, which functional_call fills into their empty `bias` slots.

What each method builds is read off its config class: `PEFT_CONFIGS` (the PEFT config a LoRA, IA3
or adapter config makes) and `SELECTORS` (the weights BitFit, last k or full fine-tuning trains).
`build(lm, cfg)` makes a fresh adaptation (seeded by cfg.seed), `restore(lm, cfg, tensors)` one from
saved tensors; `params` is what trains, `tensors()` what an artifact stores.
"""

from __future__ import annotations

import copy
import logging
import re

import torch

from frozen_lm.configs import field_error, name_of
from frozen_lm.encode import Rows
from frozen_lm.errors import UserError
from frozen_lm.evaluate import Bound
from frozen_lm.model import FrozenLM
from frozen_lm.task import PromptTask
from prompt_baselines.config import (
    AdapterFinetuneConfig,
    BitFitConfig,
    FinetuneOptions,
    FullFinetuneConfig,
    IA3FinetuneConfig,
    LastKConfig,
    LoRAFinetuneConfig,
    PeftOptions,
)

logger = logging.getLogger(__name__)
PEFT_PREFIX, PARAM_PREFIX = "peft.", "param."
FFN_OUTPUT = (r"\.mlp\.down_proj$", r"\.mlp\.c_proj$", r"\.mlp\.fc2$", r"\.mlp\.dense_4h_to_h$",
              r"\.layer\.\d+\.output\.dense$", r"\.ffn\.lin2$")  # the feed-forward output projection, by family


class AdaptedBound(Bound):
    """A task scored through an adapted model (the template's text as written, no [T] slots)."""

    def __init__(self, task: PromptTask, adaptation):
        super().__init__(task)
        self.adaptation = adaptation

    def logits(self, rows: Rows) -> torch.Tensor:
        return self.adaptation.logits_at(rows.predict_pos, input_ids=rows.input_ids, attention_mask=rows.attention_mask)


class Adaptation:
    """Base: `params` {name: leaf tensor} train; `logits_at` runs the adapted model."""

    params: dict[str, torch.Tensor]

    def logits_at(self, positions: torch.Tensor, **inputs) -> torch.Tensor:
        raise NotImplementedError

    def tensors(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    @property
    def n_params(self) -> int:
        return sum(t.numel() for t in self.params.values())

    def bind(self, task: PromptTask) -> AdaptedBound:
        """The adapted model applied to `task` (what `frozen_lm.evaluate` scores)."""
        if task.template.n_triggers:
            raise UserError(f"template {task.spec.template!r} has [T] slots; a fine-tuned model reads the template "
                            "as written: write the slots out as text or remove them")
        return AdaptedBound(task, self)


class PeftAdaptation(Adaptation):
    """PEFT layers injected into a weight-sharing copy of the module tree."""

    def __init__(self, lm: FrozenLM, cfg: PeftOptions):
        try:
            from peft import inject_adapter_in_model
        except ImportError:
            raise UserError(f"{type(cfg).__name__} needs PEFT: pip install 'peft>=0.13'") from None
        shared = {id(p): p for p in lm.model.parameters()}
        tree = copy.deepcopy(lm.model, shared)  # new modules, the same frozen weight tensors
        config = peft_config(lm, cfg)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            try:
                tree = inject_adapter_in_model(config, tree)
            except ValueError as e:
                raise UserError(f"PEFT cannot apply {type(cfg).__name__} to {type(lm.model).__name__}: {e}; "
                                f"give {name_of(cfg, 'target_modules')}") from None
        names = [n for n, p in tree.named_parameters() if p.requires_grad]
        self.params = {n: p for n, p in tree.named_parameters() if n in set(names)}
        self.lm = FrozenLM(tree, lm.tokenizer, name=lm.name, kind=lm.kind)  # freezes everything; the Trainer unfreezes params
        self.implementation = f"peft {_peft_version()} {type(config).__name__}"

    def logits_at(self, positions, **inputs):
        return self.lm.logits_at(positions, **inputs)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {PEFT_PREFIX + n: p.detach() for n, p in self.params.items()}

    def load(self, tensors: dict[str, torch.Tensor]) -> None:
        saved = {k[len(PEFT_PREFIX):]: v for k, v in tensors.items() if k.startswith(PEFT_PREFIX)}
        if set(saved) != set(self.params):
            missing = sorted(set(self.params) - set(saved))[:2] or sorted(set(saved) - set(self.params))[:2]
            raise UserError(f"the saved adapter does not fit this model ({len(saved)} saved tensors, {len(self.params)} "
                            f"adapter tensors here; e.g. {missing}); load it with the model it was trained on")
        with torch.no_grad():
            for name, p in self.params.items():
                if p.shape != saved[name].shape:
                    raise UserError(f"the saved adapter tensor {name} has shape {tuple(saved[name].shape)}, "
                                    f"this model's {tuple(p.shape)}")
                p.copy_(saved[name])


def _fan_in_fan_out(lm: FrozenLM) -> bool:
    return type(lm.model).__name__.startswith("GPT2")  # GPT-2's Conv1D layers store the weight transposed


def _lora(lm: FrozenLM, cfg: LoRAFinetuneConfig):
    from peft import LoraConfig

    return LoraConfig(r=cfg.r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0, target_modules=cfg.modules,
                      fan_in_fan_out=_fan_in_fan_out(lm))


def _ia3(lm: FrozenLM, cfg: IA3FinetuneConfig):
    from peft import IA3Config

    return IA3Config(target_modules=cfg.modules, feedforward_modules=[] if cfg.modules else None,
                     fan_in_fan_out=_fan_in_fan_out(lm))


def _adapter(lm: FrozenLM, cfg: AdapterFinetuneConfig):
    """The adapter stand-in: LoRA of rank adapter_size, scale 1, on the feed-forward output projections."""
    from peft import LoraConfig

    modules = cfg.modules or ffn_output_modules(lm)
    return LoraConfig(r=cfg.adapter_size, lora_alpha=cfg.adapter_size, lora_dropout=0.0, target_modules=modules,
                      fan_in_fan_out=_fan_in_fan_out(lm))


PEFT_CONFIGS = {LoRAFinetuneConfig: _lora, IA3FinetuneConfig: _ia3, AdapterFinetuneConfig: _adapter}


def peft_config(lm: FrozenLM, cfg: PeftOptions):
    """PEFT's config for a PEFT baseline's config (PEFT_CONFIGS, by its class)."""
    return PEFT_CONFIGS[type(cfg)](lm, cfg)


def ffn_output_modules(lm: FrozenLM) -> list[str]:
    """Full names of each block's feed-forward output projection; UserError when none is recognized."""
    names = [n for n, _ in lm.model.named_modules()]
    for pattern in FFN_OUTPUT:
        found = [n for n in names if re.search(pattern, n)]
        if found:
            return found
    raise UserError(f"{type(lm.model).__name__}: no feed-forward output projection recognized for the adapter; "
                    f"give {name_of(AdapterFinetuneConfig, 'target_modules')}")


def _peft_version() -> str:
    import peft

    return peft.__version__


class OverrideAdaptation(Adaptation):
    """Trained copies of some weights (and added biases), swapped in by functional_call."""

    def __init__(self, lm: FrozenLM, cfg: FinetuneOptions, values: dict[str, torch.Tensor] | None = None):
        """values: saved tensors by parameter name (default: fresh copies of what cfg's method trains)."""
        self.lm = lm
        base = lm.named_parameters()
        self.params = {}
        for name in (values if values is not None else select(lm, cfg)):
            shape = tuple(base[name].shape) if name in base else (_bias_size(lm, name),)
            if values is not None:
                if tuple(values[name].shape) != shape:
                    raise UserError(f"the saved tensor {name} has shape {tuple(values[name].shape)}, this model's "
                                    f"{shape}; load it with the model it was trained on")
                self.params[name] = values[name].clone()
            elif name in base:
                self.params[name] = base[name].detach().clone()
            else:
                self.params[name] = torch.zeros(shape, dtype=lm.dtype, device=lm.device)
        self.implementation = "functional overrides (FrozenLM.logits_at(params=...))"

    def logits_at(self, positions, **inputs):
        return self.lm.logits_at(positions, params=self.params, **inputs)

    def tensors(self) -> dict[str, torch.Tensor]:
        """The trained tensors that differ from the frozen model's (all of them for bitfit)."""
        base = self.lm.named_parameters()
        return {PARAM_PREFIX + n: t.detach() for n, t in self.params.items()
                if n not in base or not torch.equal(t, base[n])}


def _full(lm: FrozenLM, cfg: FullFinetuneConfig) -> list[str]:
    return list(lm.named_parameters())


def _last_k(lm: FrozenLM, cfg: LastKConfig) -> list[str]:
    params, n_layers = lm.named_parameters(), lm.kv_layout()[0]
    if cfg.last_k > n_layers:
        raise field_error(cfg, "last_k", f"is {cfg.last_k}, but the model has {n_layers} blocks")
    names = [n for n in params if (block_index(n) if block_index(n) is not None else -1) >= n_layers - cfg.last_k]
    if not names:
        raise UserError(f"{type(lm.model).__name__}: no numbered transformer blocks found for {type(cfg).__name__}")
    return names


def _bitfit(lm: FrozenLM, cfg: BitFitConfig) -> list[str]:
    """The biases, or the empty bias slots of the blocks' linear layers when the model has none."""
    biases = [n for n in lm.named_parameters() if n.endswith("bias")]
    if biases:
        return biases
    linears = [n for n, m in lm.model.named_modules() if isinstance(m, torch.nn.Linear) and block_index(n) is not None]
    logger.info("the model has no biases: bitfit trains zero-initialized biases on %d linear layers", len(linears))
    return [f"{n}.bias" for n in linears]


SELECTORS = {BitFitConfig: _bitfit, LastKConfig: _last_k, FullFinetuneConfig: _full}


def select(lm: FrozenLM, cfg: FinetuneOptions) -> list[str]:
    """The parameter names a functional baseline trains (SELECTORS, by its config's class; bitfit:
    maybe bias slots to add)."""
    return SELECTORS[type(cfg)](lm, cfg)


def block_index(name: str) -> int | None:
    """The transformer block a parameter or module name belongs to ('model.layers.3.mlp' -> 3)."""
    m = re.search(r"\.(\d+)(\.|$)", name)
    return int(m.group(1)) if m else None


def _bias_size(lm: FrozenLM, name: str) -> int:
    """Output size of the linear layer whose empty bias slot `name` fills; UserError otherwise."""
    module_name = name[: -len(".bias")] if name.endswith(".bias") else None
    module = dict(lm.model.named_modules()).get(module_name) if module_name else None
    if not isinstance(module, torch.nn.Linear) or module.bias is not None:
        raise UserError(f"{name} is not a weight of this model (or an empty bias slot); load the artifact with the "
                        "model it was trained on")
    return module.out_features


def uses_peft(cfg: FinetuneOptions) -> bool:
    """Whether the baseline goes through PEFT (a weight-sharing copy) rather than functional overrides."""
    return type(cfg) in PEFT_CONFIGS


def check(lm: FrozenLM, cfg: FinetuneOptions) -> None:
    """Refuse before any work what this model cannot train: PEFT missing, the last_k blocks or the
    adapter's projections not there (PEFT's own refusals come when it is applied)."""
    if uses_peft(cfg):
        try:
            import peft  # noqa: F401
        except ImportError:
            raise UserError(f"{type(cfg).__name__} needs PEFT: pip install 'peft>=0.13'") from None
        if isinstance(cfg, AdapterFinetuneConfig) and cfg.modules is None:
            ffn_output_modules(lm)
    else:
        select(lm, cfg)


def build(lm: FrozenLM, cfg: FinetuneOptions) -> Adaptation:
    """A fresh adaptation of `lm` for the config's method."""
    return PeftAdaptation(lm, cfg) if uses_peft(cfg) else OverrideAdaptation(lm, cfg)


def restore(lm: FrozenLM, cfg: FinetuneOptions, tensors: dict[str, torch.Tensor]) -> Adaptation:
    """The adaptation a saved artifact describes (its tensors loaded onto `lm`'s device and dtype)."""
    tensors = {k: v.to(device=lm.device, dtype=lm.dtype) for k, v in tensors.items()}
    if uses_peft(cfg):
        adaptation = PeftAdaptation(lm, cfg)
        adaptation.load(tensors)
        return adaptation
    saved = {k[len(PARAM_PREFIX):]: v for k, v in tensors.items() if k.startswith(PARAM_PREFIX)}
    return OverrideAdaptation(lm, cfg, values=saved)
