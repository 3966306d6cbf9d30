"""Initial values of soft prompts: pure functions of the model, the task and a seeded generator.

Prompt vectors live in the embedding *output* space (what `FrozenLM.embed` returns, any embed_scale
included). Prefix key/values are (n_layers, 2, n_kv_heads, P, head_dim): index 0 keys, 1 values.
"""

from __future__ import annotations

import inspect
import logging

import torch

from frozen_lm.errors import UserError
from frozen_lm.model import FrozenLM, _cache_tensors

logger = logging.getLogger(__name__)

FREQUENT = 5000
INIT_KINDS = ("random", "vocab", "labels", "text:...")


def parse_init(spec: str, name: str = "init") -> tuple[str, str | None]:
    """'random' | 'vocab' | 'labels' | 'text:...' -> (kind, text); UserError naming `name` (the config
    field, e.g. 'PromptTuningConfig.init') for anything else."""
    if spec in ("random", "vocab", "labels"):
        return spec, None
    if isinstance(spec, str) and spec.startswith("text:"):
        text = spec[5:].strip()
        if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
            text = text[1:-1]
        if not text.strip():
            raise UserError(f"{name} 'text:' needs some text, e.g. 'text:Classify the sentiment'")
        return "text", text
    raise UserError(f"{name} {spec!r} is unknown; use random, vocab, labels or text:\"...\"")


def special_ids(tokenizer) -> set[int]:
    return {int(i) for i in getattr(tokenizer, "all_special_ids", []) if i is not None}


def frequency_order(tokenizer, vocab_size: int) -> list[int] | None:
    """Token ids from most to least frequent when the tokenizer's ids encode that order (BPE merge
    rank, SentencePiece/Unigram score order), else None. Special tokens are left out."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    kind = type(getattr(backend, "model", None)).__name__
    if kind not in ("BPE", "Unigram"):
        return None
    specials = special_ids(tokenizer)
    return [i for i in range(min(len(tokenizer), vocab_size)) if i not in specials]


def vocab_pool(lm: FrozenLM) -> list[int]:
    """The ids `vocab` init samples from: the 5,000 most frequent tokens if known, else all non-special ids."""
    order = frequency_order(lm.tokenizer, lm.vocab_size)
    if order is not None:
        return order[:FREQUENT]
    specials = special_ids(lm.tokenizer)
    return [i for i in range(min(len(lm.tokenizer), lm.vocab_size)) if i not in specials]


def sample_vocab(lm: FrozenLM, k: int, generator: torch.Generator, exclude: set[int] = frozenset()) -> list[int]:
    """k ids sampled without replacement from the vocab pool (the whole vocabulary if the pool is too small)."""
    pool = [i for i in vocab_pool(lm) if i not in exclude]
    if len(pool) < k:
        pool = [i for i in range(lm.vocab_size) if i not in exclude]
    pick = torch.randperm(len(pool), generator=generator)[:k]
    return [pool[int(i)] for i in pick]


def fit_ids(ids: list[int], k: int, truncate: bool, what: str) -> list[int]:
    """Repeat a token list to length k, or cut it (UserError when too long and truncate is off)."""
    if not ids:
        raise UserError(f"{what} has no tokens in this tokenizer")
    if len(ids) > k:
        if not truncate:
            raise UserError(f"{what} is {len(ids)} tokens but there are only {k} slots; shorten it, "
                            "add slots, or allow cutting with `truncate_init`")
        return ids[:k]
    return (ids * (k // len(ids) + 1))[:k]


def init_ids(kind: str, text: str | None, k: int, lm: FrozenLM, task, generator: torch.Generator,
             truncate: bool = True) -> list[int] | None:
    """The k token ids an init starts from (None for random)."""
    if kind == "random":
        return None
    if kind == "vocab":
        return sample_vocab(lm, k, generator)
    if kind == "text":
        ids = list(lm.tokenizer(text, add_special_tokens=False).input_ids)
        return fit_ids(ids, k, truncate, f"init text {text!r}")
    if task.verbalizer is None:
        raise UserError("`init` labels needs class label words (`label_map`); this is a fact task")
    words = list(dict.fromkeys(t for w in task.verbalizer.word_ids for t in w))[:k]
    return words + sample_vocab(lm, k - len(words), generator, exclude=set(words))


def typical_norm(lm: FrozenLM) -> float:
    """Median norm of the token embeddings as the model sees them (embed_scale included)."""
    return float(lm.embedding_matrix.detach().float().norm(dim=-1).median()) * lm.embed_scale


def embedding_rms(lm: FrozenLM) -> float:
    """Root mean square coordinate of the token embeddings as the model sees them (embed_scale included)."""
    return float(lm.embedding_matrix.detach().float().pow(2).mean().sqrt()) * lm.embed_scale


def random_vectors(lm: FrozenLM, k: int, generator: torch.Generator) -> torch.Tensor:
    """(k, H) uniform in [-1, 1] per coordinate, each vector rescaled to the median token-embedding norm."""
    v = torch.rand(k, lm.hidden_size, generator=generator) * 2 - 1
    return v / v.norm(dim=-1, keepdim=True) * typical_norm(lm)


def prompt_init(lm: FrozenLM, task, k: int, spec: str, generator: torch.Generator, truncate: bool = True):
    """(vectors (k, H) float32, ids or None) for prompt tuning."""
    kind, text = parse_init(spec)
    ids = init_ids(kind, text, k, lm, task, generator, truncate)
    if ids is None:
        return random_vectors(lm, k, generator), None
    with torch.no_grad():
        vectors = lm.embed(torch.tensor(ids, device=lm.device)).float().cpu()
    return vectors, ids


def _cache_kwarg(lm: FrozenLM) -> str:
    names = inspect.signature(lm.model.base_model.forward).parameters
    return "cache" if "cache" in names else "past_key_values"


@torch.no_grad()
def token_kv(lm: FrozenLM, ids: list[int]) -> torch.Tensor:
    """Key/values (L, 2, kv, P, hd) of the model run on a token sequence (as a prefix of later rows)."""
    from transformers import DynamicCache

    x = torch.tensor([ids], device=lm.device)
    if not lm.is_masked:
        pre = lm.compute_prefix(x)
        keys, values = pre.keys, pre.values
    else:  # masked LMs: read the key/values the self-attention layers write into an empty cache
        cache = DynamicCache(config=lm.config)
        lm.model.base_model(input_ids=x, use_cache=True, **{_cache_kwarg(lm): cache})
        keys, values = _cache_tensors(cache)
        if not keys or keys[0] is None:
            raise UserError(f"{type(lm.model).__name__}: cannot read key/values of real tokens; use `init` random")
    return torch.stack([torch.stack([k[0], v[0]]) for k, v in zip(keys, values)]).float().cpu()


def prefix_init(lm: FrozenLM, task, length: int, spec: str, generator: torch.Generator, truncate: bool = True):
    """(key/values (L, 2, kv, P, hd) float32, ids or None) for prefix tuning.

    Token inits take the key/values of the tokens themselves; random draws Gaussians with, per layer
    and for keys and values separately, the standard deviation of real tokens' key/values.
    """
    kind, text = parse_init(spec)
    ids = init_ids(kind, text, length, lm, task, generator, truncate)
    if ids is not None:
        return token_kv(lm, ids), ids
    reference = token_kv(lm, sample_vocab(lm, max(length, 8), generator))
    std = reference.std(dim=(2, 3, 4), keepdim=True)
    n_layers, _, kv_heads, _, head_dim = reference.shape
    noise = torch.randn(n_layers, 2, kv_heads, length, head_dim, generator=generator)
    return noise * std, None
