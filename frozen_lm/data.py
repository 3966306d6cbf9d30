"""Data: JSONL/JSON, TSV and CSV files (with header), Hugging Face datasets, in-memory rows and
built-in demo tasks.

A source is a file path, `hf:NAME[/CONFIG]:SPLIT` (needs the `datasets` extra), `demo:TASK[:train|dev]`,
a list of dicts, or a `datasets.Dataset`. Every example keeps where it came from (file and line), so
an error about a bad row names it. `describe` gives what an artifact records about a split: where
it came from (an absolute path for files), its size and a hash of its rows.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import random
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from frozen_lm.errors import UserError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoTask:
    """A small task written for this project, so every command runs without any files."""

    name: str
    file: str
    label_field: str
    template: str  # the default search/tuning template
    manual_template: str  # a hand-written prompt, the baseline
    label_map: dict | None  # None: fact retrieval (the label is the answer word)
    description: str


DEMO_TASKS = {
    t.name: t
    for t in [
        DemoTask("sentiment", "sentiment.jsonl", "label", "{sentence} [T] [T] [T] [P]",
                 "{sentence} It was [P] .", {"0": ["terrible"], "1": ["great"]},
                 "96 one-line movie reviews, 0 negative / 1 positive (64 train, 32 dev)"),
        DemoTask("capitals", "capitals.jsonl", "obj_label", "{sub_label} [T] [T] [T] [P]",
                 "The capital of {sub_label} is [P] .", None,
                 "103 countries and their capitals, fact retrieval (sub_label -> obj_label)"),
    ]
}
DEFAULT_TASK = "sentiment"


@dataclass
class Dataset:
    """Rows of one split, each a dict of fields, with its source and line numbers."""

    name: str
    rows: list[dict]
    lines: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)

    def where(self, i: int) -> str:
        return f"{self.name}:{self.lines[i]}" if self.lines else f"{self.name} row {i + 1}"

    def columns(self) -> list[str]:
        return list(self.rows[0]) if self.rows else []

    def sample(self, n: int | None, seed: int) -> Dataset:
        """At most n rows, drawn without replacement with a fixed seed (all rows if n is None)."""
        if n is None or n >= len(self.rows):
            return self
        idx = sorted(random.Random(seed).sample(range(len(self.rows)), n))
        return Dataset(self.name, [self.rows[i] for i in idx], [self.lines[i] for i in idx] if self.lines else [])


Source = "str | os.PathLike | list[dict] | Dataset | datasets.Dataset"


def load(source) -> Dataset:
    """Load a split from a path, `hf:NAME[/CONFIG]:SPLIT`, `demo:TASK[:SPLIT]`, a list of dicts, a
    `datasets.Dataset` (or anything with `column_names` that iterates over dict rows), or a Dataset."""
    if isinstance(source, Dataset):
        return source
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    if not isinstance(source, str):
        return _load_rows(source)
    if source.startswith("demo:"):
        return _load_demo(source)
    if source.startswith("hf:"):
        return _load_hf(source)
    path = Path(source)
    if not path.exists():
        raise UserError(f"data file {source} does not exist (use a .jsonl/.tsv/.csv path, hf:NAME:SPLIT or demo:TASK)")
    if path.is_dir():
        raise UserError(f"data file {source} is a folder; give a .jsonl, .json, .tsv or .csv file in it")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        data = _load_json(path)
    elif suffix in (".tsv", ".csv"):
        data = _load_table(path, "\t" if suffix == ".tsv" else ",")
    else:
        raise UserError(f"data file {source}: unknown format {suffix!r}; use .jsonl, .json, .tsv or .csv")
    if not data.rows:
        raise UserError(f"data file {source} has no rows")
    return data


def read_utf8(path: Path) -> str:
    """The file's text (a UTF-8 byte-order mark dropped); UserError naming file:line when it is not UTF-8."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8").removeprefix("\ufeff")  # a byte-order mark would hide in the first column name
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise UserError(f"{path}:{line}: not UTF-8 ({e.reason} at byte {e.start}); save the file as UTF-8") from None


def _load_rows(source) -> Dataset:
    """In-memory rows: a list (or tuple) of dicts, or a Hugging Face dataset."""
    if hasattr(source, "column_names") and not isinstance(source, (list, tuple)):  # datasets.Dataset
        rows = [dict(r) for r in source]
        name = f"<{type(source).__name__} of {len(rows)} rows>"
    elif isinstance(source, (list, tuple)):
        rows = list(source)
        name = f"<list of {len(rows)} rows>"
    else:
        raise UserError(f"data must be a path, hf:NAME:SPLIT, demo:TASK, a list of dicts or a datasets.Dataset; "
                        f"got {type(source).__name__}")
    bad = next((i for i, r in enumerate(rows) if not isinstance(r, dict)), None)
    if bad is not None:
        raise UserError(f"{name}: row {bad + 1} is a {type(rows[bad]).__name__}, not a dict of fields")
    if not rows:
        raise UserError(f"{name} is empty")
    return Dataset(name, rows, list(range(1, len(rows) + 1)))


def fingerprint(rows: list[dict]) -> str:
    """sha256 of the rows as canonical JSON (same rows, same hash, whatever the file format)."""
    h = hashlib.sha256()
    for r in rows:
        h.update(json.dumps(r, sort_keys=True, default=str).encode())
        h.update(b"\n")
    return h.hexdigest()


def describe(source, data: Dataset) -> dict:
    """What an artifact records about a split: its source (files as absolute paths), rows and hash."""
    if isinstance(source, os.PathLike) or (isinstance(source, str) and not source.startswith(("demo:", "hf:"))):
        name = str(Path(source).resolve())
    else:
        name = source if isinstance(source, str) else data.name
    return {"source": name, "rows": len(data), "sha256": fingerprint(data.rows)}


def _load_json(path: Path) -> Dataset:
    text = read_utf8(path)
    if path.suffix.lower() == ".json" and text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from e
        if not all(isinstance(r, dict) for r in items):
            raise UserError(f"{path}: a .json file must hold a list of objects")
        return Dataset(str(path), items, list(range(1, len(items) + 1)))
    rows, lines = [], []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}:{n}: not valid JSON ({e.msg}); each line must be one JSON object") from e
        if not isinstance(row, dict):
            raise UserError(f"{path}:{n}: each line must be a JSON object, got {type(row).__name__}")
        rows.append(row)
        lines.append(n)
    return Dataset(str(path), rows, lines)


def _load_table(path: Path, delimiter: str) -> Dataset:
    import io

    with io.StringIO(read_utf8(path), newline="") as f:
        reader = csv.reader(f, delimiter=delimiter, quoting=csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL)
        header = next(reader, None)
        if not header:
            raise UserError(f"{path}: empty file; the first line must be a header naming the columns")
        rows, lines = [], []
        for values in reader:
            n = reader.line_num
            if not any(v.strip() for v in values):
                continue
            if len(values) != len(header):
                raise UserError(f"{path}:{n}: {len(values)} columns, but the header has {len(header)}")
            rows.append(dict(zip(header, values)))
            lines.append(n)
    return Dataset(str(path), rows, lines)


def _load_hf(source: str) -> Dataset:
    try:
        import datasets
    except ImportError as e:
        raise UserError("hf: sources need the datasets package; install it with: pip install datasets") from e
    parts = source[3:].split(":")
    if len(parts) != 2:
        raise UserError(f"{source}: write hf:NAME[/CONFIG]:SPLIT, e.g. hf:glue/sst2:validation")
    name, split = parts
    config = None
    if name.count("/") >= 1 and not Path(name).exists():
        head, _, tail = name.rpartition("/")
        if "/" in head or head in {"glue", "super_glue"}:
            name, config = head, tail
    try:
        ds = datasets.load_dataset(name, config, split=split)
    except Exception as e:  # network, missing dataset, bad split: all user-fixable
        raise UserError(f"{source}: could not load from the Hugging Face hub ({type(e).__name__}: {e})") from e
    return Dataset(source, [dict(r) for r in ds], list(range(1, len(ds) + 1)))


def _load_demo(source: str) -> Dataset:
    parts = source.split(":")
    task = DEMO_TASKS.get(parts[1]) if len(parts) > 1 else None
    if task is None:
        raise UserError(f"{source}: unknown demo task; choose one of: {', '.join('demo:' + n for n in DEMO_TASKS)}")
    text = resources.files("frozen_lm").joinpath("demo_data", task.file).read_text(encoding="utf-8")
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    lines = list(range(1, len(rows) + 1))
    split = parts[2] if len(parts) > 2 else None
    if split not in (None, "train", "dev", "all"):
        raise UserError(f"{source}: unknown split {split!r}; use train, dev or all")
    if split in ("train", "dev"):  # every third row is dev: a fixed, balanced split
        keep = [i for i in range(len(rows)) if (i % 3 == 2) == (split == "dev")]
        rows, lines = [rows[i] for i in keep], [lines[i] for i in keep]
    return Dataset(f"demo:{task.name}" + (f":{split}" if split else ""), rows, lines)


def parse_field_map(spec: str | None, template_fields: tuple[str, ...]) -> dict[str, str]:
    """`--text-fields`: 'field=column,...' pairs, or bare column names taken in template-field order."""
    if not spec:
        return {}
    out = {}
    bare = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        if "=" in part:
            name, column = (x.strip() for x in part.split("=", 1))
            if name not in template_fields:
                raise UserError(f"PromptTask.text_fields: {name!r} is not a template field (fields: {', '.join(template_fields)})")
            out[name] = column
        else:
            bare.append(part)
    if bare:
        free = [f for f in template_fields if f not in out]
        if len(bare) > len(free):
            raise UserError(f"PromptTask.text_fields names {len(bare)} columns but the template has {len(free)} unmapped fields")
        out.update(zip(free, bare))
    return out


def check_rows(data: Dataset, needed: list[str]) -> None:
    """UserError naming the first row (file:line) that lacks a needed column or has it empty."""
    for i, row in enumerate(data.rows):
        for col in needed:
            if col not in row:
                raise UserError(f"{data.where(i)}: missing field {col!r} (row has: {', '.join(row)})")
            if row[col] is None or (isinstance(row[col], str) and not row[col].strip()):
                raise UserError(f"{data.where(i)}: field {col!r} is empty")
