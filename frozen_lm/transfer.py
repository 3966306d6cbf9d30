"""A prompt on another model: a discrete prompt carried as text, and what its tokens became there.

    other = PromptTask(FrozenLM.load("gemma3-270m"), template, label_map)   # the task on another model
    evaluate(other, test, prompt=load_result("runs/search-1"))              # ... ['transfer']: the drift

A result says how it reads as text with `as_text() -> TextPrompt | None` (frozen_lm.results.Result):
a discrete prompt (found trigger tokens, the manual template, an instruction, demonstrations) is
text any model can read; a soft prompt, a prefix or trained weights is tensors tied to the model's
shape, so it gives None. `evaluate` carries a result to a task on another model (`carry`):

- the same tokenizer (every trigger id decodes there to the token text the run saved, and the
  vocabulary has the same size): the token ids are kept, exactly as found;
- another tokenizer: the tokens are written into the template as text (`written`) and the target
  model's tokenizer reads them as it reads any template text; the drift says what became of them
  (`drift`: the source tokens, each slot's tokens there, the counts, whether each slot stayed one
  token, unknown tokens);
- a result that is no text, on a model of another shape: refused in one line saying why (`refusal`).

Its metrics then carry a 'transfer' entry: {source_model, target_model, drift}. A bare discrete
prompt (a DiscretePrompt, a soft prompt's nearest-token reading) knows no model: `sourced(prompt,
task_on_its_model)` marks it, and then it moves the same way. Nothing here names a method: what a
method trains comes from the registry (frozen_lm.methods).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, replace

from frozen_lm.artifact import check_model
from frozen_lm.errors import UserError
from frozen_lm.task import PromptTask
from frozen_lm.templates import Template

logger = logging.getLogger(__name__)
SLOT = re.compile(r"( *)\[T\]")
_REPEAT = re.compile(r"\[T\]x(\d+)")


@dataclass(frozen=True)
class TextPrompt:
    """A result's prompt as text.

    template: the template its prompt is scored with, [T] slots where its tokens go (none: the text
    is the whole prompt, e.g. a manual template or an instruction); trigger_ids / tokens: the source
    model's token ids in those slots and each one's decoded text; text: the ids decoded at once (how
    the source tokenizer joins them: 'a b' for word-level vocabularies, ' ab' for byte-level BPE);
    rebind(task) -> Bound: for a prompt that adds text per example (demonstrations drawn from a pool),
    the prompt on the target task (its template is `template`, written in), else None.
    """

    template: str
    trigger_ids: tuple[int, ...] = ()
    tokens: tuple[str, ...] = ()
    text: str | None = None
    rebind: Callable | None = None

    @classmethod
    def from_tokens(cls, template: str, ids, tokens, text: str | None = None) -> TextPrompt:
        return cls(template, tuple(int(i) for i in ids), tuple(tokens), text)

    def pieces(self) -> list[str]:
        """Each slot's text as written into the template (with the whitespace that goes before it)."""
        return [write(rule, token) for rule, token in zip(self.slot_rules(), self.tokens)]

    def slot_rules(self) -> list[tuple[str, bool, bool]]:
        """How each slot writes a token's text (`write(rule, text)`): (the whitespace written before it,
        whether the token's own leading space is dropped for it, whether the piece starts the template
        and so loses its leading whitespace). A rule depends on the template and on how the source
        tokenizer joins tokens, not on the slot's token, so it also says how any other token would be
        written in that slot."""
        spaced, template = self._space_joined(), expand(self.template)
        out, prev_slot_end = [], None
        for i, match in enumerate(SLOT.finditer(template)):
            starts = not template[: match.start()].strip()  # nothing before it: a template starts with text
            if match.group(1):  # the template's space goes before the slot: the token's own is dropped
                out.append((match.group(1), True, starts))
            elif spaced and prev_slot_end == match.start() and i:  # glued slots of a word-level vocabulary
                out.append((" ", True, starts))
            else:
                out.append(("", False, starts))
            prev_slot_end = match.end()
        return out

    def _space_joined(self) -> bool:
        """Whether the source tokenizer writes its tokens with spaces between them (word-level and
        WordPiece vocabularies decode 'a b'; byte-level BPE tokens carry their own spaces)."""
        if self.text is None or len(self.tokens) < 2:
            return False
        return self.text != "".join(self.tokens) and self.text.split() == [t.strip() for t in self.tokens if t.strip()]

    def written(self) -> str:
        """The template with the tokens written in as text (no [T] slots left); UserError when the
        text would read as template syntax ({field}, [P], [T])."""
        if not self.trigger_ids:
            return self.template
        pieces = iter(self.pieces())
        filled = SLOT.sub(lambda m: next(pieces), expand(self.template))
        before, after = _parsed(self.template), _parsed(filled)
        if after.n_triggers or after.fields != before.fields:
            raise UserError(f"the prompt's tokens {list(self.tokens)} read as template syntax ([T], [P], {{field}}) when "
                            "written as text, so they cannot be carried to another model")
        return filled


def write(rule: tuple[str, bool, bool], token: str) -> str:
    """A token's text as a slot with `rule` (TextPrompt.slot_rules) writes it into the template."""
    before, strip, starts = rule
    piece = before + (token.strip() if strip and token.strip() else token)
    return piece.lstrip() if starts else piece


def expand(template: str) -> str:
    """The template with '[T]xN' written as N slots."""
    return _REPEAT.sub(lambda m: " ".join(["[T]"] * int(m.group(1))), template)


def _parsed(template: str) -> Template:
    """The template parsed (a target-string template may leave out [P]: one is assumed at its end)."""
    if "[P]" not in template and "[Y]" not in template:
        template = template.rstrip() + " [P]"
    return Template.parse(template)


@dataclass
class Sourced:
    """A discrete prompt (trigger ids for [T] slots: a DiscretePrompt, a soft prompt's nearest-token
    reading) with the model and task it was made on, so `evaluate` carries it to another model as text
    as it carries a result (`sourced(prompt, task)` makes one). model: that model's info; task: its spec."""

    prompt: object
    model: dict
    task: object
    method: str = "discrete"

    def as_text(self) -> TextPrompt:
        p = self.prompt  # a reading's own template (e.g. virtual-token slots prepended), else the task's
        template = getattr(p, "template", "") or self.task.template
        return TextPrompt.from_tokens(template, p.trigger_ids, p.tokens, p.text)

    def bind(self, task):
        return self.prompt.bind(task)


def sourced(prompt, task: PromptTask) -> Sourced:
    """`prompt` (token ids read on `task`'s model) marked with that model, for `evaluate` on another one."""
    from frozen_lm.artifact import model_info

    return Sourced(prompt, model_info(task.lm), task.spec)


@dataclass
class Carried:
    """A result moved to a task on another model: task (its template the text prompt's: slots for
    kept ids, or the text written in), trigger_ids (kept ids, or None), rebind (TextPrompt.rebind),
    report (the metrics' 'transfer' entry)."""

    task: PromptTask
    trigger_ids: list[int] | None
    rebind: Callable | None
    report: dict


def on_other_model(prompt, lm) -> bool:
    """Whether `prompt` is a saved result of another model than `lm` (another name or shape)."""
    saved = getattr(prompt, "model", None)
    if not isinstance(saved, dict) or not callable(getattr(prompt, "as_text", None)):
        return False
    return saved.get("name") != lm.name or not fits(saved, lm)


def fits(saved: dict, lm) -> bool:
    """Whether a result's saved model info has the shape of `lm` (vocabulary, width, depth, class)."""
    try:
        check_model(saved, lm, "")
    except UserError:
        return False
    return True


def trains(result) -> str | None:
    """What the result's method trains ('nothing', 'tokens', 'vectors', 'weights'), from the registry."""
    from frozen_lm.methods import for_artifact

    try:
        return for_artifact(result.method, {}, getattr(result, "module", "") or None).trains
    except UserError:
        return None


def refusal(result, lm) -> UserError:
    """The one-line reason a result that is not text cannot be applied to `lm`."""
    saved = result.model
    key = next((k for k in ("architecture", "vocab_size", "hidden_size", "n_layers")
                if k in saved and saved[k] != _info(lm)[k]), "architecture")
    what = {"vectors": "its trained vectors (a soft prompt or prefix) live in that model's embedding or key/value space",
            "weights": "its trained weights are that model's"}.get(trains(result), "its tensors are that model's")
    return UserError(f"this {result.method} result was made with model {saved.get('name')!r} ({key} {saved.get(key)}), "
                     f"not {lm.name!r} ({key} {_info(lm)[key]}): {what} and have no meaning on another model (only "
                     f"discrete prompts, which are text, move between models); load it with model {saved.get('name')!r}")


def _info(lm) -> dict:
    from frozen_lm.artifact import model_info

    return model_info(lm)


def task_for(result, lm, **changes) -> PromptTask:
    """The task a result was made with, on `lm`: its own model (checked as `Result.task_for`), or
    another model when the result is text (UserError with the reason when it is not)."""
    if not on_other_model(result, lm) or result.as_text() is None:
        if trains(result) not in ("nothing", "tokens") and not fits(result.model, lm):
            raise refusal(result, lm)
        return result.task_for(lm, **changes)  # (its own model check decides)
    return PromptTask.from_spec(lm, replace(result.task, **changes))


def carry(result, task: PromptTask) -> Carried | None:
    """`result` (a saved result of another model) on `task`; None when the result is no text but
    may bind there as it is (its own check decides: a soft prompt on a model of the same shape, a
    result without the text hook). UserError: a soft prompt, prefix or weights on another shape."""
    text = result.as_text()
    if text is None:
        if trains(result) not in ("nothing", "tokens") and not fits(result.model, task.lm):
            raise refusal(result, task.lm)
        return None
    if task.spec.template not in (text.template, result.task.template):
        logger.info("the %s prompt is scored with its own template %r (the task's %r is not used)", result.method,
                    text.template, task.spec.template)
    report = {"source_model": result.model.get("name"), "target_model": task.lm.name}
    if text.trigger_ids and same_tokens(text, result.model, task.lm):
        target = task if task.spec.template == text.template else task.derive(template=text.template)
        report["drift"] = kept(text)
        return Carried(target, list(text.trigger_ids), None, report)
    filled = text.written()
    target = task if task.spec.template == filled else task.derive(template=filled)
    report["drift"] = drift(text, task.lm.tokenizer)
    return Carried(target, None, text.rebind, report)


def same_tokens(text: TextPrompt, saved: dict, lm) -> bool:
    """Whether the trigger ids mean the same tokens on `lm`: its vocabulary has the saved size and
    decodes every id to the token text the run saved."""
    if saved.get("vocab_size") not in (None, lm.vocab_size):
        return False
    tok = lm.tokenizer
    return all(i < len(tok) and tok.decode([i]) == t for i, t in zip(text.trigger_ids, text.tokens))


def kept(text: TextPrompt) -> dict:
    """The drift of ids kept as they are (the same tokenizer): none."""
    n = len(text.trigger_ids)
    return {"how": "ids", "source_tokens": list(text.tokens), "target_tokens": [[t] for t in text.tokens],
            "n_tokens_before": n, "n_tokens_after": n, "one_token": [True] * n, "n_one_token": n, "n_unknown": 0}


def drift(text: TextPrompt, tokenizer) -> dict:
    """What the target tokenizer makes of a prompt written as text: how: 'text'; template: the
    template with the text written in; written: each slot's text; source_tokens; target_tokens:
    each slot's tokens there (in context: a run of adjacent slots is tokenized as the text it is);
    n_tokens_before / n_tokens_after; one_token: per slot, whether it is still one token;
    n_one_token; n_unknown: target tokens that are the unknown token."""
    out = {"how": "text", "template": text.written()}
    if not text.trigger_ids:
        return {**out, "source_tokens": [], "target_tokens": [], "n_tokens_before": 0, "n_tokens_after": 0,
                "one_token": [], "n_one_token": 0, "n_unknown": 0}
    pieces = text.pieces()
    per_slot = slot_tokens(pieces, _runs(text.template), tokenizer)
    unk = tokenizer.unk_token_id
    names = [[tokenizer.decode([i]) for i in ids] for ids in per_slot]
    one = [len(ids) == 1 for ids in per_slot]
    return {**out, "written": pieces, "source_tokens": list(text.tokens), "target_tokens": names,
            "n_tokens_before": len(pieces), "n_tokens_after": sum(len(ids) for ids in per_slot), "one_token": one,
            "n_one_token": sum(one), "n_unknown": sum(i == unk for ids in per_slot for i in ids) if unk is not None else 0}


def _runs(template: str) -> list[list[int]]:
    """The template's slots grouped in runs of slots with only spaces between them."""
    runs, last_end = [], None
    for i, m in enumerate(SLOT.finditer(expand(template))):
        if last_end is not None and m.start() == last_end:
            runs[-1].append(i)
        else:
            runs.append([i])
        last_end = m.end()
    return runs


def slot_tokens(pieces: list[str], runs: list[list[int]], tokenizer) -> list[list[int]]:
    """Each slot's token ids on `tokenizer`: every run of adjacent slots tokenized as one text, its
    tokens given to the slot their characters start in (a slow tokenizer without offsets: each
    slot's text alone)."""
    out: list[list[int]] = [[] for _ in pieces]
    for run in runs:
        text = "".join(pieces[i] for i in run)
        try:
            enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        except (NotImplementedError, ValueError, TypeError):
            for i in run:
                out[i] = list(tokenizer(pieces[i], add_special_tokens=False).input_ids)
            continue
        bounds, at = [], 0
        for i in run:
            at += len(pieces[i])
            bounds.append(at)
        for token, (start, end) in zip(enc.input_ids, enc.offset_mapping):
            where = next((k for k, b in enumerate(bounds) if start < b or (start == end and start <= b)), len(run) - 1)
            out[run[where]].append(int(token))
    return out
