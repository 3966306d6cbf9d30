"""Label words -> token ids, and scoring of the logits read at [P].

Classification: each class has one or more label words; a word may be several tokens. A word's
log-probability is the sum of its tokens' log-probabilities (teacher-forced for causal LMs, one
mask per token for masked LMs); a class's log-probability is the log of the total probability of
its words. Facts: the label is any vocabulary token, and P@1 is the argmax over the vocabulary.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from frozen_lm.errors import UserError


def parse_label_map(spec) -> dict[str, list[str]] | None:
    """A label map from a dict, a JSON object string, a .json file, or 'a=w1|w2,b=w3'.

    Returns {label value as string: [label words]}; None when spec is None or empty.
    """
    if spec is None or spec == {}:
        return None
    if isinstance(spec, str):
        text = spec.strip()
        if not text:
            raise UserError("the label map is empty; give label words ('0=terrible,1=great'), or leave PromptTask.label_map "
                            "out for fact retrieval")
        if text.endswith(".json") and not text.startswith("{"):
            path = Path(text)
            if not path.is_file():
                raise UserError(f"label map file {text} does not exist")
            from frozen_lm.data import read_utf8

            text = read_utf8(path).strip()
        if text.startswith("["):
            raise UserError(f"label map {text!r} is a list; name each class too, e.g. '0=bad,1=good' or "
                            "'{\"0\": \"bad\", \"1\": \"good\"}'")
        if text.startswith("{"):
            try:
                spec = json.loads(text, object_pairs_hook=_no_duplicates)
            except json.JSONDecodeError as e:
                raise UserError(f"label map is not valid JSON ({e.msg} at char {e.pos}): {text!r}") from e
        else:
            spec = _parse_pairs(text)
    if not isinstance(spec, dict) or not spec:
        raise UserError(f"label map must map labels to words, e.g. '{{\"0\": \"terrible\", \"1\": \"great\"}}', got {spec!r}")
    out = {}
    for label, words in spec.items():
        if words is None or isinstance(words, (bool, int, float, dict)):
            raise UserError(f"label map: class {label!r} maps to {json.dumps(words)}, not a word; give a word in quotes "
                            "(or a list of words), e.g. {\"1\": \"great\"}")
        words = [words] if isinstance(words, str) else list(words)
        if not words or any(not isinstance(w, str) or not w.strip() for w in words):
            raise UserError(f"label map: class {label!r} has an empty label word; give each class a non-empty word")
        out[str(label)] = [w.strip() for w in words]
    return out


def _no_duplicates(pairs: list[tuple]) -> dict:
    out = {}
    for key, value in pairs:
        if key in out:
            raise UserError(f"label map: class {key!r} is given twice; give all its words once, as a list or 'a|b'")
        out[key] = value
    return out


def _parse_pairs(text: str) -> dict[str, list[str]]:
    pairs = []
    for pair in text.split(","):
        if "=" not in pair:
            raise UserError(f"label map entry {pair!r} is not LABEL=WORD; use '0=terrible,1=great' or JSON")
        label, words = pair.split("=", 1)
        if not label.strip():
            raise UserError(f"label map entry {pair.strip()!r} has no label before '='; write LABEL=WORD, e.g. 0=terrible")
        pairs.append((label.strip(), words.split("|")))
    return _no_duplicates(pairs)


def tokenize_word(tokenizer, word: str, space: bool) -> list[int]:
    """Token ids of a label word as it appears at [P] (with a leading space when the template has one)."""
    ids = tokenizer((" " if space else "") + word, add_special_tokens=False).input_ids
    if not ids:
        raise UserError(f"label word {word!r} has no tokens in this tokenizer; choose another word")
    unk = getattr(tokenizer, "unk_token_id", None)
    if unk is not None and unk in ids and word != getattr(tokenizer, "unk_token", None):
        raise UserError(f"label word {word!r} is unknown to this tokenizer (it becomes {tokenizer.unk_token}); choose another word")
    return list(ids)


@dataclass
class Verbalizer:
    """Classes and their label words, tokenized for one tokenizer and template.

    word_ids: one token-id list per word (flat over classes); word_class (W,) its class index;
    targets (W, M): the word tokens padded with -1.
    """

    classes: list[str]
    words: list[list[str]]
    word_ids: list[list[int]]
    word_class: torch.Tensor

    @classmethod
    def build(cls, label_map: dict[str, list[str]], tokenizer, space: bool) -> Verbalizer:
        classes = list(label_map)
        words, ids, owner = [], [], []
        for c, label in enumerate(classes):
            words.append(label_map[label])
            for w in label_map[label]:
                ids.append(tokenize_word(tokenizer, w, space))
                owner.append(c)
        seen = {}
        for w_ids, c in zip(ids, owner):
            if tuple(w_ids) in seen and seen[tuple(w_ids)] != c:
                raise UserError(f"label words of classes {classes[seen[tuple(w_ids)]]!r} and {classes[c]!r} tokenize the same")
            seen[tuple(w_ids)] = c
        return cls(classes, words, ids, torch.tensor(owner))

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def single_token(self) -> bool:
        return all(len(w) == 1 for w in self.word_ids)

    @property
    def max_len(self) -> int:
        return max(len(w) for w in self.word_ids)

    @property
    def targets(self) -> torch.Tensor:
        out = torch.full((len(self.word_ids), self.max_len), -1, dtype=torch.long)
        for i, w in enumerate(self.word_ids):
            out[i, : len(w)] = torch.tensor(w)
        return out

    @property
    def token_ids(self) -> list[int]:
        """Every token that appears in a label word."""
        return sorted({t for w in self.word_ids for t in w})

    def class_index(self, label, where: str) -> int:
        key = str(label)
        if key not in self.classes:
            raise UserError(f"{where}: label {key!r} is not in the label map (labels: {', '.join(self.classes)}); add it to PromptTask.label_map")
        return self.classes.index(key)


def word_log_probs(logits: torch.Tensor, targets: torch.Tensor, row_of: torch.Tensor) -> torch.Tensor:
    """Log-probability of each label word for each example.

    logits (R, M, V) at the predict positions of each row; targets (W, M) word tokens, -1 padded;
    row_of (B, W) the row that scores word w for example b -> (B, W).
    """
    lse = torch.logsumexp(logits.float(), dim=-1)  # (R, M)
    m = targets.shape[1]
    index = targets.clamp(min=0).T.unsqueeze(0).expand(logits.shape[0], m, -1)  # (R, M, W)
    tok = logits[:, :m].float().gather(2, index) - lse[:, :m, None]
    per_row = (tok * (targets >= 0).T).sum(1)  # (R, W)
    return per_row.gather(0, row_of)


def class_log_probs(word_lp: torch.Tensor, word_class: torch.Tensor, n_classes: int) -> torch.Tensor:
    """(B, W) word log-probs -> (B, C) class log-probs (log of the summed probability of its words)."""
    member = word_class.to(word_lp.device)[None, :] == torch.arange(n_classes, device=word_lp.device)[:, None]
    masked = word_lp[:, None, :].masked_fill(~member[None], float("-inf"))
    return torch.logsumexp(masked, dim=-1)
