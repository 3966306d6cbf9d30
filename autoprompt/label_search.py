"""Label-word search (AutoPrompt, section 2.2): which vocabulary tokens best name each class.

Train a logistic classifier on the features the model's output layer sees at [P], then score
every vocabulary token w for class c by <classifier weight of c, output embedding of w>; the top
tokens per class are the proposed label words.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from autoprompt.candidates import allowed_tokens
from frozen_lm.encode import encode_rows
from frozen_lm.errors import UserError

logger = logging.getLogger(__name__)


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
    return list(clf.classes_), scores, float(clf.score(scaler.transform(features), labels))


def top_words(task, scores: torch.Tensor, classes: list[str], k: int, no_capitalized: bool = False,
              ascii_only: bool = False) -> dict[str, list[tuple[str, float]]]:
    """Top-k allowed tokens per class, as (word, score)."""
    tok = task.lm.tokenizer
    allowed = allowed_tokens(tok, scores.shape[1], (), no_capitalized, ascii_only)
    if not task.lm.is_masked and task.template.predict_space:  # the word must start a new word at [P]
        texts = tok.batch_decode([[i] for i in range(scores.shape[1])])
        allowed &= torch.tensor([t.startswith(" ") and t.strip().isalpha() for t in texts])
    masked = scores.masked_fill(~allowed[None], float("-inf"))
    best = masked.topk(k, dim=1)
    return {c: [(tok.decode([int(i)]).strip(), float(v)) for v, i in zip(best.values[n], best.indices[n])]
            for n, c in enumerate(classes)}
