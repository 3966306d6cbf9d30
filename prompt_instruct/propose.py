"""The proposer: a causal language model that writes instructions from a meta-prompt.

Round 0 shows training examples as input -> output pairs and asks what the instruction was (APE's
forward template, Zhou et al., 2023); later rounds show the best instructions so far with their
training scores, lowest first, and a few examples, and ask for a better one (OPRO's meta-prompt,
Yang et al., 2024). A proposer with a chat template gets the meta-prompt as a user message (and
answers as the assistant); one without gets plain text ending where the instruction starts. Each
completion is cleaned to one readable sentence (`clean`).
"""

from __future__ import annotations

import logging
import random
import re
from dataclasses import dataclass

import torch

from frozen_lm.encode import special_tokens_around
from frozen_lm.model import FrozenLM
from frozen_lm.task import PromptTask

logger = logging.getLogger(__name__)
MAX_CHARS = 300  # longest instruction kept, in characters (cut at a word)
MAX_INPUT_CHARS = 300  # longest example input shown to the proposer

APE_INTRO = ("I gave a friend an instruction and {k} inputs. The friend read the instruction and wrote an output for "
             "every one of the inputs. Here are the input-output pairs:")
APE_ASK = ("What was the instruction? Reply with the instruction only, in one sentence.", "The instruction was:")
OPRO_INTRO = ("Your task is to write an instruction for a task. Below are earlier instructions with their scores "
              "({metric} on training examples, from 0 to 100, higher is better), from lowest to highest:")
OPRO_EXAMPLES = "Here are input-output pairs of the task:"
OPRO_ASK = ("Write a new instruction that is different from all the instructions above and scores higher than all of "
            "them. Reply with the instruction only, in one sentence.", "New instruction:")


@dataclass(frozen=True)
class Demo:
    """One training example as the proposer sees it: its input fields and its output (the label word,
    the answer, or the target string)."""

    input: str
    output: str


def demo_of(task: PromptTask, row: dict) -> Demo:
    """The example `row` as input -> output: one field's text, or 'field: text' pairs for several."""
    fields = task.template.fields
    values = [(f, " ".join(str(row.get(task.encoder.column(f), "")).split())) for f in fields]
    text = values[0][1] if len(values) == 1 else "; ".join(f"{f}: {v}" for f, v in values)
    if len(text) > MAX_INPUT_CHARS:
        text = text[:MAX_INPUT_CHARS].rsplit(" ", 1)[0] + " ..."
    if task.is_target:
        output = task.spec.target if task.spec.target is not None else str(row[task.spec.target_field])
    elif task.is_facts:
        output = str(row[task.label_field]).strip()
    else:
        output = task.spec.label_map[str(row[task.label_field])][0]
    return Demo(text or "(none)", output)


def pick_demos(task: PromptTask, rows: list[dict], k: int, rng: random.Random) -> list[Demo]:
    """k examples drawn from `rows` (all of them when there are fewer)."""
    chosen = rng.sample(range(len(rows)), min(k, len(rows)))
    return [demo_of(task, rows[i]) for i in chosen]


def _pairs(demos: list[Demo]) -> str:
    return "\n\n".join(f"Input: {d.input}\nOutput: {d.output}" for d in demos)


def ape_message(demos: list[Demo], chat: bool) -> str:
    """APE's forward meta-prompt: the pairs, then the question (chat) or where the answer starts (plain)."""
    body = APE_INTRO.format(k=len(demos)) + "\n\n" + _pairs(demos)
    return body + "\n\n" + APE_ASK[0 if chat else 1]


def opro_message(scored: list[tuple[str, float]], demos: list[Demo], metric: str, chat: bool) -> str:
    """OPRO's meta-prompt: (instruction, score in [0, 1]) pairs shown lowest first, then examples and the ask."""
    shown = sorted(scored, key=lambda p: p[1])
    body = OPRO_INTRO.format(metric=metric.replace("_", " ")) + "\n\n" + "\n\n".join(
        f"Instruction: {text}\nScore: {round(100 * s)}" for text, s in shown)
    if demos:
        body += "\n\n" + OPRO_EXAMPLES + "\n\n" + _pairs(demos)
    return body + "\n\n" + OPRO_ASK[0 if chat else 1]


class Proposer:
    """Samples completions of a meta-prompt from a causal LM with a seeded CPU generator."""

    def __init__(self, lm: FrozenLM, max_new_tokens: int, temperature: float, top_p: float, seed: int):
        self.lm, self.tok = lm, lm.tokenizer
        self.max_new_tokens, self.temperature, self.top_p = max_new_tokens, temperature, top_p
        self.generator = torch.Generator().manual_seed(seed)
        self.chat = bool(getattr(self.tok, "chat_template", None))
        self.limit = getattr(lm.config, "max_position_embeddings", None)

    def encode(self, message: str) -> list[int]:
        """Token ids of the meta-prompt as this model reads it (its chat template, or plain text after
        its start tokens)."""
        if self.chat:
            text = self.tok.apply_chat_template([{"role": "user", "content": message}], tokenize=False,
                                                add_generation_prompt=True)
            return list(self.tok(text, add_special_tokens=False).input_ids)
        before, _ = special_tokens_around(self.tok)
        return before + list(self.tok(message, add_special_tokens=False).input_ids)

    def fits(self, ids: list[int]) -> bool:
        return self.limit is None or len(ids) + self.max_new_tokens <= self.limit

    def prompt_ids(self, build, n_demos: int) -> list[int]:
        """The ids of build(k) for the most examples k <= n_demos that leave room for the answer in the
        model's positions (a prompt still too long keeps its last tokens)."""
        for k in range(n_demos, -1, -1):
            ids = self.encode(build(k))
            if self.fits(ids):
                if k < n_demos:
                    logger.info("the meta-prompt shows %d of %d examples (the proposer has %s positions)", k, n_demos,
                                self.limit)
                return ids
        keep = max(self.limit - self.max_new_tokens, 1)
        logger.warning("the meta-prompt is %d tokens, more than the proposer's %s positions allow; its last %d are "
                       "kept", len(ids), self.limit, keep)
        return ids[-keep:]

    def sample_texts(self, ids: list[int], n: int) -> list[str]:
        """n sampled completions of the meta-prompt ids, decoded without special tokens."""
        rows = self.lm.sample(torch.tensor(ids, dtype=torch.long), self.max_new_tokens, temperature=self.temperature,
                              top_p=self.top_p, generator=self.generator, n=n)
        return [self.tok.decode(r, skip_special_tokens=True) for r in rows]


_BULLET = re.compile(r"^\s*(?:[-*•>#]+|\d+[.)])\s+")
_LABEL = re.compile(r"^(?:the\s+)?(?:new\s+)?instruction(?:\s+was)?\s*[:\-]\s*", re.IGNORECASE)
_QUOTES = {'"': '"', "'": "'", "“": "”", "‘": "’", "`": "`"}
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)")


def harmless(text: str) -> str:
    """The text with what the template language would read as a slot or field made plain: braces
    and square brackets ({field}, [T], [P], [X], [Y], [CLS]) become parentheses."""
    return text.translate(str.maketrans("{}[]", "()()"))


def clean(text: str, specials: tuple[str, ...] = ()) -> str:
    """One readable instruction from a completion: its first line (past preambles that end with a
    colon) and first sentence, without a leading bullet, an 'Instruction:' label, surrounding quotes or special-token strings, with
    template characters made harmless, at most MAX_CHARS characters; '' when nothing is left."""
    for s in specials:
        if s:
            text = text.replace(s, " ")
    # the first line that is not a preamble ('Here is an instruction:'; a lone one is no instruction)
    line = next((ln.strip() for ln in text.splitlines() if ln.strip() and not ln.rstrip().endswith(":")), "")
    line = _LABEL.sub("", _BULLET.sub("", line)).strip()
    if line[:1] in _QUOTES:
        end = line.find(_QUOTES[line[0]], 1)
        line = line[1:end] if end > 0 else line[1:]
    match = _SENTENCE_END.search(line)
    if match:
        line = line[:match.end()]
    line = " ".join(harmless(line).strip(" \"“”`").split())
    if len(line) > MAX_CHARS:
        line = line[:MAX_CHARS].rsplit(" ", 1)[0]
    if not any(c.isalnum() for c in line):
        return ""
    return line[0].upper() + line[1:]
