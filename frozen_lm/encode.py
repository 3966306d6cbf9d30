"""Examples + template -> padded token rows with the positions of every [T] slot and of [P].

Each example becomes the same number k of rows, stored example-major (rows b*k .. b*k+k-1):
k = 1 when every label word is one token (all words are read from one distribution at [P]);
for multi-token words on a causal LM, one teacher-forced row per word; on a masked LM, one row per
distinct word length, with that many mask tokens at [P].
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

import torch

from frozen_lm.errors import UserError
from frozen_lm.templates import Template, check_for_model
from frozen_lm.verbalizer import Verbalizer


@dataclass
class Rows:
    """Model-ready rows for B examples.

    input_ids, attention_mask (R, L) right-padded; trigger_pos (R, S) the [T] slots; predict_pos
    (R, M) where logits are read; labels (B,) class index, or target token id for facts; word_row
    (W,) which of an example's k rows scores word w (facts: W = 1); targets (B, M) the target
    string's tokens, -1 padded (target-string tasks only: predict_pos reads each of them).
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    trigger_pos: torch.Tensor
    predict_pos: torch.Tensor
    labels: torch.Tensor
    word_row: torch.Tensor
    k: int
    targets: torch.Tensor | None = None

    @property
    def n_examples(self) -> int:
        return self.labels.shape[0]

    def __len__(self) -> int:
        return self.n_examples

    @property
    def row_of(self) -> torch.Tensor:
        """(B, W) the row that scores word w of example b."""
        starts = torch.arange(self.n_examples, device=self.labels.device)[:, None] * self.k
        return starts + self.word_row.to(self.labels.device)[None]

    def subset(self, examples: torch.Tensor | list[int] | slice) -> Rows:
        """The rows of some examples (index tensor, list or slice), re-indexed, with the padding
        trimmed to their longest row (a batch of short rows costs short passes)."""
        ex = torch.arange(self.n_examples)[examples] if isinstance(examples, slice) else torch.as_tensor(examples)
        ex = ex.to(self.labels.device)
        rows = (ex[:, None] * self.k + torch.arange(self.k, device=ex.device)[None]).reshape(-1)
        mask = self.attention_mask[rows]
        width = int(mask.sum(1).max()) if rows.numel() else mask.shape[1]
        return Rows(
            self.input_ids[rows, :width], mask[:, :width], self.trigger_pos[rows], self.predict_pos[rows],
            self.labels[ex], self.word_row, self.k, None if self.targets is None else self.targets[ex],
        )

    def by_length(self) -> torch.Tensor:
        """(B,) example indices, shortest first (stable): batches of these pad little."""
        length = self.attention_mask.sum(1).view(self.n_examples, self.k).amax(1)
        return torch.sort(length.cpu(), stable=True).indices

    def batches(self, batch_size: int) -> Iterator[Rows]:
        """Batches of `batch_size` examples in length order, padding trimmed: for sums over all
        examples, where the order does not matter."""
        order = self.by_length()
        for start in range(0, self.n_examples, batch_size):
            yield self.subset(order[start:start + batch_size])

    def to(self, device) -> Rows:
        return Rows(*(getattr(self, f).to(device) for f in
                      ("input_ids", "attention_mask", "trigger_pos", "predict_pos", "labels", "word_row")), self.k,
                    None if self.targets is None else self.targets.to(device))

    def with_triggers(self, trigger_ids: torch.Tensor) -> torch.Tensor:
        """Input ids with the slots set to trigger_ids (S,) -> (R, L), or (N, S) -> (N, R, L)."""
        if trigger_ids.dim() == 1:
            return self.input_ids.scatter(1, self.trigger_pos, trigger_ids[None].expand(self.input_ids.shape[0], -1))
        n = trigger_ids.shape[0]
        ids = self.input_ids[None].expand(n, -1, -1)
        pos = self.trigger_pos[None].expand(n, -1, -1)
        return ids.scatter(2, pos, trigger_ids[:, None, :].expand(-1, ids.shape[1], -1))

    def set_triggers(self, trigger_ids: torch.Tensor) -> Rows:
        return replace(self, input_ids=self.with_triggers(trigger_ids))


def special_tokens_around(tokenizer) -> tuple[list[int], list[int]]:
    """The special tokens the tokenizer puts before and after a text (e.g. [CLS] / [SEP], or BOS)."""
    inner = tokenizer("hello", add_special_tokens=False).input_ids
    outer = tokenizer("hello", add_special_tokens=True).input_ids
    for i in range(len(outer) - len(inner) + 1):
        if outer[i: i + len(inner)] == inner:
            return outer[:i], outer[i + len(inner):]
    return [], []


class Encoder:
    """Tokenizes examples through a template for one model. Tokenized text is cached."""

    def __init__(self, template: Template, tokenizer, is_masked: bool, field_map: dict[str, str] | None = None,
                 max_length: int = 512):
        check_for_model(template, is_masked)
        self.template, self.tok, self.is_masked = template, tokenizer, is_masked
        self.field_map = field_map or {}
        self.max_length = max_length
        specials = set(getattr(tokenizer, "all_special_tokens", []))
        explicit = any(s in template.text for s in specials if s)
        before, after = ([], []) if explicit else special_tokens_around(tokenizer)
        self.before, self.after = before, (after if is_masked else [])
        if is_masked and tokenizer.mask_token_id is None:
            raise UserError("this masked LM's tokenizer has no mask token")
        self.placeholder = tokenizer.mask_token_id if is_masked else _fallback_id(tokenizer)
        self._text_cache: dict[str, list[int]] = {}

    def column(self, field: str) -> str:
        return self.field_map.get(field, field)

    def _ids(self, text: str) -> list[int]:
        if text not in self._text_cache:
            self._text_cache[text] = list(self.tok(text, add_special_tokens=False).input_ids)
        return self._text_cache[text]

    def encode_one(self, example: dict, fill: list[int], reserve: int | None = None) -> tuple[list[int], list[int], list[int]]:
        """(ids, trigger positions, predict positions) for one example.

        fill: for masked LMs, the number of mask tokens is len(fill); for causal LMs the sequence is
        teacher-forced with fill[:-1] and the logits at positions p-1 .. p+len(fill)-2 predict fill.
        reserve: room kept for the fill when a long field is cut (default len(fill)); the rows of one
        example's label words all reserve the longest word's, so every word is scored on the same text.
        """
        pieces = self._pieces(example)
        self._truncate(pieces, extra=max(len(fill), reserve or 0) + len(self.before) + len(self.after))
        ids, trig, pred = list(self.before), [], []
        for kind, tokens in pieces:
            if kind == "trigger":
                trig.append(len(ids))
                ids.append(self.placeholder)
            elif kind == "predict":
                if self.is_masked:
                    pred = list(range(len(ids), len(ids) + len(fill)))
                    ids.extend([self.tok.mask_token_id] * len(fill))
                else:
                    if not ids:
                        raise UserError("a causal LM needs some text before [P]; the template starts with it")
                    pred = list(range(len(ids) - 1, len(ids) - 1 + len(fill)))
                    ids.extend(fill[:-1])
                    break
            else:
                ids.extend(tokens)
        return ids + self.after, trig, pred

    def _pieces(self, example: dict) -> list[tuple[str, list[int]]]:
        out = []
        for seg in self.template.segments:
            if seg.kind == "field":
                value = str(example[self.column(seg.value)]).strip()
                out.append(("field", self._ids((" " if seg.space else "") + value)))
            elif seg.kind == "text":
                out.append(("text", self._ids(seg.value)))
            else:
                out.append((seg.kind, []))
        return out

    def _truncate(self, pieces, extra: int) -> None:
        """Cut the longest field from its end until the row fits max_length."""
        while (over := sum(len(t) + (k == "trigger") for k, t in pieces) + extra - self.max_length) > 0:
            fields = [i for i, (k, t) in enumerate(pieces) if k == "field" and t]
            if not fields:
                raise UserError(f"template text alone is longer than the model's {self.max_length} tokens")
            i = max(fields, key=lambda j: len(pieces[j][1]))
            pieces[i] = ("field", pieces[i][1][: max(0, len(pieces[i][1]) - over)])


def _fallback_id(tokenizer) -> int:
    ids = tokenizer(" the", add_special_tokens=False).input_ids
    return ids[-1] if ids else 0


def encode_rows(encoder: Encoder, examples: list[dict], labels: list[int],
                verbalizer: Verbalizer | None, targets: list[list[int]] | None = None, pad_id: int = 0,
                whole_targets: bool = False) -> Rows:
    """Encode B examples into Rows.

    Classification: give the verbalizer and class-index labels. Facts: verbalizer None and
    targets[b] the token ids of example b's answer (its first token is scored). Target strings
    (whole_targets): every token of targets[b] is teacher-forced and read (Rows.targets).
    """
    fills, word_row, k = _plan(encoder, verbalizer)
    longest = max((len(f) for f in fills), default=0) if verbalizer is not None else 0
    seqs = []
    for b, ex in enumerate(examples):
        for fill in (fills if verbalizer is not None else [targets[b] if whole_targets else targets[b][:1]]):
            seqs.append(encoder.encode_one(ex, fill, longest))
    lab = torch.tensor(labels if verbalizer is not None else [t[0] for t in targets], dtype=torch.long)
    rows = _pad(seqs, pad_id, lab, torch.tensor(word_row, dtype=torch.long), k)
    if whole_targets:
        padded = torch.full((len(targets), rows.predict_pos.shape[1]), -1, dtype=torch.long)
        for b, t in enumerate(targets):
            padded[b, : len(t)] = torch.tensor(t, dtype=torch.long)
        rows = replace(rows, targets=padded)
    return rows


def _plan(encoder: Encoder, verbalizer: Verbalizer | None) -> tuple[list[list[int]], list[int], int]:
    """The [P] fill of each row of an example, which row scores each word, and k."""
    if verbalizer is None or verbalizer.single_token:
        w = 1 if verbalizer is None else len(verbalizer.word_ids)
        return [[encoder.placeholder]], [0] * w, 1
    if encoder.is_masked:
        lengths = sorted({len(w) for w in verbalizer.word_ids})
        return [[0] * n for n in lengths], [lengths.index(len(w)) for w in verbalizer.word_ids], len(lengths)
    words = verbalizer.word_ids
    return [list(w) for w in words], list(range(len(words))), len(words)


def _pad(seqs, pad_id, labels, word_row, k) -> Rows:
    length = max(len(s[0]) for s in seqs)
    n_trig = max(len(s[1]) for s in seqs)
    m = max(len(s[2]) for s in seqs)
    ids = torch.full((len(seqs), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), length), dtype=torch.long)
    trig = torch.zeros((len(seqs), n_trig), dtype=torch.long)
    pred = torch.zeros((len(seqs), m), dtype=torch.long)
    for r, (s, t, p) in enumerate(seqs):
        ids[r, : len(s)] = torch.tensor(s)
        mask[r, : len(s)] = 1
        trig[r, : len(t)] = torch.tensor(t, dtype=torch.long)
        pred[r] = torch.tensor(p + [p[-1]] * (m - len(p)))
    return Rows(ids, mask, trig, pred, labels, word_row, k)
