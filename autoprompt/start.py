"""Start a search from a hand-written template: its words become [T] slots holding their own tokens.

`slot_template(task, manual, keep, extra)` turns 'The opposite of {sub_label} is [P]' into
'[T] [T] [T] {sub_label} [T] [P]' with the trigger ids of ' The', ' opposite', ' of', ' is' (as the
encoder tokenizes them in place), so the start encodes exactly like the manual template and its dev
score is the search's first best. Words in `keep` (and special tokens such as [CLS]) stay as text;
`extra` free slots go before [P]. Works for BPE (leading-space tokens) and WordPiece tokenizers.
"""

from __future__ import annotations

import logging
import re

import torch

from frozen_lm.configs import name_of
from frozen_lm.errors import UserError
from frozen_lm.templates import Template

logger = logging.getLogger(__name__)


def _word_tokens(tokenizer, text: str) -> list[tuple[str, list[int]]]:
    """(word, its token ids) for each whitespace-separated word of `text`, tokenized as one piece (as
    the encoder does) and split back into words by the tokens' character offsets."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    words = [(m.start(), m.end(), m.group()) for m in re.finditer(r"\S+", text)]
    out: list[tuple[str, list[int]]] = [(w, []) for _, _, w in words]
    current = 0
    for tid, (start, end) in zip(enc.input_ids, enc.offset_mapping):
        while current < len(words) - 1 and max(start, end - 1) >= words[current + 1][0] and end > start:
            current += 1
        out[current][1].append(int(tid))
    return out


def slot_template(task, manual: str, keep: set[str] = frozenset(), extra: int = 0,
                  fill: int | None = None, config=None) -> tuple[str, list[int]]:
    """(the template with [T] slots, the start trigger ids) for a hand-written template (config: the
    search config whose fields errors name)."""
    field = (lambda name: name_of(config, name)) if config is not None else (lambda name: f"`{name}`")
    tok = task.lm.tokenizer
    parsed = Template.parse(manual)
    special = set(getattr(tok, "all_special_tokens", []) or [])
    keep = {k.lower() for k in keep}
    pieces, ids, found, after = [], [], set(), False
    for seg in parsed.segments:
        gap = " " if seg.space else ""
        if after:  # text after [P] stays as written (a causal LM never reads it)
            pieces.append(seg.value if seg.kind == "text" else f"{gap}{{{seg.value}}}")
            continue
        if seg.kind == "field":
            pieces.append(f"{gap}{{{seg.value}}}")
        elif seg.kind == "trigger":
            raise UserError(f"{field('from_template')} {manual!r} already has [T] slots; give a hand-written template "
                            "without them")
        elif seg.kind == "predict":
            pieces += [" [T]"] * extra + [f"{gap}[P]"]
            ids += [fill] * extra
            after = True
        else:
            text = seg.value
            for n, (word, word_ids) in enumerate(_word_tokens(tok, text)):
                space = " " if (n > 0 or text[:1].isspace()) else ""
                if word.lower() in keep or word in special or not word_ids:
                    found.add(word.lower())
                    pieces.append(space + word)
                else:
                    pieces += [space + "[T]"] + [" [T]"] * (len(word_ids) - 1)
                    ids += word_ids
    missing = keep - found
    if missing:
        raise UserError(f"{field('keep')} {', '.join(sorted(missing))}: not a word of {field('from_template')} {manual!r}")
    if not ids:
        raise UserError(f"{field('from_template')} {manual!r} leaves no word to search (all kept); keep fewer words or "
                        f"add {field('extra_slots')}")
    if extra and fill is None:
        raise UserError(f"{field('extra_slots')} needs a start token ({field('initial_trigger')} the or mask)")
    return "".join(pieces).strip(), ids


def check_same_encoding(manual_task, slot_task, trigger: list[int], data) -> None:
    """Warn when the start does not encode like the manual template (then its score may differ)."""
    rows = data.rows if hasattr(data, "rows") else data
    sample = rows[:8]
    from frozen_lm.data import Dataset

    a = manual_task.encode(Dataset("check", sample)).rows
    b = slot_task.encode(Dataset("check", sample), torch.tensor(trigger)).rows
    if a.input_ids.shape != b.input_ids.shape or not torch.equal(a.input_ids, b.input_ids):
        logger.warning("the slot template does not tokenize exactly like %r; the start's score may differ from "
                       "the manual template's", manual_task.spec.template)
