"""The one template language shared by discrete search and soft prompts.

`{field}` inserts a data field, `[T]` is one prompt slot (a trigger token or a trainable vector),
`[P]` is the position scored against the label words (or where a target string starts); `[T]xN`
is N slots. LAMA templates (`[X] ... [Y] .`) are
accepted: `[X]` becomes `{sub_label}` and `[Y]` becomes `[P]`. Any other `[...]` (such as `[CLS]`)
is ordinary text, which the tokenizer maps to its special token.

Plain spaces before a slot belong to it: `{sentence} It was [P]` puts a space before the label word,
which matters for BPE tokenizers (`Ġgreat` vs `great`) and not for WordPiece. Other whitespace (a
newline, a tab) stays in the text before the slot, as written: a chat template's
`<|im_start|>assistant\n[P]` scores the reply after the newline, not after a space.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from frozen_lm.errors import UserError

logger = logging.getLogger(__name__)

_SLOT = re.compile(r"(\{[^{}]*\}|\[T\]|\[P\]|\[X\]|\[Y\])")
_REPEAT = re.compile(r"\[T\]x(\d+)")
_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class Segment:
    """One piece of a template: kind is 'text', 'field', 'trigger' or 'predict'."""

    kind: str
    value: str = ""  # the text, or the field name
    space: bool = False  # whitespace directly before a slot


@dataclass(frozen=True)
class Template:
    text: str
    segments: tuple[Segment, ...]

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s.value for s in self.segments if s.kind == "field"))

    @property
    def n_triggers(self) -> int:
        return sum(s.kind == "trigger" for s in self.segments)

    @property
    def predict_space(self) -> bool:
        """Whether whitespace comes right before [P] (label words then get a leading space)."""
        return next(s.space for s in self.segments if s.kind == "predict")

    def after_predict(self) -> tuple[Segment, ...]:
        index = next(i for i, s in enumerate(self.segments) if s.kind == "predict")
        return self.segments[index + 1:]

    def with_triggers(self, tokens: list[str]) -> str:
        """The template text with each [T] replaced by the given strings, in order."""
        it = iter(tokens)
        return re.sub(r"\[T\]", lambda _: next(it), self.text)

    @classmethod
    def parse(cls, text: str) -> Template:
        """Parse and check a template; UserError with a one-line reason if it is malformed."""
        text = _REPEAT.sub(lambda m: " ".join(["[T]"] * int(m.group(1))), text)  # '[T]x20': 20 slots
        if "[X]" in text or "[Y]" in text:
            if "[P]" in text:
                raise UserError(f"template {text!r} mixes LAMA [X]/[Y] with [P]; use one style")
            text = text.replace("[X]", "{sub_label}").replace("[Y]", "[P]")
        segments: list[Segment] = []
        space = False
        for piece in _SLOT.split(text.strip()):
            if not piece:
                continue
            if not piece.strip(" "):  # only plain spaces: they belong to the next slot
                space = True
                continue
            segments.append(_segment(piece, space, text))
            space = piece.endswith(" ") if segments[-1].kind == "text" else False
        count = sum(s.kind == "predict" for s in segments)
        if count == 0:
            raise UserError(f"template {text!r} has no [P]; add [P] where the label word goes, e.g. '{{sentence}} It was [P] .'")
        if count > 1:
            raise UserError(f"template {text!r} has {count} [P] slots; use exactly one")
        return cls(text, tuple(segments))


def _segment(piece: str, space: bool, text: str) -> Segment:
    if piece == "[T]":
        return Segment("trigger", space=space)
    if piece == "[P]":
        return Segment("predict", space=space)
    if piece.startswith("{"):
        match = _FIELD.fullmatch(piece)
        if not match:
            raise UserError(f"template {text!r}: {piece!r} is not a field name; use letters, digits and _ as in {{sentence}}")
        return Segment("field", match.group(1), space=space)
    return Segment("text", piece.rstrip(" "))  # a newline or tab before the next slot stays in the text


def check_for_model(template: Template, is_masked: bool) -> None:
    """Refuse templates that cannot work on this kind of model; note ignored text."""
    if is_masked:
        return
    after = template.after_predict()
    slots = [s for s in after if s.kind != "text"]
    if slots:
        what = "{" + slots[0].value + "}" if slots[0].kind == "field" else "[T]"
        raise UserError(
            f"template {template.text!r}: [P] must be the last slot for a causal LM, but {what} follows it; "
            "move [P] to the end"
        )
    if after:
        logger.info("causal LM: text after [P] (%r) cannot affect the prediction and is ignored", after[0].value)


def check_fields(template: Template, available: list[str], source: str, column=lambda f: f) -> None:
    """UserError naming the first template field whose data column is not in `available`."""
    for name in template.fields:
        if column(name) not in available:
            mapped = f" (mapped to column {column(name)!r})" if column(name) != name else ""
            raise UserError(
                f"template field {{{name}}}{mapped} is not in {source} (columns: {', '.join(available)}); "
                f"fix the template or map it with PromptTask.text_fields {name}=COLUMN"
            )
