"""FrozenLM: the one place that touches transformers internals.

Every method in this package sees a language model through this class: token ids or input
embeddings go in, logits (or hidden states) at chosen positions come out. The model's weights are
frozen and never modified; `params=` overrides them functionally for subspace training, and
`prefix=` prepends key/values (a per-example cache, or learned prefixes) through the cache object of
the installed transformers version.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from frozen_lm import placement
from frozen_lm.errors import UserError
from frozen_lm.placement import DTYPES, choose_device, choose_dtype  # noqa: F401  (also importable from here)

logger = logging.getLogger(__name__)


@dataclass
class Prefix:
    """Key/values that every row attends to before its own tokens.

    keys, values: one tensor per layer, each (R, n_kv_heads, P, head_dim); R may be 1 (broadcast).
    mask: (R, P) 1 for real prefix positions, 0 for padding; None means all real.
    lengths: (R,) number of real prefix tokens; the row's own positions start there.
    """

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    mask: torch.Tensor | None = None

    @property
    def length(self) -> int:
        return self.keys[0].shape[2]

    def lengths(self, rows: int, device) -> torch.Tensor:
        if self.mask is None:
            return torch.full((rows,), self.length, device=device, dtype=torch.long)
        return self.mask.sum(-1).long().expand(rows) if self.mask.shape[0] == 1 else self.mask.sum(-1).long()

    def select(self, index: torch.Tensor) -> Prefix:
        """Rows of the prefix for each entry of `index` (R',) -> a prefix with R' rows."""
        pick = (lambda t: t.expand(len(index), *t.shape[1:])) if self.keys[0].shape[0] == 1 else (
            lambda t: t[index.to(t.device)])
        mask = None if self.mask is None else pick(self.mask)
        return Prefix([pick(k) for k in self.keys], [pick(v) for v in self.values], mask)


class _Core(nn.Module):
    """Backbone + LM head as one module, so torch.func.functional_call can override any weight."""

    def __init__(self, lm: nn.Module):
        super().__init__()
        self.lm = lm

    def forward(self, kwargs: dict, positions: torch.Tensor, want: str, head: Callable, full: bool):
        if full:  # fallback for heads we cannot split off: full logits, then gather
            out = self.lm(**kwargs, output_hidden_states=(want == "hidden"))
            seq = out.hidden_states[-1] if want == "hidden" else out.logits
            return _gather(seq, positions)
        hidden = self.lm.base_model(**kwargs).last_hidden_state
        picked = _gather(hidden, positions)
        return picked if want == "hidden" else head(picked)


def _gather(seq: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """seq (R, L, D), positions (R, M) -> (R, M, D)."""
    return seq.gather(1, positions.unsqueeze(-1).expand(-1, -1, seq.shape[-1]))


class FrozenLM:
    """A frozen masked or causal language model with the few operations the methods need."""

    def __init__(self, model: nn.Module, tokenizer, name: str = "custom", kind: str | None = None):
        self.model = model.eval()
        self.model.requires_grad_(False)
        self.tokenizer = tokenizer
        self.name = name
        self.kind = kind or ("masked" if "MaskedLM" in type(model).__name__ else "causal")
        self.config = model.config
        self._core = _Core(model)
        self._head_fn = self._split_head()
        self._full = self._head_fn is None
        self._cache_kw = self._cache_kwarg()
        self.pad_id = _pad_id(tokenizer)
        self.sharded = len(placement.model_devices(model)) > 1  # accelerate spread it over several devices
        self.quantized = placement.quantized(model)  # '8bit' / '4bit' (bitsandbytes), else None
        self.offloaded = placement.offloaded(model)  # some weights live on CPU / disk between uses

    # ---------------------------------------------------------------- loading
    @classmethod
    def load(cls, name: str | None = None, device: str | None = None, dtype: str | None = None, *,
             device_map: str | None = None, max_memory: str | dict | None = None,
             quantize: str | None = None) -> FrozenLM:
        """Load by alias (see `autoprompt models`), local path or hub name; frozen, eval mode.

        device: auto (CUDA when present; under torchrun each process's own GPU), cpu, cuda, cuda:N.
        dtype: float32 (auto), bfloat16 or float16 base weights. device_map ('auto', ...) and
        max_memory ('0=20GiB,cpu=64GiB'): accelerate spreads one copy over the machine's devices.
        quantize: '8bit' / '4bit' linear layers (bitsandbytes, CUDA). See frozen_lm.placement.
        """
        from frozen_lm.registry import DEFAULT_MODEL, load_pretrained

        name = name or DEFAULT_MODEL
        where = placement.make_placement(device, dtype, device_map, max_memory, quantize)
        model, tokenizer, kind = load_pretrained(name, **where.from_pretrained_kwargs())
        if not where.dispatched:
            model.to(device=where.device, dtype=where.dtype)
        lm = cls(model, tokenizer, name=name, kind=kind)
        if where.dispatched:
            logger.info("%s placed with %s: %s", name, where.describe(), sorted(map(str, placement.model_devices(model))))
        return lm

    # ---------------------------------------------------------------- facts
    @property
    def is_masked(self) -> bool:
        return self.kind == "masked"

    @property
    def device(self) -> torch.device:
        return self.embedding_matrix.device

    @property
    def dtype(self) -> torch.dtype:
        return self.embedding_matrix.dtype

    @property
    def embedding_matrix(self) -> torch.Tensor:
        """(V, H) input token embeddings (the raw weight, before any model-specific scale)."""
        return self.model.get_input_embeddings().weight

    @property
    def embed_scale(self) -> float:
        """Factor the embedding layer applies to looked-up rows (sqrt(H) for Gemma, else 1)."""
        scale = getattr(self.model.get_input_embeddings(), "embed_scale", 1.0)
        return float(scale.item() if torch.is_tensor(scale) else scale)

    @property
    def vocab_size(self) -> int:
        return self.embedding_matrix.shape[0]

    @property
    def hidden_size(self) -> int:
        return self.embedding_matrix.shape[1]

    def named_parameters(self) -> dict[str, torch.Tensor]:
        """The model's weights by name (tied weights appear once)."""
        return dict(self.model.named_parameters())

    # ---------------------------------------------------------------- forward
    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(…) token ids -> (…, H) input embeddings, exactly as the model's embedding layer makes them."""
        return self.model.get_input_embeddings()(input_ids)

    def logits_at(self, positions: torch.Tensor, **inputs) -> torch.Tensor:
        """Logits (R, M, V) at `positions` (R, M); inputs as for `hidden_at`."""
        return self._run(positions, "logits", **inputs)

    def hidden_at(self, positions: torch.Tensor, **inputs) -> torch.Tensor:
        """Final hidden states (R, M, H) at `positions` (R, M).

        inputs: input_ids (R, L) or inputs_embeds (R, L, H); attention_mask (R, L) over the row's own
        tokens; prefix: a `Prefix` the rows attend to first; params: {name: tensor} weight overrides.
        Packed rows (causal LMs): attention_mask (R, L, L) bool, query x key, with position_ids (R, L).
        """
        return self._run(positions, "hidden", **inputs)

    def head(self, hidden: torch.Tensor) -> torch.Tensor:
        """LM head: (…, H) final hidden states -> (…, V) logits."""
        if self._full:
            raise UserError(f"{type(self.model).__name__}: the LM head cannot be applied on its own")
        out = self._head_fn(hidden)
        return out.to(self.device) if self.sharded else out

    @property
    def splits_head(self) -> bool:
        """Whether `head` can map hidden states to logits on its own (False for models whose forward
        computes logits in one piece)."""
        return not self._full

    @property
    def output_embedding_matrix(self) -> torch.Tensor:
        """(V, H') weight of the output layer that maps `head_features` to logits."""
        return self.model.get_output_embeddings().weight

    def head_features(self, hidden: torch.Tensor) -> torch.Tensor:
        """What the output embedding layer sees for final hidden states (…, H) -> (…, H'), so a
        direction in feature space scores every token by a dot product with
        `output_embedding_matrix` (BERT: after the MLM transform; Llama/GPT-2: the hidden states)."""
        with torch.no_grad():
            return self.head_and_features(hidden)[1]

    def head_and_features(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(`head(hidden)`, `head_features(hidden)`) from one pass of the head; the logits keep
        their gradient."""
        out_layer = self.model.get_output_embeddings()
        seen = []
        handle = out_layer.register_forward_hook(lambda mod, args, out: seen.append(args[0]))
        try:
            logits = self.head(hidden)
        finally:
            handle.remove()
        return logits, seen[0]

    def _run(self, positions, want, input_ids=None, inputs_embeds=None, attention_mask=None,
             prefix: Prefix | None = None, params: Mapping[str, torch.Tensor] | None = None,
             position_ids: torch.Tensor | None = None):
        if attention_mask is not None and attention_mask.dim() == 3:
            kwargs = self._packed_kwargs(input_ids, inputs_embeds, attention_mask, position_ids)
        else:
            kwargs = self._model_kwargs(input_ids, inputs_embeds, attention_mask, prefix)
        args = (kwargs, positions, want, self._head_fn, self._full)
        if params:
            overrides = {f"lm.{k}": v for k, v in params.items()}
            out = torch.func.functional_call(self._core, overrides, args, strict=False)
        else:
            out = self._core(*args)
        return out.to(self.device) if self.sharded else out  # the last layers may sit on another device

    def _model_kwargs(self, input_ids, inputs_embeds, attention_mask, prefix):
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("give exactly one of input_ids and inputs_embeds")
        x = input_ids if input_ids is not None else inputs_embeds
        rows, length = x.shape[0], x.shape[1]
        kwargs = {"input_ids": input_ids} if input_ids is not None else {"inputs_embeds": inputs_embeds}
        if attention_mask is None:
            attention_mask = torch.ones(rows, length, dtype=torch.long, device=x.device)
        if prefix is None:
            kwargs["attention_mask"] = attention_mask
            return kwargs
        if prefix.keys[0].shape[0] != rows:
            prefix = prefix.select(torch.zeros(rows, dtype=torch.long, device=x.device))
        start = prefix.lengths(rows, x.device)
        kwargs["attention_mask"] = self._prefix_mask(prefix, attention_mask)
        kwargs[self._cache_kw] = self._build_cache(prefix)
        kwargs["use_cache"] = True
        if not self.is_masked:
            kwargs["position_ids"] = start[:, None] + torch.arange(length, device=x.device)[None, :]
        return kwargs

    def _packed_kwargs(self, input_ids, inputs_embeds, attention_mask, position_ids):
        """Several sequences packed in one row: attention_mask (R, L, L) bool says which key each
        query sees; position_ids (R, L) restart per packed sequence (causal LMs only)."""
        if self.is_masked or position_ids is None:
            raise ValueError("packed rows need a causal LM and position_ids")
        mask = torch.zeros(attention_mask.shape, dtype=self.dtype, device=attention_mask.device)
        mask.masked_fill_(~attention_mask.bool(), torch.finfo(self.dtype).min)
        kwargs = {"input_ids": input_ids} if input_ids is not None else {"inputs_embeds": inputs_embeds}
        return {**kwargs, "attention_mask": mask[:, None], "position_ids": position_ids}

    def _prefix_mask(self, prefix: Prefix, attention_mask: torch.Tensor) -> torch.Tensor:
        """4D additive mask (R, 1, L, P + L): prefix padding, row padding, causal within the row."""
        rows, length = attention_mask.shape
        dev = attention_mask.device
        pmask = (torch.ones(rows, prefix.length, device=dev) if prefix.mask is None else prefix.mask).bool()
        keys = torch.cat([pmask, attention_mask.bool()], dim=1)[:, None, :].expand(rows, length, -1)
        if not self.is_masked:
            causal = torch.ones(length, length, dtype=torch.bool, device=dev).tril()
            own = torch.cat([torch.ones(length, prefix.length, dtype=torch.bool, device=dev), causal], dim=1)
            keys = keys & own[None]
        mask = torch.zeros(keys.shape, dtype=self.dtype, device=dev)
        mask.masked_fill_(~keys, torch.finfo(self.dtype).min)
        return mask[:, None]

    def _build_cache(self, prefix: Prefix):
        from transformers import DynamicCache

        try:
            cache = DynamicCache(config=self.config)
        except TypeError:  # older releases take no config
            cache = DynamicCache()
        devices = placement.layer_devices(self.model) if self.sharded else {}
        for i, (k, v) in enumerate(zip(prefix.keys, prefix.values)):
            if i in devices:  # each layer's key/values beside that layer
                k, v = k.to(devices[i]), v.to(devices[i])
            cache.update(k, v, i)
        return cache

    @property
    def cache_argument(self) -> str:
        """The name under which the backbone's forward takes a key/value cache."""
        return self._cache_kw

    def _cache_kwarg(self) -> str:
        names = inspect.signature(self.model.base_model.forward).parameters
        return "cache" if "cache" in names else "past_key_values"

    # ---------------------------------------------------------------- prefixes
    @property
    def supports_prefix(self) -> bool:
        """Whether the architecture accepts prefix key/values through its cache argument."""
        names = inspect.signature(self.model.base_model.forward).parameters
        return "cache" in names or "past_key_values" in names

    def kv_layout(self) -> tuple[int, int, int]:
        """(n_layers, n_kv_heads, head_dim) of the key/value tensors a prefix must have."""
        c = self.config.get_text_config() if hasattr(self.config, "get_text_config") else self.config
        heads = c.num_attention_heads
        kv_heads = getattr(c, "num_key_value_heads", None) or heads
        head_dim = getattr(c, "head_dim", None) or c.hidden_size // heads
        return c.num_hidden_layers, kv_heads, head_dim

    def compute_prefix(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> Prefix:
        """Run the model on (R, P) tokens once and keep their key/values as a `Prefix` for later rows.

        Right padding in `attention_mask` is allowed (causal models): padded positions are masked out
        for the rows that attend to this prefix.
        """
        if not self.supports_prefix or self.is_masked:
            raise UserError(f"{type(self.model).__name__}: prefix key/values need a causal LM with a cache")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask, "use_cache": True}
        with torch.no_grad():
            out = self.model.base_model(**kwargs)
        cache = getattr(out, "cache", None) or out.past_key_values
        keys, values = _cache_tensors(cache)
        return Prefix(keys, values, attention_mask)

    # ---------------------------------------------------------------- gradients
    def token_gradients(self, input_ids, attention_mask, slot_pos, positions,
                        loss_fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """Gradient of `loss_fn(logits)` with respect to one-hot tokens at the slots, (S, V).

        input_ids (R, L) hold the current slot tokens at slot_pos (R, S) (the same S tokens in every
        row); positions (R, M) are where logits are read; loss_fn maps logits (R, M, V) to a scalar.
        d loss / d onehot[s, v] = <d loss / d e_s, E[v]> * embed_scale, the HotFlip linearization.
        """
        slot_ids = input_ids[0].gather(0, slot_pos[0])
        base = self.embed(input_ids).detach()
        slot = (self.embedding_matrix[slot_ids] * self.embed_scale).detach().requires_grad_(True)
        index = slot_pos.unsqueeze(-1).expand(-1, -1, base.shape[-1])
        embeds = base.scatter(1, index, slot.unsqueeze(0).expand(base.shape[0], -1, -1))
        loss = loss_fn(self.logits_at(positions, inputs_embeds=embeds, attention_mask=attention_mask))
        (grad,) = torch.autograd.grad(loss, slot)
        return (grad.float() * self.embed_scale) @ self.embedding_matrix.float().T

    # ---------------------------------------------------------------- generation (frozen_lm.generation)
    def generate(self, input_ids: torch.Tensor, max_new_tokens: int) -> list[int]:
        """Greedy continuation (no sampling) of one row of token ids (L,) -> the new token ids."""
        from frozen_lm.generation import greedy

        return greedy(self, input_ids, max_new_tokens)

    def sample(self, input_ids: torch.Tensor, max_new_tokens: int, *, temperature: float = 1.0, top_p: float = 1.0,
               generator: torch.Generator | None = None, n: int = 1) -> list[list[int]]:
        """`n` sampled continuations of one row of token ids (L,); see frozen_lm.generation.sample."""
        from frozen_lm.generation import sample

        return sample(self, input_ids, max_new_tokens, temperature=temperature, top_p=top_p, generator=generator, n=n)

    # ---------------------------------------------------------------- internals
    def _split_head(self) -> Callable | None:
        """The module that maps final hidden states to logits, checked against the full model."""
        base = self.model.base_model
        heads = [m for m in self.model.children() if m is not base]
        if len(heads) != 1 or base is self.model:
            return None
        cap = getattr(self.config, "final_logit_softcapping", None)

        def head(hidden):
            logits = heads[0](hidden)
            return logits if cap is None else torch.tanh(logits / cap) * cap

        return head if self._head_matches(head) else None

    def _head_matches(self, head) -> bool:
        ids = torch.arange(3, 8, device=self.embedding_matrix.device)[None] % self.vocab_size
        with torch.no_grad():
            full = self.model(input_ids=ids).logits
            split = head(self.model.base_model(input_ids=ids).last_hidden_state)
        ok = torch.allclose(full.float(), split.to(full.device).float(), atol=1e-3, rtol=1e-3)
        if not ok:
            logger.warning("%s: separate LM head does not match the model; using full logits", type(self.model).__name__)
        return ok


def _cache_tensors(cache) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per-layer key and value tensors from the installed transformers' cache object."""
    if hasattr(cache, "layers"):
        return [layer.keys for layer in cache.layers], [layer.values for layer in cache.layers]
    if hasattr(cache, "key_cache"):
        return list(cache.key_cache), list(cache.value_cache)
    return [k for k, _ in cache], [v for _, v in cache]


def _pad_id(tokenizer) -> int:
    for attr in ("pad_token_id", "eos_token_id", "unk_token_id"):
        value = getattr(tokenizer, attr, None)
        if value is not None:
            return int(value)
    return 0
