"""Interpreting a soft prompt: nearest vocabulary tokens, norms, drift, and its discrete reading.

Distances are taken in the space the vectors live in, the embedding output space (token rows times
embed_scale). The discrete reading of a prompt puts each slot's nearest token in the slot and is
scored by the same evaluator as the soft prompt, so the gap between them is one command.
"""

from __future__ import annotations

import shlex

import torch

from frozen_lm.errors import UserError
from frozen_lm.model import FrozenLM
from softprompt.init import special_ids

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
    raise UserError(f"--metric {metric!r} is unknown; use cosine or l2")


def nearest_tokens(vectors: torch.Tensor, table: torch.Tensor, k: int, metric: str = "cosine",
                   exclude: set[int] = frozenset()) -> tuple[torch.Tensor, torch.Tensor]:
    """(dist (S, k), ids (S, k)) of each vector's k nearest tokens, closest first."""
    if k < 1:
        raise UserError(f"--k must be at least 1, got {k}")
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


def evaluate_command(task_cfg: dict, trigger_text: str, data: str | None) -> str:
    """The `autoprompt evaluate` line that scores the discrete reading of a soft prompt."""
    parts = ["autoprompt", "evaluate", "--model", task_cfg["model"], "--template", task_cfg["template"]]
    for key in ("label_map", "label_field", "text_fields"):
        if task_cfg.get(key):
            parts += ["--" + key.replace("_", "-"), str(task_cfg[key])]
    parts += ["--trigger", trigger_text, "--data", data or task_cfg.get("dev") or "DATA"]
    return shlex.join(parts)
