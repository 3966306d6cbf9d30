"""A prompt task: template + label words (or facts) for one model, and how to score it.

Every method uses the same `PromptTask`, so a discrete prompt, a soft prompt and a subspace-trained
model are encoded and scored the same way. A task is immutable: methods that need a different
template (prefix tuning drops the [T] slots; prompt tuning may prepend virtual tokens) derive a new
task with `derive(...)`. `spec` is what artifacts store, and `PromptTask.from_spec` rebuilds it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, fields, replace

import torch

from frozen_lm import data as data_mod
from frozen_lm.encode import Encoder, Rows, encode_rows
from frozen_lm.errors import UserError
from frozen_lm.model import FrozenLM
from frozen_lm.templates import Template, check_fields
from frozen_lm.verbalizer import Verbalizer, class_log_probs, parse_label_map, word_log_probs

logger = logging.getLogger(__name__)
MAX_LENGTH = 512  # longest row, in tokens, before the template's longest field is cut


@dataclass(frozen=True)
class TaskSpec:
    """Everything that defines a task apart from the model and the data (saved in every artifact)."""

    template: str
    label_map: dict[str, list[str]] | None = None  # None: facts (the label is the answer token)
    label_field: str = "label"
    text_fields: str | None = None
    multi_token: str = "skip"
    reserved_positions: int = 0  # positions kept free for a prefix (prefix tuning)
    target: str | None = None  # a target string after [P], the same for every example
    target_field: str | None = None  # or the data column holding each example's target string
    chat: bool = False  # the template is a user message, rendered with the model's chat template

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TaskSpec:
        """From a saved dict; unknown keys are ignored, a label map given as text is parsed."""
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in d.items() if k in names}
        if "template" not in values or not isinstance(values["template"], str):
            raise UserError("the saved task has no template; the artifact's config.json is damaged")
        values["label_map"] = parse_label_map(values.get("label_map"))
        return cls(**values)


@dataclass
class Encoded:
    """A split encoded for the model: rows of the scored examples and what was skipped."""

    rows: Rows
    n_skipped: int = 0
    n_multi_token: int = 0
    notes: list[str] = field(default_factory=list)


class PromptTask:
    """Template + label words for one model; encodes data and scores logits read at [P].

    template: `{field}` data fields, `[T]` prompt slots, one `[P]` (LAMA's `[X] ... [Y]` works too).
    label_map: {label: word or [words]}, a JSON string, a .json file or '0=terrible,1=great'; None
    for facts (the label column holds the answer word; scored as P@1 over the vocabulary).
    label_field: the label column (default: 'label', or 'obj_label' for facts).
    text_fields: 'field=column,...' when template fields and data columns are named differently.
    multi_token: facts whose answer is several tokens are skipped ('skip') or scored by their first
    token ('first'). reserved_positions: model positions left free for a prefix.
    target / target_field: a target string (any length) that the model should produce after the
    prompt (at [P], or right after the template when it has no [P]), instead of label words; scored
    by exact match (causal LMs: greedy decoding reproduces it; masked LMs: one mask per target token,
    each filled right) and the mean cross-entropy of its tokens. chat: the template is a user message; the model's chat
    template renders it and the target is the assistant's reply ([P] goes after the rendered turn).
    """

    def __init__(self, lm: FrozenLM, template: str, label_map=None, *, label_field: str | None = None,
                 text_fields: str | None = None, multi_token: str = "skip", reserved_positions: int = 0,
                 target: str | None = None, target_field: str | None = None, chat: bool = False):
        labels = parse_label_map(label_map)
        if multi_token not in ("skip", "first"):
            raise UserError(f"multi_token must be 'skip' or 'first', got {multi_token!r}")
        if reserved_positions < 0:
            raise UserError(f"reserved_positions must be 0 or more, got {reserved_positions}")
        _check_target(lm, labels, target, target_field)
        self.spec = TaskSpec(template, labels, label_field or ("label" if labels else "obj_label"), text_fields,
                             multi_token, reserved_positions, target, target_field, chat)
        self.lm = lm
        if chat:
            template_text = chat_template(lm.tokenizer, template)
        elif self.is_target and "[P]" not in template and "[Y]" not in template:
            template_text = template.rstrip() + "[P]"  # the target follows the prompt directly (as nanoGCG)
        else:
            template_text = template
        self.template = Template.parse(template_text)
        self.field_map = data_mod.parse_field_map(text_fields, self.template.fields)
        limit = getattr(lm.config, "max_position_embeddings", None) or MAX_LENGTH
        max_length = min(limit, MAX_LENGTH)
        if reserved_positions and max_length + reserved_positions > limit:
            max_length = limit - reserved_positions
        if max_length < 1:
            raise UserError(f"{reserved_positions} reserved prefix positions leave no room for text: the model has "
                            f"{limit} positions; use a shorter prefix")
        self.encoder = Encoder(self.template, lm.tokenizer, lm.is_masked, self.field_map, max_length=max_length)
        self.verbalizer = Verbalizer.build(labels, lm.tokenizer, self.template.predict_space) if labels else None

    @classmethod
    def from_spec(cls, lm: FrozenLM, spec: TaskSpec) -> PromptTask:
        return cls(lm, spec.template, spec.label_map, label_field=spec.label_field, text_fields=spec.text_fields,
                   multi_token=spec.multi_token, reserved_positions=spec.reserved_positions, target=spec.target,
                   target_field=spec.target_field, chat=spec.chat)

    def derive(self, **changes) -> PromptTask:
        """A new task on the same model with some spec fields changed (this one is left as it is)."""
        return PromptTask.from_spec(self.lm, replace(self.spec, **changes))

    def __repr__(self) -> str:
        labels = json.dumps(self.spec.label_map) if self.spec.label_map else "facts"
        return f"PromptTask({self.lm.name!r}, {self.spec.template!r}, {labels})"

    @property
    def label_field(self) -> str:
        return self.spec.label_field

    @property
    def multi_token(self) -> str:
        return self.spec.multi_token

    @property
    def is_target(self) -> bool:
        """A target-string task (target or target_field)."""
        return self.spec.target is not None or self.spec.target_field is not None

    @property
    def is_facts(self) -> bool:
        return self.verbalizer is None and not self.is_target

    @property
    def metric(self) -> str:
        return "exact_match" if self.is_target else "p_at_1" if self.is_facts else "accuracy"

    def default_data(self):
        """The data of a task that needs none: a fixed target and no {field} (one empty example)."""
        if self.spec.target is not None and not self.template.fields:
            return [{}]
        raise UserError("give training data (train=): the template has data fields or the task has no fixed target")

    # ------------------------------------------------------------ encoding
    def encode(self, data, initial_trigger: list[int] | torch.Tensor | None = None) -> Encoded:
        """Encode a split (any source `frozen_lm.data.load` takes); UserError (naming file:line) for
        missing fields or unknown labels."""
        data = data_mod.load(data)
        columns = [self.encoder.column(f) for f in self.template.fields]
        if not data.rows:
            raise UserError(f"{data.name} is empty")
        check_fields(self.template, _all_columns(data), data.name, self.encoder.column)
        if self.is_target:
            data_mod.check_rows(data, columns + ([self.spec.target_field] if self.spec.target_field else []))
            return self._encode_targets(data, initial_trigger)
        data_mod.check_rows(data, columns + [self.label_field])
        if self.is_facts:
            return self._encode_facts(data, initial_trigger)
        labels = [self.verbalizer.class_index(r[self.label_field], data.where(i)) for i, r in enumerate(data.rows)]
        rows = encode_rows(self.encoder, data.rows, labels, self.verbalizer, pad_id=self.lm.pad_id)
        return Encoded(self._triggers(rows, initial_trigger))

    def _encode_facts(self, data, initial_trigger) -> Encoded:
        keep, targets, multi, unknown = [], [], 0, 0
        unk = self.lm.tokenizer.unk_token_id
        for i, row in enumerate(data.rows):
            ids = self.lm.tokenizer((" " if self.template.predict_space else "") + str(row[self.label_field]).strip(),
                                    add_special_tokens=False).input_ids
            if unk is not None and unk in ids and self.lm.tokenizer.unk_token not in str(row[self.label_field]):
                unknown += 1  # the tokenizer cannot write the answer (an emoji, say): no token could be right
                continue
            multi += len(ids) > 1
            if len(ids) == 1 or (ids and self.multi_token == "first"):
                keep.append(i)
                targets.append(list(ids))
        skipped = len(data.rows) - len(keep)
        notes = [f"{multi} of {len(data.rows)} answers are several tokens: "
                 + ("skipped" if self.multi_token == "skip" else "scored by their first token")] if multi else []
        if unknown:
            notes.append(f"{unknown} of {len(data.rows)} answers are unknown to the tokenizer ({self.lm.tokenizer.unk_token}): "
                         "skipped")
        if not keep:
            why = "several tokens" if multi else "unknown to the tokenizer"
            raise UserError(f"{data.name}: every answer is {why} for this tokenizer"
                            + ("; score them by their first token with PromptTask.multi_token first" if multi else ""))
        rows = encode_rows(self.encoder, [data.rows[i] for i in keep], [], None, targets, pad_id=self.lm.pad_id)
        return Encoded(self._triggers(rows, initial_trigger), skipped, multi, notes)

    def _encode_targets(self, data, initial_trigger) -> Encoded:
        space = " " if self.template.predict_space else ""
        targets = []
        for i, row in enumerate(data.rows):
            text = self.spec.target if self.spec.target is not None else str(row[self.spec.target_field])
            ids = self.lm.tokenizer(space + text, add_special_tokens=False).input_ids
            if not ids:
                raise UserError(f"{data.where(i)}: the target string {text!r} has no tokens")
            targets.append(list(ids))
        rows = encode_rows(self.encoder, data.rows, [], None, targets, pad_id=self.lm.pad_id, whole_targets=True)
        return Encoded(self._triggers(rows, initial_trigger))

    def _triggers(self, rows: Rows, trigger) -> Rows:
        if trigger is None or self.template.n_triggers == 0:
            return rows
        return rows.set_triggers(torch.as_tensor(trigger, dtype=torch.long))

    # ------------------------------------------------------------ scoring
    def log_probs(self, logits: torch.Tensor, rows: Rows) -> torch.Tensor:
        """logits (R, M, V) -> (B, C) class log-probs, or (B, V) vocabulary log-probs for facts."""
        if self.is_target:
            raise ValueError("a target-string task has no class log-probs; use example_scores")
        if self.is_facts:
            return torch.log_softmax(logits[:, 0].float(), dim=-1)
        v = self.verbalizer
        word_lp = word_log_probs(logits, v.targets.to(logits.device), rows.row_of)
        return class_log_probs(word_lp, v.word_class, v.n_classes)

    def target_log_prob(self, logits: torch.Tensor, rows: Rows) -> torch.Tensor:
        """(B,) log-probability (normalized over the vocabulary) of each example's label words."""
        return self.log_probs(logits, rows).gather(1, rows.labels[:, None]).squeeze(1)

    def loss(self, logits: torch.Tensor, rows: Rows, kind: str = "vocab") -> torch.Tensor:
        """Mean loss: 'vocab' = -log p(label words) over the vocabulary (AutoPrompt), 'classes' =
        cross-entropy over the classes' scores only (facts: the same as 'vocab'). Target strings: the
        mean cross-entropy of their tokens, or ('mellowmax') nanoGCG's mellowmax of -label logits."""
        if self.is_target:
            return target_loss(logits, rows.targets, kind)
        return loss_from_log_probs(self.log_probs(logits, rows), rows, kind, self.is_facts)

    def correct(self, logits: torch.Tensor, rows: Rows) -> torch.Tensor:
        """(B,) whether the top class (facts: the top vocabulary token; target strings: every
        target token, i.e. greedy decoding reproduces the target) is right."""
        return self.example_scores(logits, rows)[1]

    def example_scores(self, logits: torch.Tensor, rows: Rows, kind: str = "vocab"):
        """Per example: (label log-likelihood (B,), correct (B,) bool, margin (B,) <= 0: how far the
        label is below the best other token, 0 when it is first). kind 'classes' normalizes class
        scores over the classes; target strings sum over their tokens ('mellowmax': -mellowmax)."""
        if self.is_target:
            return target_scores(logits, rows.targets, kind)
        lp = self.log_probs(logits, rows)
        if kind == "classes" and not self.is_facts:
            lp = torch.log_softmax(lp, dim=-1)
        return label_scores(lp, rows.labels)


def loss_from_log_probs(lp: torch.Tensor, rows: Rows, kind: str, is_facts: bool) -> torch.Tensor:
    """Mean of -log p(label) from (B, C) class or (B, V) vocabulary log-probs; kind 'classes'
    renormalizes over the classes first (facts: always over the vocabulary)."""
    if kind == "classes" and not is_facts:
        lp = torch.log_softmax(lp, dim=-1)
    return -lp.gather(1, rows.labels[:, None]).mean()


def label_scores(lp: torch.Tensor, labels: torch.Tensor):
    """(B, C) or (B, V) log-probs, labels (B,) -> (label log-prob, correct, clipped margin), each (B,)."""
    target = lp.gather(1, labels[:, None]).squeeze(1)
    top = lp.topk(min(2, lp.shape[-1]), dim=-1).values  # the best other token: the top one, or the second
    other = torch.where(target < top[:, 0], top[:, 0], top[:, -1])  # when the label is (tied) first
    return target, lp.argmax(-1) == labels, (target - other).clamp(max=0)


def target_scores(logits: torch.Tensor, targets: torch.Tensor, kind: str = "vocab"):
    """logits (B, M', V) read at the target positions, targets (B, M) -1 padded -> (log-likelihood
    (B,) summed over the tokens, exact match (B,), summed clipped margin (B,))."""
    m = targets.shape[1]
    logits = logits[:, :m].float()
    valid = targets >= 0
    index = targets.clamp(min=0)[..., None]
    lse = torch.logsumexp(logits, dim=-1, keepdim=True)  # log-probs = logits - lse, never materialized (V is large)
    tok = (logits.gather(2, index) - lse).squeeze(2)
    top = logits.topk(min(2, logits.shape[-1]), dim=-1).values - lse
    other = torch.where(tok < top[..., 0], top[..., 0], top[..., -1])
    hit = (logits.argmax(-1) == targets) | ~valid
    margin = ((tok - other).clamp(max=0) * valid).sum(1)
    if kind == "mellowmax":
        label = logits.gather(2, index).squeeze(2)
        return -mellowmax(-label, valid), hit.all(1), margin
    return (tok * valid).sum(1), hit.all(1), margin


def mellowmax(t: torch.Tensor, valid: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """(B, M) values, (B, M) mask -> (B,) mellowmax over the valid entries:
    (logsumexp(alpha * t) - log n) / alpha (Asadi & Littman, 2017; nanoGCG's option)."""
    masked = (alpha * t).masked_fill(~valid, float("-inf"))
    return (torch.logsumexp(masked, dim=1) - torch.log(valid.sum(1).float())) / alpha


def target_loss(logits: torch.Tensor, targets: torch.Tensor, kind: str = "vocab") -> torch.Tensor:
    """Mean cross-entropy per target token over the batch (or the mean of the examples' mellowmax)."""
    loglik, _, _ = target_scores(logits, targets, kind)
    if kind == "mellowmax":
        return -loglik.mean()
    return -loglik.sum() / (targets >= 0).sum().clamp(min=1)


def chat_template(tokenizer, message: str) -> str:
    """A template from a user message (with {fields} and [T] slots) rendered by the tokenizer's chat
    template, with [P] where the assistant's reply starts; a tokenizer without one keeps the message
    as written (with a notice)."""
    text = message.rstrip()
    if text.endswith("[P]"):
        text = text[:-3].rstrip()
    if "[P]" in text:
        raise UserError("with a chat template, [P] is where the assistant's reply starts: put it at the end of the "
                        "message or leave it out")
    if not getattr(tokenizer, "chat_template", None):
        logger.warning("this tokenizer has no chat template; the message is used as written, the target follows it")
        return text + "[P]"
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                             add_generation_prompt=True)
    return rendered + "[P]"


def _check_target(lm: FrozenLM, labels, target, target_field) -> None:
    if target is None and target_field is None:
        return
    if target is not None and target_field is not None:
        raise UserError("give a target string (PromptTask.target) or a target column (PromptTask.target_field), not both")
    if target is not None and not str(target).strip():
        raise UserError("the target string is empty; give the text the model should produce")
    if labels:
        raise UserError("a target string replaces label words: give PromptTask.target (or PromptTask.target_field) or "
                        "PromptTask.label_map, not both")


def _all_columns(data) -> list[str]:
    cols: dict[str, None] = {}
    for r in data.rows[:50]:
        cols.update(dict.fromkeys(r))
    return list(cols)
