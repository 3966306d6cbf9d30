"""Label-word search (AutoPrompt, section 2.2): which vocabulary tokens best name each class.

Train a logistic classifier on the features the model's output layer sees at [P], then score
every vocabulary token w for class c by <classifier weight of c, output embedding of w>; the top
tokens per class are the proposed label words.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from autoprompt.candidates import allowed_tokens
from frozen_lm import data as data_mod
from frozen_lm.configs import at_least, positive
from frozen_lm.encode import encode_rows
from frozen_lm.errors import UserError
from frozen_lm.evaluate import DiscretePrompt

logger = logging.getLogger(__name__)


@dataclass
class LabelSearchConfig:
    """Options of `autoprompt label-search`."""

    k: int = field(default=10, metadata={"help": "label words to show per class", "flag": "--k"})
    limit: int = field(default=2000, metadata={"help": "at most this many training examples (0 = all)"})
    no_capitalized: bool = field(default=False, metadata={"help": "skip tokens with capital letters", "flag": "--no-capitalized"})
    ascii_only: bool = field(default=False, metadata={"help": "skip tokens that are not printable ASCII", "flag": "--ascii-only"})
    reg: float = field(default=1.0, metadata={"help": "inverse L2 strength of the logistic classifier"})
    seed: int = field(default=0, metadata={"help": "random seed; same seed, same result on CPU"})

    def __post_init__(self):
        at_least(self, 1, "k")
        at_least(self, 0, "limit")
        positive(self, "reg")


@dataclass
class LabelWords:
    """classes: the label values; words: the top-k words per class with their scores;
    train_accuracy: the classifier's accuracy on the examples it was fit on."""

    classes: list[str]
    words: dict[str, list[tuple[str, float]]]
    train_accuracy: float
    n_examples: int
    template: str

    @property
    def label_map(self) -> dict[str, str]:
        """The best word per class, ready for PromptTask(label_map=...) or --label-map."""
        return {c: ws[0][0] for c, ws in self.words.items()}

    def to_dict(self) -> dict:
        return {"classes": self.classes, "words": {c: [w for w, _ in ws] for c, ws in self.words.items()},
                "classifier_train_accuracy": self.train_accuracy, "n_examples": self.n_examples,
                "template": self.template}

    def save(self, path, overwrite: bool = False, data=()) -> Path:
        """Write the best word per class as a label-map JSON file (PromptTask(label_map=FILE) reads it);
        an existing file is refused unless overwrite, and never a data file in `data`."""
        path = check_out_file(path, overwrite, data)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.label_map, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)
        return path


def check_out_file(path, overwrite: bool = False, data=()) -> Path:
    """The file a label map goes to, checked before any work: not a folder, not one of the `data`
    sources (the training data), and not an existing file unless overwrite."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"out={path} is a folder; give a file name, e.g. {path / 'label_map.json'}")
    for source in data:
        if isinstance(source, (str, os.PathLike)) and Path(source).exists() and Path(source).resolve() == path.resolve():
            raise UserError(f"out={path} is the training data; give another file for the label map")
    if path.exists() and not overwrite:
        raise UserError(f"out={path} already exists; give overwrite=True to replace it, or another out=")
    return path


def label_search(task, train, config: LabelSearchConfig | None = None, trigger=None) -> LabelWords:
    """Find label words per class (AutoPrompt section 2.2) for a task whose template has a [P].

    The labels are read from the task's label field; its label map, if any, is ignored. trigger:
    text, ids or a DiscretePrompt for the template's [T] slots (default: 'the' in every slot, or
    the mask token on a masked LM).
    """
    from autoprompt.search import initial_trigger

    config = config or LabelSearchConfig()
    task = task.derive(label_map=None, label_field=task.label_field) if not task.is_facts else task
    data = data_mod.load(train).sample(config.limit or None, config.seed)
    data_mod.check_rows(data, [task.encoder.column(f) for f in task.template.fields] + [task.label_field])
    ids = None
    if task.template.n_triggers:
        if trigger is None:
            ids = initial_trigger(task, "mask" if task.lm.is_masked else "the")
        elif isinstance(trigger, str):
            ids = torch.tensor(DiscretePrompt.from_text(task, trigger).trigger_ids)
        else:
            ids = torch.as_tensor(getattr(trigger, "trigger_ids", trigger), dtype=torch.long)
    feats, labels = predict_features(task, data, ids)
    classes, scores, train_acc = class_token_scores(feats, labels, task.lm.output_embedding_matrix, config.seed,
                                                    config.reg)
    words = top_words(task, scores, classes, config.k, config.no_capitalized, config.ascii_only)
    return LabelWords(classes, words, train_acc, len(data), task.spec.template)


@torch.no_grad()
def predict_features(task, data, trigger: torch.Tensor | None, batch_size: int = 32) -> tuple[np.ndarray, list[str]]:
    """(N, H') output-layer features at [P] for every example, and its label as a string."""
    lm, enc = task.lm, task.encoder
    rows = encode_rows(enc, data.rows, [], None, [[enc.placeholder]] * len(data.rows), pad_id=lm.pad_id)
    if trigger is not None:
        rows = rows.set_triggers(trigger)
    feats = []
    for start in range(0, len(rows), batch_size):
        batch = rows.subset(slice(start, start + batch_size)).to(lm.device)
        hidden = lm.hidden_at(batch.predict_pos[:, :1], input_ids=batch.input_ids, attention_mask=batch.attention_mask)
        feats.append(lm.head_features(hidden)[:, 0].float().cpu())
    labels = [str(r[task.label_field]) for r in data.rows]
    return torch.cat(feats).numpy(), labels


def class_token_scores(features: np.ndarray, labels: list[str], out_emb: torch.Tensor, seed: int,
                       reg: float = 1.0) -> tuple[list[str], torch.Tensor, float]:
    """Fit the classifier; returns (classes, (C, V) token scores, training accuracy)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    classes = sorted(set(labels))
    if len(classes) < 2:
        raise UserError(f"label search needs at least two classes in the training data, found {classes}")
    scaler = StandardScaler().fit(features)
    clf = LogisticRegression(C=reg, max_iter=2000, random_state=seed).fit(scaler.transform(features), labels)
    coef = clf.coef_ / scaler.scale_[None]  # back to the raw feature space
    if len(classes) == 2:  # sklearn keeps one row for the positive class
        coef = np.stack([-coef[0], coef[0]])
    scores = torch.as_tensor(coef, dtype=torch.float32) @ out_emb.detach().float().cpu().T
    return [str(c) for c in clf.classes_], scores, float(clf.score(scaler.transform(features), labels))


def word_start_tokens(tokenizer, vocab_size: int) -> torch.Tensor:
    """(V,) bool: alphabetic tokens that are exactly what a word after a space becomes (BPE 'Ġgreat',
    SentencePiece '▁great', a word-level 'great'), so that they can be read at a [P] after a space."""
    texts = [t.strip() for t in tokenizer.batch_decode([[i] for i in range(vocab_size)])]
    again = tokenizer([" " + t for t in texts], add_special_tokens=False).input_ids
    return torch.tensor([t.isalpha() and list(ids) == [i] for i, (t, ids) in enumerate(zip(texts, again))])


def top_words(task, scores: torch.Tensor, classes: list[str], k: int, no_capitalized: bool = False,
              ascii_only: bool = False) -> dict[str, list[tuple[str, float]]]:
    """Top-k allowed tokens per class, as (word, score)."""
    tok = task.lm.tokenizer
    allowed = allowed_tokens(tok, scores.shape[1], (), no_capitalized, ascii_only)
    if not task.lm.is_masked and task.template.predict_space:  # the word must start a new word at [P]
        allowed &= word_start_tokens(tok, scores.shape[1])
    n = int(allowed.sum())
    if n == 0:
        raise UserError("no vocabulary token can be a label word here (after the filters); drop "
                        "LabelSearchConfig.no_capitalized or LabelSearchConfig.ascii_only")
    masked = scores.masked_fill(~allowed[None], float("-inf"))
    best = masked.topk(min(k, n), dim=1)
    return {c: [(tok.decode([int(i)]).strip(), float(v)) for v, i in zip(best.values[n], best.indices[n])]
            for n, c in enumerate(classes)}
