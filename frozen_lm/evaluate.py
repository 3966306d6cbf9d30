"""The one evaluator: accuracy (classification) or P@1 (facts) of any prompt on any split.

A prompt is anything with `bind(task) -> Bound`: every result (a found trigger, a soft prompt, a
prefix, a subspace-trained model) and `DiscretePrompt`. `Bound` is the prompt applied to a task:
the task it is scored with (a prefix, say, drops the template's [T] slots) and the logits at [P].
`evaluate` is the public entry point; `score` is its loop, which search, tuning and the d90 sweep
call on already-encoded splits. A saved result of another model is carried there as text when it
is a discrete prompt (frozen_lm.transfer), and its metrics say what became of its tokens.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch

from frozen_lm import data as data_mod
from frozen_lm import distributed
from frozen_lm import transfer as transfer_mod
from frozen_lm.encode import Rows
from frozen_lm.errors import UserError
from frozen_lm.task import Encoded, PromptTask

logger = logging.getLogger(__name__)


class Bound:
    """A prompt applied to a task: `logits(rows)` at [P] (R, M, V), `log_probs(rows)` (B, C) or (B, V).

    Subclasses override `logits`, and `log_probs` when their scores are not read from logits (a
    classification head); `data` when the prompt adds columns of its own to the rows it scores.
    The base class is the bare template (all [T] slots already filled). transfer: a result carried
    from another model (frozen_lm.transfer) sets it to the metrics' 'transfer' entry.
    """

    transfer: dict | None = None

    def __init__(self, task: PromptTask):
        self.task = task

    def data(self, dataset: data_mod.Dataset) -> data_mod.Dataset:
        """The split as this prompt scores it, before `self.task` encodes it: the split itself; a
        prompt whose template reads columns the data lacks (in-context demonstrations, say) adds them."""
        return dataset

    def logits(self, rows: Rows) -> torch.Tensor:
        return self.task.lm.logits_at(rows.predict_pos, input_ids=rows.input_ids, attention_mask=rows.attention_mask)

    def log_probs(self, rows: Rows) -> torch.Tensor:
        return self.task.log_probs(self.logits(rows), rows)

    def target_scores(self, rows: Rows, kind: str = "vocab"):
        """Target-string tasks: (log-likelihood (B,), exact match (B,), margin (B,)) of the rows."""
        return self.task.example_scores(self.logits(rows), rows, kind)


class TriggerBound(Bound):
    """Trigger token ids written into the [T] slots of every row."""

    def __init__(self, task: PromptTask, trigger_ids: torch.Tensor):
        super().__init__(task)
        self.trigger_ids = trigger_ids.long().to(task.lm.device)

    def logits(self, rows: Rows) -> torch.Tensor:
        return super().logits(rows.set_triggers(self.trigger_ids))


class FunctionBound(Bound):
    """Logits from a function rows -> (R, M, V) (for code that has one at hand)."""

    def __init__(self, task: PromptTask, fn: Callable[[Rows], torch.Tensor]):
        super().__init__(task)
        self.fn = fn

    def logits(self, rows: Rows) -> torch.Tensor:
        return self.fn(rows)


@dataclass
class DiscretePrompt:
    """Token ids for the [T] slots of a template: what search finds and a soft prompt's discrete reading.

    `evaluate(task, data, prompt=p)` writes them into the task's slots; `text` is their decoded text.
    """

    trigger_ids: list[int]
    tokens: list[str]
    text: str

    @classmethod
    def from_ids(cls, tokenizer, ids) -> DiscretePrompt:
        ids = [int(i) for i in ids]
        return cls(ids, [tokenizer.decode([i]) for i in ids], tokenizer.decode(ids))

    @classmethod
    def from_text(cls, task: PromptTask, text: str) -> DiscretePrompt:
        """Tokens of `text` for the task's [T] slots; UserError unless it is one token per slot."""
        n = task.template.n_triggers
        if n == 0:
            raise UserError("a trigger was given, but the template has no [T] slots")
        ids = task.lm.tokenizer(text, add_special_tokens=False).input_ids
        if len(ids) != n:
            pieces = task.lm.tokenizer.convert_ids_to_tokens(ids)
            raise UserError(f"trigger {text!r} is {len(ids)} tokens {pieces}, but the template has {n} [T] slots")
        return cls.from_ids(task.lm.tokenizer, ids)

    def bind(self, task: PromptTask) -> Bound:
        n = task.template.n_triggers
        if n != len(self.trigger_ids):
            raise UserError(f"the prompt has {len(self.trigger_ids)} trigger tokens, but template "
                            f"{task.spec.template!r} has {n} [T] slots")
        return TriggerBound(task, torch.tensor(self.trigger_ids, dtype=torch.long))

    def filled(self, task: PromptTask) -> str:
        """The task's template with the trigger tokens written in (each token's text, trimmed)."""
        tok = task.lm.tokenizer
        return task.template.with_triggers([tok.decode([i]).strip() or tok.convert_ids_to_tokens(i)
                                            for i in self.trigger_ids])


def bind(task: PromptTask, prompt=None) -> Bound:
    """The Bound for a prompt: None (the template as written), trigger text, a function
    rows -> logits, or any object with `bind(task)` (results, DiscretePrompt). A result saved on
    another model than the task's is carried there as text when it is one (frozen_lm.transfer)."""
    if prompt is None:
        n = task.template.n_triggers
        if n:
            raise UserError(f"template {task.spec.template!r} has {n} [T] slots; give a prompt to fill them "
                            "(a result, a DiscretePrompt or trigger text with one token per slot)")
        return Bound(task)
    if isinstance(prompt, str):
        return DiscretePrompt.from_text(task, prompt).bind(task)
    if hasattr(prompt, "bind"):
        if transfer_mod.on_other_model(prompt, task.lm):
            return _carried(task, prompt)
        return prompt.bind(task)
    if callable(prompt):
        return FunctionBound(task, prompt)
    raise UserError(f"prompt must be a result, a DiscretePrompt, trigger text or a function; got {type(prompt).__name__}")


def _carried(task: PromptTask, result) -> Bound:
    """A result of another model on `task`: its kept ids in the slots, or its text written into the
    template (a per-example prompt rebinds itself); `transfer` says what became of its tokens."""
    moved = transfer_mod.carry(result, task)
    if moved is None:
        return result.bind(task)
    if moved.trigger_ids is not None:
        bound = TriggerBound(moved.task, torch.tensor(moved.trigger_ids, dtype=torch.long))
    else:
        bound = moved.rebind(moved.task) if moved.rebind is not None else Bound(moved.task)
    bound.transfer = moved.report
    return bound


@dataclass
class Scores:
    """Sums over the scored examples (float64 log-likelihoods)."""

    n: int = 0
    correct: int = 0
    loglik: float = 0.0  # label log-prob, normalized over the vocabulary (target strings: summed over tokens)
    class_loglik: float = 0.0  # label log-prob, normalized over the classes (facts, targets: = loglik)
    tokens: int = 0  # target strings: the number of target tokens

    def mean(self, kind: str = "vocab") -> float:
        """Mean label log-likelihood ('vocab' or 'classes' normalization)."""
        return (self.class_loglik if kind == "classes" else self.loglik) / max(self.n, 1)


@torch.no_grad()
def score(bound: Bound, rows: Rows, batch_size: int = 32, examples: list | None = None) -> Scores:
    """Correct predictions and label log-likelihoods of a bound prompt over encoded rows, in
    length-sorted batches with their padding trimmed. Under torch.distributed each process scores
    its share of the examples and the sums are all-reduced (every process must call this).
    examples: a list that receives one (example indices (b,), correct (b,), predicted (b,) or None,
    label (b,) or None) per batch (`per_example` assembles them); then every process scores every row."""
    if examples is not None:
        return _score(bound, rows, batch_size, examples)
    out = _score(bound, distributed.shard_rows(rows), batch_size)
    if distributed.world_size() > 1:
        sums = torch.tensor([out.correct, out.loglik, out.class_loglik, out.tokens], dtype=torch.float64)
        correct, out.loglik, out.class_loglik, tokens = distributed.all_reduce_sum(sums).tolist()
        out.correct, out.tokens = round(correct), round(tokens)
    out.n = len(rows)
    return out


def _score(bound: Bound, rows: Rows, batch_size: int, examples: list | None = None) -> Scores:
    task = bound.task
    out = Scores(n=len(rows))
    order = rows.by_length() if examples is not None else None  # the examples of each batch, in batches()' order
    for n, batch in enumerate(rows.to(task.lm.device).batches(batch_size)):
        if task.is_target:
            ll, hit, _ = bound.target_scores(batch)
            if examples is not None:
                examples.append((order[n * batch_size:(n + 1) * batch_size], hit.cpu(), None, None))
            out.correct += int(hit.sum())
            out.loglik += float(ll.double().sum())
            out.class_loglik = out.loglik
            out.tokens += int((batch.targets >= 0).sum())
            continue
        lp = bound.log_probs(batch)
        target = lp.gather(1, batch.labels[:, None]).squeeze(1).double()
        out.correct += int((lp.argmax(-1) == batch.labels).sum())
        out.loglik += float(target.sum())
        if examples is not None:
            predicted = lp.argmax(-1).cpu()
            examples.append((order[n * batch_size:(n + 1) * batch_size], predicted == batch.labels.cpu(), predicted,
                             batch.labels.cpu()))
        if task.is_facts:
            out.class_loglik += float(target.sum())
        else:
            out.class_loglik += float(torch.log_softmax(lp, -1).gather(1, batch.labels[:, None]).double().sum())
    return out


def per_example(parts: list, n: int) -> dict:
    """What `score(..., examples=parts)` collected, in the rows' order: {'correct': [bool] (n,),
    'predicted': the predicted class index (classification) or token id (facts), 'label': the
    right one; both None for target strings}."""
    correct, predicted, label = [False] * n, [None] * n, [None] * n
    for index, hit, pred, lab in parts:
        for j, i in enumerate(index.tolist()):
            correct[i] = bool(hit[j])
            if pred is not None:
                predicted[i], label[i] = int(pred[j]), int(lab[j])
    kind = parts and parts[0][2] is not None
    return {"correct": correct, "predicted": predicted if kind else None, "label": label if kind else None}


def evaluate(task: PromptTask, data, prompt=None, *, batch_size: int = 32, examples: bool = False) -> dict:
    """Score a prompt on a split: {metric: value, 'n_scored', 'n_skipped'} (+ 'n_multi_token' for facts;
    target strings: 'exact_match', the share of examples whose target greedy decoding reproduces, and
    'loss', the mean cross-entropy per target token). A result made on another model adds 'transfer':
    {source_model, target_model, drift} (frozen_lm.transfer).

    data: a path, `demo:...`/`hf:...` source, a list of dicts, a datasets.Dataset, or an `Encoded`
    split (scored as it is: the prompt's `Bound.data` is not applied to it). prompt: None scores the
    template as written (it must have no [T] slots); else any result, a `DiscretePrompt`, trigger
    text, or a function rows -> logits at [P]. examples: also return 'examples', the scored examples
    one by one in the split's order (`per_example`: correct, predicted class, label), from the same pass.
    """
    if batch_size < 1:
        raise UserError(f"batch_size must be at least 1, got {batch_size}")
    bound = bind(task, prompt)
    encoded = data if isinstance(data, Encoded) else bound.task.encode(bound.data(data_mod.load(data)))
    for note in encoded.notes:
        logger.info("%s", note)
    parts = [] if examples else None
    s = score(bound, encoded.rows, batch_size, parts)
    out = {task.metric: s.correct / max(s.n, 1), "n_scored": s.n, "n_skipped": encoded.n_skipped}
    if examples:
        out["examples"] = per_example(parts, s.n)
    if task.is_facts:
        out["n_multi_token"] = encoded.n_multi_token
    if task.is_target:
        out["loss"] = -s.loglik / max(s.tokens, 1)  # mean cross-entropy per target token
    if bound.transfer is not None:
        out["transfer"] = bound.transfer
    return out
