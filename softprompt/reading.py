"""Interpreting a soft prompt: nearest vocabulary tokens, norms, drift, and its discrete reading.

Distances are taken in the space the vectors live in, the embedding output space (token rows times
embed_scale). The discrete reading of a prompt puts each slot's nearest token in the slot and is
scored by the same evaluator as the soft prompt, so the gap between them is one call:
`evaluate(task, data, prompt=nearest(result).prompt)` beside `evaluate(task, data, prompt=result)`.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field

import torch

from frozen_lm.errors import UserError
from frozen_lm.evaluate import DiscretePrompt
from frozen_lm.model import FrozenLM
from frozen_lm.prompts.effective import ReadingPrompt
from frozen_lm.prompts.init import special_ids
from frozen_lm.task import TaskSpec

METRICS = ("cosine", "l2")


def token_table(lm: FrozenLM) -> torch.Tensor:
    """(V, H) token embeddings as the model's embedding layer outputs them, float32."""
    return lm.embedding_matrix.detach().float() * lm.embed_scale


def distances(vectors: torch.Tensor, table: torch.Tensor, metric: str) -> torch.Tensor:
    """(S, H) x (V, H) -> (S, V): 1 - cosine similarity, or Euclidean distance."""
    vectors, table = vectors.float(), table.float()
    if metric == "cosine":
        v = torch.nn.functional.normalize(vectors, dim=-1)
        t = torch.nn.functional.normalize(table, dim=-1)
        return 1 - v @ t.T
    if metric == "l2":
        return torch.cdist(vectors[None], table[None])[0]
    raise UserError(f"metric {metric!r} is unknown; use cosine or l2")


def nearest_tokens(vectors: torch.Tensor, table: torch.Tensor, k: int, metric: str = "cosine",
                   exclude: set[int] = frozenset()) -> tuple[torch.Tensor, torch.Tensor]:
    """(dist (S, k), ids (S, k)) of each vector's k nearest tokens, closest first."""
    if k < 1:
        raise UserError(f"k must be at least 1, got {k}")
    d = distances(vectors, table, metric)
    if exclude:
        d[:, torch.tensor(sorted(exclude), dtype=torch.long)] = float("inf")
    d, ids = d.topk(min(k, d.shape[1]), dim=-1, largest=False)
    return d, ids


def drift(vectors: torch.Tensor, init: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(l2 (S,), 1 - cosine (S,)) between each learned vector and its initialization."""
    l2 = (vectors.float() - init.float()).norm(dim=-1)
    cos = 1 - torch.nn.functional.cosine_similarity(vectors.float(), init.float(), dim=-1)
    return l2, cos


def describe(lm: FrozenLM, vectors: torch.Tensor, init: torch.Tensor | None, k: int, metric: str,
             keep_special: bool = False) -> list[dict]:
    """One row per slot: nearest tokens with distances, norm against the typical norm, drift."""
    table = token_table(lm)
    vectors = vectors.detach().float().to(table.device)
    init = None if init is None else init.detach().float().to(table.device)
    exclude = set() if keep_special else special_ids(lm.tokenizer)
    dist, ids = nearest_tokens(vectors, table, k, metric, exclude)
    typical = float(table.norm(dim=-1).median())
    rows = []
    for s in range(vectors.shape[0]):
        tokens = lm.tokenizer.convert_ids_to_tokens([int(i) for i in ids[s]])
        row = {"slot": s, "nearest": [{"token": t, "id": int(i), "distance": float(d)}
                                      for t, i, d in zip(tokens, ids[s], dist[s])],
               "norm": float(vectors[s].float().norm()), "typical_norm": typical}
        row["norm_ratio"] = row["norm"] / typical
        if init is not None:
            l2, cos = drift(vectors[s:s + 1], init[s:s + 1])
            row["drift_l2"], row["drift_cosine"] = float(l2[0]), float(cos[0])
        rows.append(row)
    return rows


def table_rows(described: list[dict]) -> list[dict]:
    """Flatten `describe` rows for print_table."""
    out = []
    for r in described:
        near = ", ".join(f"{n['token']!r} {n['distance']:.3f}" for n in r["nearest"])
        row = {"slot": r["slot"], "nearest (distance)": near, "norm": r["norm"], "x typical": r["norm_ratio"]}
        if "drift_l2" in r:
            row["drift l2"], row["drift cos"] = r["drift_l2"], r["drift_cosine"]
        out.append(row)
    return out


def discrete_trigger(lm: FrozenLM, described: list[dict]) -> tuple[list[int], str, bool]:
    """(nearest token id per slot, their text for --trigger, whether that text re-tokenizes to them)."""
    ids = [r["nearest"][0]["id"] for r in described]
    text = lm.tokenizer.decode(ids)
    again = list(lm.tokenizer(text, add_special_tokens=False).input_ids)
    return ids, text, again == ids


@dataclass
class NearestReading:
    """What `nearest(result)` finds: per slot the nearest tokens, norms and drift (`slots`), and the
    discrete reading (each slot's nearest token) as ids, text and tokenizer tokens.

    prompt: the reading as a prompt for `evaluate` on the result's task; command(data): the
    `autoprompt evaluate` line that scores it; to_dict(): the JSON report; table_rows(): a table."""

    method: str
    slots: list[dict]
    trigger_ids: list[int]
    trigger_text: str
    trigger_tokens: list[str]
    trigger_round_trips: bool
    template: str  # the effective template whose [T] slots the tokens fill
    task: TaskSpec
    model: str
    prompt: ReadingPrompt = field(repr=False)
    dev: str | None = None  # the result's dev split, when it was a file or a named source

    def to_dict(self) -> dict:
        return {"method": self.method, "slots": self.slots, "trigger_ids": self.trigger_ids,
                "trigger_text": self.trigger_text, "trigger_tokens": self.trigger_tokens,
                "trigger_round_trips": self.trigger_round_trips, "template": self.template}

    def table_rows(self) -> list[dict]:
        return table_rows(self.slots)

    def command(self, data: str | None = None) -> str:
        """The `autoprompt evaluate` line that scores the discrete reading on `data` (default: the dev split)."""
        spec = self.task
        parts = ["autoprompt", "evaluate", "--model", self.model, "--template", self.template]
        if spec.label_map:
            parts += ["--label-map", label_map_text(spec.label_map)]
        if spec.label_field != ("label" if spec.label_map else "obj_label"):
            parts += ["--label-field", spec.label_field]
        if spec.text_fields:
            parts += ["--text-fields", spec.text_fields]
        if spec.multi_token != "skip":
            parts += ["--multi-token", spec.multi_token]
        if data is not None and str(data).startswith("<"):
            data = None  # in-memory rows have no name to type
        parts += ["--trigger", self.trigger_text, "--data", str(data or self.dev or "DATA")]
        return shlex.join(parts)


def label_map_text(label_map: dict[str, list[str]]) -> str:
    """'0=terrible,1=great|good' when every label and word allows it, else JSON."""
    plain = all(not set(x) & set(",=|{}") and x == x.strip() and x
                for label, words in label_map.items() for x in (label, *words))
    if plain:
        return ",".join(f"{label}={'|'.join(words)}" for label, words in label_map.items())
    return json.dumps(label_map)


SOFT_PROMPTS = ("prompt", "pez", "prompt_tuning")  # methods whose results hold prompt vectors (0.2's name too)


def nearest(result, k: int = 5, metric: str = "cosine", keep_special: bool = False, lm: FrozenLM | None = None) -> NearestReading:
    """The nearest vocabulary tokens of each vector of a prompt-tuning (or PEZ) result, their norms
    against the typical token-embedding norm, the drift from the initialization, and the discrete reading.

    lm: the model to read with (default: `result.lm`, else the model the result names, loaded)."""
    where = f"{result.saved_to}: " if getattr(result, "saved_to", None) else ""
    method = getattr(result, "method", type(result).__name__)
    if method in ("prefix", "prefix_tuning"):
        raise UserError(f"{where}a prefix result holds key/values, not vectors in the embedding space; "
                        "nearest tokens exist for prompt and pez results")
    if method not in SOFT_PROMPTS:
        raise UserError(f"{where}method {method!r} is not a soft prompt (prompt and pez results only)")
    if k < 1:
        raise UserError(f"nearest: k must be at least 1, got {k}")
    lm = lm or result.lm or FrozenLM.load(result.model["name"])
    result.check_model(lm)
    result.require("prompt_embeddings")
    vectors = result.tensors["prompt_embeddings"]
    if vectors.shape[1] != lm.hidden_size:
        raise UserError(f"prompt vectors have size {vectors.shape[1]}, the model's embeddings {lm.hidden_size}")
    slots = describe(lm, vectors, result.tensors.get("init_embeddings"), k, metric, keep_special)
    ids, text, round_trips = discrete_trigger(lm, slots)
    discrete = DiscretePrompt.from_ids(lm.tokenizer, ids)
    prompt = ReadingPrompt(discrete.trigger_ids, discrete.tokens, discrete.text, result.template,
                           result.config.num_virtual_tokens)
    dev = (result.data.get("dev") or {}).get("source")
    return NearestReading(result.method, slots, ids, text, lm.tokenizer.convert_ids_to_tokens(ids), round_trips,
                          result.template, result.task, lm.name, prompt, dev if dev and not dev.startswith("<") else None)
