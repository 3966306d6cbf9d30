"""Training examples for `tune`: encoded rows plus, for `--loss lm`, the target tokens per row.

Label-word losses use the task's own rows. The LM loss teacher-forces a target text at [P]
(causal LMs read position p-1 .. p+n-2; masked LMs get n mask tokens at [P]) and scores every
target token, the same encoding the verbalizer uses for multi-token label words.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from frozen_lm import data as data_mod
from frozen_lm.encode import Rows, _pad
from frozen_lm.errors import UserError
from frozen_lm.task import Encoded

logger = logging.getLogger(__name__)


@dataclass
class Examples:
    """Rows of B examples, with targets (B, M) token ids padded with -1 for the LM loss (else None),
    and what encoding skipped (facts with several-token answers)."""

    rows: Rows
    targets: torch.Tensor | None = None
    n_skipped: int = 0
    n_multi_token: int = 0

    def __len__(self) -> int:
        return len(self.rows)

    def subset(self, index: torch.Tensor) -> Examples:
        targets = None if self.targets is None else self.targets[index.to(self.targets.device)]
        return Examples(self.rows.subset(index), targets)

    def to(self, device) -> Examples:
        targets = None if self.targets is None else self.targets.to(device)
        return Examples(self.rows.to(device), targets, self.n_skipped, self.n_multi_token)

    def encoded(self) -> Encoded:
        """The rows as the shared evaluator takes them (notes left out: they were logged once)."""
        return Encoded(self.rows, self.n_skipped, self.n_multi_token)


def encode_split(task, data: data_mod.Dataset, target_field: str | None, name: str) -> Examples:
    """Encode a split for training and scoring: the task's rows, or rows with targets for the LM loss."""
    if target_field:
        return encode_targets(task, data, target_field)
    encoded = task.encode(data)
    for note in encoded.notes:
        logger.info("%s: %s", name, note)
    return Examples(encoded.rows, None, encoded.n_skipped, encoded.n_multi_token)


def encode_targets(task, data: data_mod.Dataset, target_field: str) -> Examples:
    """Encode a split for the LM loss on `target_field` (one row per example)."""
    columns = [task.encoder.column(f) for f in task.template.fields]
    data_mod.check_rows(data, columns + [target_field])
    space = " " if task.template.predict_space else ""
    seqs, targets = [], []
    for i, row in enumerate(data.rows):
        ids = list(task.lm.tokenizer(space + str(row[target_field]).strip(), add_special_tokens=False).input_ids)
        if not ids:
            raise UserError(f"{data.where(i)}: target field {target_field!r} has no tokens")
        seqs.append(task.encoder.encode_one(row, ids))
        targets.append(ids)
    width = max(len(t) for t in targets)
    padded = torch.full((len(targets), width), -1, dtype=torch.long)
    for i, t in enumerate(targets):
        padded[i, : len(t)] = torch.tensor(t)
    rows = _pad(seqs, task.lm.pad_id, torch.zeros(len(seqs), dtype=torch.long), torch.zeros(1, dtype=torch.long), 1)
    return Examples(rows, padded)


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of logits (B, M, V) against targets (B, M) (-1 = padding)."""
    m = targets.shape[1]
    return torch.nn.functional.cross_entropy(logits[:, :m].float().flatten(0, 1), targets.flatten(), ignore_index=-1)


@torch.no_grad()
def lm_scores(logits: torch.Tensor, targets: torch.Tensor) -> tuple[float, int, int]:
    """(summed loss, correct tokens, scored tokens) of a batch under teacher forcing."""
    m = targets.shape[1]
    flat, tgt = logits[:, :m].float().flatten(0, 1), targets.flatten()
    keep = tgt >= 0
    loss = torch.nn.functional.cross_entropy(flat[keep], tgt[keep], reduction="sum")
    correct = (flat[keep].argmax(-1) == tgt[keep]).sum()
    return float(loss), int(correct), int(keep.sum())


@torch.no_grad()
def lm_metrics(bound, data: Examples, batch_size: int) -> dict:
    """Token accuracy and mean loss per target token of a bound prompt under teacher forcing."""
    total, correct, count, order = 0.0, 0, 0, data.rows.by_length()
    for start in range(0, len(data), batch_size):
        part = data.subset(order[start:start + batch_size])
        loss, c, n = lm_scores(bound.logits(part.rows), part.targets)
        total, correct, count = total + loss, correct + c, count + n
    return {"token_accuracy": correct / max(count, 1), "lm_loss": total / max(count, 1), "n_scored": len(data)}
