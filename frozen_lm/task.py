"""A prompt task: template + label words (or facts) + data for one model, and how to score it.

Every method uses the same `TaskConfig` options and the same `PromptTask` scoring, so a discrete
prompt, a soft prompt and a subspace-trained model are evaluated by one evaluator.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from frozen_lm import data as data_mod
from frozen_lm.encode import Encoder, Rows, encode_rows
from frozen_lm.errors import UserError
from frozen_lm.model import FrozenLM
from frozen_lm.registry import DEFAULT_MODEL
from frozen_lm.templates import Template, check_fields
from frozen_lm.verbalizer import Verbalizer, class_log_probs, parse_label_map, word_log_probs

logger = logging.getLogger(__name__)


@dataclass
class TaskConfig:
    """Options shared by every subcommand: which model, template, label words and data."""

    model: str = field(default=DEFAULT_MODEL, metadata={"help": "model alias (see `autoprompt models`), local path or hub name"})
    template: str | None = field(default=None, metadata={
        "help": "template with {field}, [T] slots and one [P], e.g. '{sentence} [T] [T] [P]' (default: the demo task's)"})
    label_map: str | None = field(default=None, metadata={
        "help": "label words: JSON '{\"0\": \"terrible\", \"1\": \"great\"}', a .json file, or '0=terrible,1=great'; "
                "several words per class with a list or '|'; omit for fact retrieval (the label is the answer word)"})
    label_field: str | None = field(default=None, metadata={"help": "data column holding the label (default: label, obj_label for facts)"})
    text_fields: str | None = field(default=None, metadata={
        "help": "map template fields to data columns: 'sentence=text,...', or column names in template order"})
    train: str | None = field(default=None, metadata={
        "help": "training data: .jsonl/.tsv/.csv file, hf:NAME[/CONFIG]:SPLIT, or demo:TASK (default: demo:sentiment)"})
    dev: str | None = field(default=None, metadata={"help": "development data, same forms as --train (default: the demo task's dev split)"})
    multi_token: str = field(default="skip", metadata={
        "help": "facts whose answer is several tokens: skip them (counted) or score their first token",
        "choices": ["skip", "first"]})
    device: str = field(default="auto", metadata={"help": "cpu, cuda, cuda:N, or auto (CUDA when present)"})
    dtype: str = field(default="auto", metadata={"help": "float32, bfloat16 or float16; auto = float32"})

    def resolved(self, manual: bool = False, data: str | None = None) -> TaskConfig:
        """Fill template, label map, label field and splits from the demo task when not given
        (manual=True takes the demo's hand-written template instead of its [T] template; `data`, a
        split to score, picks the demo task when it is one and --train is not given; any other split
        takes nothing from the demo tasks)."""
        out = TaskConfig(**vars(self))
        demo = demo_of(out.train) or (demo_of(data) if out.train is None else None)
        own_split = bool(data) and not data.startswith("demo:")  # a user's split takes no demo label words
        if demo is None and out.train is None and not own_split:
            demo = data_mod.DEMO_TASKS[data_mod.DEFAULT_TASK]
        if demo is not None:
            out.train = out.train or f"demo:{demo.name}:train"
            if out.train == f"demo:{demo.name}":
                out.train = f"demo:{demo.name}:train"
            out.dev = out.dev or f"demo:{demo.name}:dev"
            out.template = out.template or (demo.manual_template if manual else demo.template)
            out.label_field = out.label_field or demo.label_field
            if out.label_map is None and demo.label_map is not None:
                out.label_map = _dump(demo.label_map)
        out.label_field = out.label_field or ("label" if out.label_map else "obj_label")
        if out.template is None:
            raise UserError("no --template given; write one with {field}, [T] and [P], e.g. '{sentence} [T] [T] [P]'")
        return out


def demo_of(source: str | None):
    if source and source.startswith("demo:"):
        return data_mod.DEMO_TASKS.get(source.split(":")[1])
    return None


def _dump(label_map: dict) -> str:
    import json

    return json.dumps(label_map, sort_keys=True)


@dataclass
class Encoded:
    """A split encoded for the model: rows of the scored examples and what was skipped."""

    rows: Rows
    n_skipped: int = 0
    n_multi_token: int = 0
    notes: list[str] = field(default_factory=list)


class PromptTask:
    """Template + label words for one model; encodes data and scores logits read at [P]."""

    def __init__(self, lm: FrozenLM, template: str, label_map=None, text_fields: str | None = None,
                 label_field: str = "label", multi_token: str = "skip"):
        self.lm = lm
        self.template = Template.parse(template)
        self.field_map = data_mod.parse_field_map(text_fields, self.template.fields)
        self.label_field = label_field
        self.multi_token = multi_token
        limit = min(getattr(lm.config, "max_position_embeddings", 512) or 512, 512)
        self.encoder = Encoder(self.template, lm.tokenizer, lm.is_masked, self.field_map, max_length=limit)
        label_map = parse_label_map(label_map) if not isinstance(label_map, dict) else parse_label_map(label_map)
        self.verbalizer = Verbalizer.build(label_map, lm.tokenizer, self.template.predict_space) if label_map else None

    @classmethod
    def from_config(cls, lm: FrozenLM, cfg: TaskConfig, template: str | None = None) -> PromptTask:
        return cls(lm, template or cfg.template, cfg.label_map, cfg.text_fields, cfg.label_field, cfg.multi_token)

    @property
    def is_facts(self) -> bool:
        return self.verbalizer is None

    @property
    def metric(self) -> str:
        return "p_at_1" if self.is_facts else "accuracy"

    # ------------------------------------------------------------ encoding
    def encode(self, data: data_mod.Dataset, initial_trigger: list[int] | None = None) -> Encoded:
        """Encode a split; UserError (naming file:line) for missing fields or unknown labels."""
        columns = [self.encoder.column(f) for f in self.template.fields]
        if not data.rows:
            raise UserError(f"{data.name} is empty")
        check_fields(self.template, _all_columns(data), data.name, self.encoder.column)
        data_mod.check_rows(data, columns + [self.label_field])
        if self.is_facts:
            return self._encode_facts(data, initial_trigger)
        labels = [self.verbalizer.class_index(r[self.label_field], data.where(i)) for i, r in enumerate(data.rows)]
        rows = encode_rows(self.encoder, data.rows, labels, self.verbalizer, pad_id=self.lm.pad_id)
        return Encoded(self._triggers(rows, initial_trigger))

    def _encode_facts(self, data, initial_trigger) -> Encoded:
        keep, targets, multi = [], [], 0
        for i, row in enumerate(data.rows):
            ids = self.lm.tokenizer((" " if self.template.predict_space else "") + str(row[self.label_field]).strip(),
                                    add_special_tokens=False).input_ids
            multi += len(ids) > 1
            if len(ids) == 1 or (ids and self.multi_token == "first"):
                keep.append(i)
                targets.append(list(ids))
        skipped = len(data.rows) - len(keep)
        notes = [f"{multi} of {len(data.rows)} answers are several tokens: "
                 + ("skipped" if self.multi_token == "skip" else "scored by their first token")] if multi else []
        if not keep:
            raise UserError(f"{data.name}: every answer is several tokens for this tokenizer; use --multi-token first")
        rows = encode_rows(self.encoder, [data.rows[i] for i in keep], [], None, targets, pad_id=self.lm.pad_id)
        return Encoded(self._triggers(rows, initial_trigger), skipped, multi, notes)

    def _triggers(self, rows: Rows, trigger: list[int] | None) -> Rows:
        if trigger is None or self.template.n_triggers == 0:
            return rows
        return rows.set_triggers(torch.as_tensor(trigger, dtype=torch.long))

    # ------------------------------------------------------------ scoring
    def log_probs(self, logits: torch.Tensor, rows: Rows) -> torch.Tensor:
        """logits (R, M, V) -> (B, C) class log-probs, or (B, V) vocabulary log-probs for facts."""
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
        cross-entropy over the classes' scores only (facts: the same as 'vocab')."""
        lp = self.log_probs(logits, rows)
        if kind == "classes" and not self.is_facts:
            lp = torch.log_softmax(lp, dim=-1)
        return -lp.gather(1, rows.labels[:, None]).mean()

    def correct(self, logits: torch.Tensor, rows: Rows) -> torch.Tensor:
        """(B,) whether the top class (facts: the top vocabulary token) is the label."""
        return self.log_probs(logits, rows).argmax(-1) == rows.labels


def _all_columns(data) -> list[str]:
    cols: dict[str, None] = {}
    for r in data.rows[:50]:
        cols.update(dict.fromkeys(r))
    return list(cols)


def ids_logits_fn(lm: FrozenLM) -> Callable[[Rows], torch.Tensor]:
    """Logits at [P] for rows whose input ids are complete (discrete prompts)."""
    return lambda rows: lm.logits_at(rows.predict_pos, input_ids=rows.input_ids, attention_mask=rows.attention_mask)


@torch.no_grad()
def evaluate(task: PromptTask, encoded: Encoded, logits_fn: Callable[[Rows], torch.Tensor] | None = None,
             batch_size: int = 32) -> dict:
    """Accuracy (classification) or P@1 (facts) of a prompt on an encoded split.

    Returns {metric: value, 'n_scored', 'n_skipped'} (plus 'n_multi_token' for facts).
    """
    logits_fn = logits_fn or ids_logits_fn(task.lm)
    rows = encoded.rows.to(task.lm.device)
    hits = sum(int(task.correct(logits_fn(batch), batch).sum()) for batch in rows.batches(batch_size))
    out = {task.metric: hits / max(len(rows), 1), "n_scored": len(rows), "n_skipped": encoded.n_skipped}
    if task.is_facts:
        out["n_multi_token"] = encoded.n_multi_token
    return out
