"""Demonstrations: the task's hand-written template filled from training examples, with the answer
in place of [P] (the first label word of the example's class; a fact's answer; the target string).

    demos = Demonstrations(task, pool, config)
    demos.scoring_task.spec.template   # '{__demos__}\\n{sentence} It was [P] .'
    demos.add_to(split)                # every row gets its demonstrations' text in the __demos__ column

The demonstrations are text in a data column, so the shared encoder and evaluator score them like
any field (no template escaping: field values are never parsed) and the query is the template as
written: masked LMs read the mask at its [P], causal LMs predict after it (it stays last).
'sampled' draws demos_per_class demonstrations of every class per example, from a generator seeded
by the config's seed and the example's position (LM-BFF), never the example itself when the split
shares rows with the pool; 'fixed' draws one k-shot context for every example. The draw is shuffled
(LM-BFF's order: a random permutation). When an example and all its demonstrations do not fit the
model's rows, the first demonstrations are left out whole (never cut mid-way).
"""

from __future__ import annotations

import logging
import random
from statistics import mean

from frozen_lm import data as data_mod
from frozen_lm.configs import field_error, name_of
from frozen_lm.errors import UserError
from frozen_lm.task import MAX_LENGTH, PromptTask
from frozen_lm.templates import Template, check_fields
from prompt_icl.config import ICLConfig

logger = logging.getLogger(__name__)
DEMOS_FIELD = "__demos__"
ESTIMATE_ROWS = 200  # pool rows the context-length check measures


def refuse_triggers(task: PromptTask) -> None:
    if task.template.n_triggers:
        raise UserError(f"template {task.spec.template!r} has [T] slots; in-context demonstrations take a "
                        "hand-written template without them")


def demo_template(task: PromptTask) -> Template:
    """The template a demonstration is written from: the task's own (a target string with no [P]
    follows the prompt as the task reads it: directly, or after a space in a chat message)."""
    text = task.spec.template
    if "[P]" not in text and "[Y]" not in text:
        text = text.rstrip() + (" [P]" if task.spec.chat else "[P]")
    return Template.parse(text)


def pool_columns(task: PromptTask) -> list[str]:
    """The data columns a demonstration reads: the template's fields (as mapped) and the answer's."""
    columns = [task.encoder.column(f) for f in task.template.fields]
    answer = task.spec.target_field if task.is_target else task.label_field
    return columns + ([answer] if answer and answer not in columns else [])


def answer_of(task: PromptTask, row: dict) -> str:
    """What a demonstration writes at [P]: the class's first label word, the fact, or the target."""
    if task.is_target:
        return task.spec.target if task.spec.target is not None else str(row[task.spec.target_field]).strip()
    if task.is_facts:
        return str(row[task.label_field]).strip()
    return task.spec.label_map[str(row[task.label_field])][0]


def demo_text(template: Template, row: dict, answer: str, column=lambda f: f) -> str:
    """The template with its fields filled from `row` and `answer` at [P], spaced as the encoder spaces them."""
    parts = []
    for seg in template.segments:
        space = " " if seg.space else ""
        if seg.kind == "text":
            parts.append(seg.value)
        elif seg.kind == "field":
            parts.append(space + str(row[column(seg.value)]).strip())
        elif seg.kind == "predict":
            parts.append(space + answer)
    return "".join(parts).strip()


def groups_of(task: PromptTask, rows: list[dict], where) -> dict:
    """{class: row indices} in the label map's order (one group, None, for facts and target strings);
    UserError (naming where(i)) for a label the label map lacks."""
    v = task.verbalizer
    if v is None or task.is_target:
        return {None: list(range(len(rows)))}
    groups: dict = {c: [] for c in v.classes}
    for i, row in enumerate(rows):
        groups[v.classes[v.class_index(row[task.label_field], where(i))]].append(i)
    return groups


def select_pool(task: PromptTask, train: data_mod.Dataset, config: ICLConfig) -> list[dict]:
    """The training rows kept as the demonstration pool (only the columns a demonstration reads): all
    of them, or pool_size drawn evenly across the classes with the seed, in the split's order.
    UserError when a class has fewer than demos_per_class examples."""
    refuse_triggers(task)
    columns = pool_columns(task)
    if not train.rows:
        raise UserError(f"{train.name} is empty")
    check_fields(task.template, train.columns(), train.name, task.encoder.column)
    data_mod.check_rows(train, columns)
    groups = groups_of(task, train.rows, train.where)
    k = config.demos_per_class
    for key, members in groups.items():
        if len(members) < k:
            what = f"class {key!r}" if key is not None else train.name
            raise field_error(config, "demos_per_class", f"is {k}, but {what} has {len(members)} training "
                              "example(s); lower it or add training examples")
    if config.pool_size < k * len(groups):
        raise field_error(config, "pool_size", f"is {config.pool_size}, fewer than the {k * len(groups)} "
                          "demonstrations each example takes; raise it")
    quota = config.pool_size // len(groups)
    rng = random.Random(f"icl:{config.seed}:pool")
    keep = []
    for members in groups.values():
        keep += members if len(members) <= quota else rng.sample(members, quota)
    return [{c: train.rows[i][c] for c in columns} for i in sorted(keep)]


class Demonstrations:
    """A pool of training rows written as demonstrations for one task.

    task: the task as given (its hand-written template is the query); pool: the training rows;
    groups: pool indices per class; texts: each pool row as a demonstration; separator: the text
    between demonstrations and before the query; scoring_task: the task's template after a
    {__demos__} field, which the shared encoder fills from the column `add_to` adds.
    """

    def __init__(self, task: PromptTask, pool: list[dict], config: ICLConfig):
        refuse_triggers(task)
        self.task, self.pool, self.config = task, list(pool), config
        self.columns = pool_columns(task)
        for i, row in enumerate(self.pool):
            lacking = [c for c in self.columns if c not in row]
            if lacking:
                raise UserError(f"demonstration pool row {i + 1} has no {lacking[0]!r} column, which this task reads "
                                f"(it has: {', '.join(row)}); use the task the demonstrations were drawn for")
        self.groups = groups_of(task, self.pool, lambda i: f"demonstration pool row {i + 1}")
        self.template = demo_template(task)
        column = task.encoder.column
        self.texts = [demo_text(self.template, row, answer_of(task, row), column) for row in self.pool]
        self.separator = config.separator_for(task.lm.is_masked)
        # Whitespace after the last demonstration is template text (a field value is stripped); a separator
        # such as ' [SEP] ' stays in the value, so a special token in it is no template text either.
        self.glue = self.separator[len(self.separator.rstrip()):]
        mapped = ",".join(f"{f}={c}" for f, c in task.field_map.items()) or None  # the new first field takes none
        self.scoring_task = task.derive(template=f"{{{DEMOS_FIELD}}}{self.glue}{task.spec.template}", text_fields=mapped)
        self._by_row: dict[tuple, list[int]] = {}
        for j, row in enumerate(self.pool):
            self._by_row.setdefault(self._key(row), []).append(j)
        self._fixed: list[int] | None = None
        after = self.scoring_task.template.after_predict()  # a causal row drops the text after [P] (counted when cutting)
        self._tail = sum(self.n_tokens(s.value) for s in after if s.kind == "text")

    @property
    def per_example(self) -> int:
        """Demonstrations before every example (demos_per_class per class)."""
        return self.config.demos_per_class * len(self.groups)

    def _key(self, row: dict) -> tuple:
        return tuple(str(row.get(c, "")).strip() for c in self.columns)

    # ---------------------------------------------------------------- which demonstrations
    def picks(self, i: int, row: dict | None = None) -> list[int]:
        """Pool indices of the demonstrations before example `i` of a split, in their order ('sampled':
        never a pool row equal to `row`, the example itself, unless the pool has no other)."""
        seed = self.config.seed
        if self.config.mode == "fixed":
            if self._fixed is None:
                self._fixed = self._draw(random.Random(f"icl:{seed}:fixed"), set())
            return list(self._fixed)
        skip = set(self._by_row.get(self._key(row), ())) if row is not None else set()
        return self._draw(random.Random(f"icl:{seed}:{i}"), skip)

    def _draw(self, rng: random.Random, skip: set[int]) -> list[int]:
        picked = []
        for members in self.groups.values():
            candidates = [j for j in members if j not in skip] if skip else members
            picked += rng.sample(candidates, min(self.config.demos_per_class, len(candidates)))
        if not picked and skip:  # a one-row pool (a fixed target and no data): the example is its own demonstration
            return self._draw(rng, set())
        rng.shuffle(picked)
        return picked

    def joined(self, texts: list[str]) -> str:
        """The demonstrations as the column's text (the encoder strips the ends)."""
        return (self.separator.join(texts) + self.separator).strip()

    # ---------------------------------------------------------------- rows
    def add_to(self, data: data_mod.Dataset) -> data_mod.Dataset:
        """The split with each row's demonstrations in the __demos__ column (rows are copied)."""
        if not data.rows:
            return data
        check_fields(self.task.template, data.columns(), data.name, self.task.encoder.column)
        data_mod.check_rows(data, [self.task.encoder.column(f) for f in self.task.template.fields])
        rows, short = [], 0
        for i, row in enumerate(data.rows):
            texts = [self.texts[j] for j in self.picks(i, row)]
            budget = self.room(row)
            if self.n_tokens(self.joined(texts)) > budget:
                short += 1
                while len(texts) > 1 and self.n_tokens(self.joined(texts)) > budget:
                    texts.pop(0)
            rows.append({**row, DEMOS_FIELD: self.joined(texts)})
        if short:
            logger.info("%d of %d examples of %s are too long for all their demonstrations: the first ones were left "
                        "out", short, len(rows), data.name)
        return data_mod.Dataset(data.name, rows, list(data.lines))

    def n_tokens(self, text: str) -> int:
        return len(self.task.lm.tokenizer(text, add_special_tokens=False).input_ids)

    def room(self, row: dict) -> int:
        """Tokens left for the demonstrations in the scored row of `row` (the encoder's row limit less
        the example, its specials and the answer's room), so the encoder never cuts a field."""
        task = self.scoring_task
        enc = task.encoder
        if task.is_target:
            text = task.spec.target if task.spec.target is not None else str(row[task.spec.target_field])
            reserve = self.n_tokens((" " if task.template.predict_space else "") + text)
        else:
            reserve = task.verbalizer.max_len if task.verbalizer is not None else 1
        ids, _, _ = enc.encode_one({**row, DEMOS_FIELD: ""}, [enc.placeholder] * max(reserve, 1))
        used = len(ids)
        if not enc.is_masked:  # a causal row stops before its last answer token and drops the text after [P]
            used += 1 + self._tail
        return enc.max_length - used

    def preview(self, row: dict) -> str:
        """A split's first example `row` as the model reads it (its demonstrations, then the query with
        [P] where the answer is read; no special tokens)."""
        demos = self.add_to(data_mod.Dataset("preview", [dict(row)])).rows[0][DEMOS_FIELD]
        return demos + self.glue + demo_text(self.template, row, "[P]", self.task.encoder.column)

    # ---------------------------------------------------------------- the context-length check
    def check_length(self) -> None:
        """UserError when demos_per_class demonstrations of every class and a typical example do not
        fit the model's rows (estimated on the pool: mean demonstration and example lengths)."""
        sample = self.pool[:ESTIMATE_ROWS]
        sep = self.n_tokens(self.separator)
        per_demo = mean(self.n_tokens(t) + sep for t in self.texts[:ESTIMATE_ROWS])
        need = round(self.per_example * per_demo)
        example = round(mean(self.scoring_task.encoder.max_length - self.room(r) for r in sample))
        window = self.scoring_task.encoder.max_length
        if need + example <= window:
            return
        positions = getattr(self.task.lm.config, "max_position_embeddings", None)
        why = f" (this library's row limit, frozen_lm.task.MAX_LENGTH; the model has {positions} positions)" \
            if window == MAX_LENGTH and positions and positions > window else ""
        k = self.config.demos_per_class
        raise UserError(f"{name_of(self.config, 'demos_per_class')} {k} needs about {need} tokens of demonstrations "
                        f"({self.per_example} of about {round(per_demo)}) and each example about {example} more; "
                        f"the model reads {window}{why}; lower it")
