"""A gradient of a model with another tokenizer, over the first model's vocabulary.

A model that reads the trigger as text (autoprompt.models.TextModel) cannot add its one-hot gradient
to the first model's: the two are over different vocabularies. But where a slot's text is one token
there, and a first-model token's text would also be one token there, swapping the slot to that token
is one swap on that model too, and its one-hot gradient estimates the change to first order:

    grad_first[s, t] = grad_other[p_s, m_s(t)]

p_s: the position of slot s's one token among the other model's trigger tokens; m_s(t): the other
tokenizer's single token for t's text as slot s writes it (frozen_lm.transfer.write). A token t
with no single token there (m_s(t) = -1), and every token of a slot whose text is several tokens
there, gets the value of the slot's current token: no predicted change, so it neither helps nor
hurts that candidate's rank.
"""

from __future__ import annotations

import re

import torch

from frozen_lm.transfer import SLOT, expand, write


class VocabMap:
    """First-model token ids -> the other tokenizer's token id for each token's text as a slot rule
    writes it, -1 where that text is not one token there; built once per rule (one tokenizer pass
    over the first vocabulary)."""

    def __init__(self, source_tokenizer, target_tokenizer, n_source: int):
        self.target = target_tokenizer
        self.texts = [source_tokenizer.decode([i]) for i in range(n_source)]
        self._maps: dict[tuple, torch.Tensor] = {}

    def of(self, rule: tuple[str, bool, bool]) -> torch.Tensor:
        """(V1,) long: the target token of each first-model token written with `rule`, or -1."""
        if rule not in self._maps:
            encoded = self.target([write(rule, t) for t in self.texts], add_special_tokens=False).input_ids
            self._maps[rule] = torch.tensor([ids[0] if len(ids) == 1 else -1 for ids in encoded], dtype=torch.long)
        return self._maps[rule]


def slot_template(template: str, counts: list[int]) -> str:
    """`template` with its k-th [T] slot written as counts[k] slots (0: the slot and the spaces before
    it dropped), for the other model's tokens of each slot's text."""
    it = iter(counts)

    def one(match: re.Match) -> str:
        n = next(it)
        return match.group(1) + " ".join(["[T]"] * n) if n else ""

    return SLOT.sub(one, expand(template))


def mapped_gradient(grad: torch.Tensor, counts: list[int], current: torch.Tensor, maps: list[torch.Tensor | None],
                    n_first: int) -> torch.Tensor:
    """The other model's one-hot gradient on the first model's vocabulary.

    grad (N, V2): d loss / d onehot at the other model's N trigger tokens (the slots' tokens in
    order, counts[s] of them for slot s, sum(counts) = N); current (N,): those tokens' ids;
    maps: per slot s, (V1,) long first-model token -> other-model token or -1 (VocabMap.of), or
    None for a slot with no rule; n_first: the first model's vocabulary size V1. Returns (S, V1)
    float, S = len(counts): grad[p_s, maps[s][t]]
    where slot s is one token there (at p_s) and maps[s][t] >= 0, else grad[p_s, current[p_s]]
    (no predicted change); a slot of several tokens or none gets 0 everywhere (a constant row
    changes no rank).
    """
    out = torch.zeros(len(counts), n_first, dtype=torch.float32, device=grad.device)
    at = 0
    for s, n in enumerate(counts):
        m = maps[s]
        if n == 1 and m is not None:
            row, m = grad[at].float(), m.to(grad.device)
            out[s] = torch.where(m >= 0, row[m.clamp(min=0)], row[current[at]])
        at += n
    return out
