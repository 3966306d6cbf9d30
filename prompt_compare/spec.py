"""A grid: tasks x methods x seeds, from a spec file (YAML, TOML or JSON), a dict, or Python objects.

    model: smollm2-135m            # optional; device, dtype too (or models: [a, b]: every method on each)
    seeds: [13, 21, 42]
    defaults: {steps: 30}          # given to every method whose config has the option
    tune: true                     # optional: every method tries its default search space (Method.space)
    sweep: {lora: {lr: [1e-4, 3e-4, 1e-3]}}   # optional: spaces of your own (prompt_compare.sweep)
    tasks:
      - name: sst2
        template: "{sentence} It was [P] ."             # hand-written, no [T] slots
        trigger_template: "{sentence} [T] [T] [T] [P] ." # for discrete search (default: 3 slots before [P])
        label_map: {"0": terrible, "1": great}
        train: k-shot/sst2/16-{seed}/train.jsonl         # {seed} is the cell's seed
        dev: k-shot/sst2/16-{seed}/dev.jsonl
        test: k-shot/sst2/test.jsonl
    methods: [manual, autoprompt, {lora: {r: 16}}, {name: lora-big, method: lora, config: {r: 64}}]

Methods are registered methods (prompt_compare.entries; `preset:` is read as `method:`); a list
where an option is not a list is a space to sweep (`lora: {lr: [1e-4, 3e-4]}`). Relative
paths are read from the spec file's folder (the working folder for the API). Every mistake is one
UserError naming the key the user wrote, e.g. "grid.yaml: methods[2].config.rr is not an option; ...".
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

from frozen_lm.configs import read_mapping
from frozen_lm.errors import UserError
from frozen_lm.registry import DEFAULT_MODEL
from frozen_lm.templates import Template
from frozen_lm.verbalizer import parse_label_map
from prompt_compare.entries import MethodDef, all_options, method_def, methods_from
from prompt_compare.sweep import check_sweep

logger = logging.getLogger(__name__)
TOP_KEYS = ("model", "models", "device", "dtype", "seeds", "defaults", "tune", "sweep", "tasks", "methods")
TASK_KEYS = ("name", "template", "trigger_template", "label_map", "label_field", "text_fields", "train", "dev", "test")


@dataclass(frozen=True)
class TaskDef:
    """One task of a grid: its templates, label words and splits ({seed} in a path: the cell's seed)."""

    name: str
    template: str
    train: str
    dev: str
    test: str
    label_map: dict | None = None
    trigger_template: str | None = None
    label_field: str | None = None
    text_fields: str | None = None

    def template_for(self, kind: str) -> str:
        """The hand-written template ('manual') or the one with [T] slots ('trigger')."""
        if kind == "manual":
            return self.template
        return self.trigger_template or default_trigger_template(self.template)

    def sources(self, seed: int) -> dict[str, str]:
        return {s: getattr(self, s).replace("{seed}", str(seed)) for s in ("train", "dev", "test")}

    def definition(self) -> dict:
        """What defines the task beside its name: templates (the trigger one as used), label words,
        fields and data sources; results.jsonl keeps it with every cell (key 'task_spec')."""
        return {"template": self.template, "trigger_template": self.template_for("trigger"),
                "label_map": self.label_map, "label_field": self.label_field, "text_fields": self.text_fields,
                "train": self.train, "dev": self.dev, "test": self.test}


@dataclass
class Grid:
    tasks: list[TaskDef]
    methods: list[MethodDef]
    seeds: list[int]
    model: str = DEFAULT_MODEL
    device: str = "auto"
    dtype: str = "auto"
    defaults: dict = field(default_factory=dict)
    where: str = ""  # what error messages name first (the spec file)
    defaults_at: dict = field(default_factory=dict)  # {key: where that default was written}: 'grid.yaml: defaults.steps'
    models: list[str] = field(default_factory=list)  # every method runs on each ([] : [model])
    tune: bool = False  # every method tries its default search space (Method.space)
    sweep: dict = field(default_factory=dict)  # {method name: {option: values}} as given (prompt_compare.sweep)
    sweep_at: str = ""  # what messages about the sweep name first (the spec file, or '' for the API's)
    keep_weights: bool = False  # keep every setting's weights, not only the chosen one's
    spaces: dict = field(default_factory=dict, repr=False)  # the sweep checked: {grid name: {option: (values, where)}}

    def default_at(self, key: str) -> str:
        return self.defaults_at.get(key) or _at(self.where, f"defaults.{key}")


def default_trigger_template(template: str) -> str:
    """Three [T] slots right before [P] (or [Y]) of a hand-written template."""
    for slot in ("[P]", "[Y]"):
        if slot in template:
            return template.replace(slot, "[T] [T] [T] " + slot, 1)
    return template


# ---------------------------------------------------------------- files and dicts
def load_spec(path) -> Grid:
    """A grid from a .yaml/.yml, .toml or .json file; UserError (one line) for anything wrong."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"spec file {path}: no such file")
    spec = read_mapping(path, f"spec file {path}")
    return grid_from_dict(spec, where=str(path), base=path.resolve().parent)


def grid_from_dict(spec, where: str = "", base: Path | None = None) -> Grid:
    """A grid from a parsed spec; relative data paths are read from `base` (default: the working folder)."""
    if not isinstance(spec, dict):
        raise UserError(f"{where or 'the spec'}: must be a mapping with tasks, methods and seeds")
    _known(spec, TOP_KEYS, where, nested=False)
    for key in ("tasks", "methods", "seeds"):
        if key not in spec:
            raise UserError(f"{_at(where, key)}: missing")
    tasks = spec["tasks"] if isinstance(spec["tasks"], list) else [spec["tasks"]]
    defaults = _mapping(spec.get("defaults", {}), _at(where, "defaults"))
    if "model" in spec and "models" in spec:
        raise UserError(f"{_at(where, 'models')}: give model (one) or models (several), not both")
    tune = spec.get("tune", False)
    if not isinstance(tune, bool):
        raise UserError(f"{_at(where, 'tune')}: give true or false, got {tune!r}")
    grid = Grid(tasks=[task_from_dict(t, _at(where, f"tasks[{i}]"), base, f"task{i + 1}") for i, t in enumerate(tasks)],
                methods=methods_from(spec["methods"], where), seeds=seeds_from(spec["seeds"], _at(where, "seeds")),
                model=str(spec.get("model", DEFAULT_MODEL)), device=str(spec.get("device", "auto")),
                dtype=str(spec.get("dtype", "auto")), defaults=defaults, where=where,
                defaults_at={key: _at(where, f"defaults.{key}") for key in defaults},
                models=models_from(spec["models"], _at(where, "models")) if "models" in spec else [],
                tune=tune, sweep=spec.get("sweep") or {}, sweep_at=where)
    return check_grid(grid)


def task_from_dict(d, where: str, base: Path | None = None, default_name: str = "task") -> TaskDef:
    """A TaskDef from a mapping (templates and label words checked; data paths resolved and checked)."""
    if isinstance(d, TaskDef):
        return d
    if not isinstance(d, dict):
        raise UserError(f"{where}: a task is a mapping with template, label_map, train, dev and test")
    _known(d, TASK_KEYS, where)
    for key in ("template", "train", "dev", "test"):
        if not isinstance(d.get(key), str) or not d[key].strip():
            raise UserError(f"{where}.{key}: missing (give a {'template' if key == 'template' else 'data file'})")
    values = {k: d.get(k) for k in TASK_KEYS}
    values["name"] = str(d.get("name") or default_name)
    _check_templates(values, where)
    try:
        values["label_map"] = parse_label_map(d.get("label_map"))
    except UserError as e:
        raise UserError(f"{where}.label_map: {e}") from None
    for key in ("train", "dev", "test"):
        values[key] = _resolve(d[key], base)
    return TaskDef(**values)


def _check_templates(values: dict, where: str) -> None:
    for key in ("template", "trigger_template"):
        if values.get(key) is None:
            continue
        try:
            t = Template.parse(values[key])
        except UserError as e:
            raise UserError(f"{where}.{key}: {e}") from None
        if key == "template" and t.n_triggers:
            raise UserError(f"{where}.template: has [T] slots; give the hand-written template here and the one with "
                            "slots as trigger_template")
        if key == "trigger_template" and not t.n_triggers:
            raise UserError(f"{where}.trigger_template: has no [T] slots for discrete search")


def seeds_from(value, where: str = "seeds") -> list[int]:
    """[13, 21, 42] or '13,21,42' -> a list of distinct ints."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list) or not value:
        raise UserError(f"{where}: give a list of whole numbers, e.g. [13, 21, 42]")
    try:
        seeds = [int(v) for v in value if not isinstance(v, bool | float)]
    except (TypeError, ValueError):
        seeds = []
    if len(seeds) != len(value):
        raise UserError(f"{where}: give whole numbers, got {value!r}")
    if len(set(seeds)) != len(seeds):
        raise UserError(f"{where}: a seed is listed twice ({value!r})")
    return seeds


def models_from(value, where: str = "models") -> list[str]:
    """['a', 'b'] or 'a,b' -> a list of distinct model names."""
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list | tuple) or not value or not all(isinstance(v, str) and v.strip() for v in value):
        raise UserError(f"{where}: give a list of model names, e.g. [smollm2-135m, gemma3-270m]")
    models = [v.strip() for v in value]
    if len(set(models)) != len(models):
        raise UserError(f"{where}: a model is listed twice ({', '.join(models)})")
    return models


def check_grid(grid: Grid) -> Grid:
    """Unique task names; methods registered; defaults known to some method; sweeps naming the grid's
    methods and their options; data files present for every seed."""
    grid.methods = [method_def(m, _at(grid.where, f"methods[{i}]")) for i, m in enumerate(grid.methods)]
    grid.models = list(grid.models or [grid.model])
    grid.model = grid.models[0]
    grid.spaces = check_sweep(grid.sweep, {m.name: m.method for m in grid.methods}, grid.sweep_at)
    names = [t.name for t in grid.tasks]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise UserError(f"{_at(grid.where, f'tasks[{i}].name')}: {name!r} is used twice")
    if not grid.tasks:
        raise UserError(f"{_at(grid.where, 'tasks')}: give at least one task")
    options = all_options()  # of every registered method: a typo, not a method left out of this grid
    for key in grid.defaults:
        if key == "seed":
            raise UserError(f"{grid.default_at(key)}: seeds come from 'seeds'")
        if key not in options:
            raise UserError(f"{grid.default_at(key)}: no method has this option; valid: {', '.join(sorted(options))}")
    for i, task in enumerate(grid.tasks):
        for seed in grid.seeds:
            for split, source in task.sources(seed).items():
                if _is_file(source) and not Path(source).exists():
                    raise UserError(f"{_at(grid.where, f'tasks[{i}].{split}')}: {source} not found (seed {seed})")
        _check_held_out(task, grid.seeds, _at(grid.where, f"tasks[{i}].test"))
    return grid


def _check_held_out(task: TaskDef, seeds: list[int], where: str) -> None:
    """UserError when the test split is the training data; a warning when it is the dev split (every
    method selects on dev, so its test column would not be held out)."""
    warned = False
    for seed in seeds:
        s = task.sources(seed)
        if same_data(s["test"], s["train"]):
            raise UserError(f"{where}: the test split is the training data ({s['test']}, seed {seed}); the table "
                            "reports each method on data it never saw: give a held-out test split")
        if not warned and same_data(s["test"], s["dev"]):
            logger.warning("%s: the test split is the dev split (%s), which every method selects on, so the test "
                           "column of task %r is not held out", where, s["test"], task.name)
            warned = True


def same_data(a: str, b: str) -> bool:
    """Whether two data sources hold the same rows: the same source, the same file content, or a demo
    task's whole data ('demo:NAME') beside one of its splits."""
    if a == b:
        return True
    if a.startswith("demo:") and b.startswith("demo:"):
        na, nb = a.split(":"), b.split(":")
        return na[1] == nb[1] and (len(na) == 2 or len(nb) == 2)
    digest = source_digest(a)
    return digest is not None and digest == source_digest(b)


def source_digest(source: str) -> str | None:
    """A data file's `file_digest` (None for demo: and hf: sources, whose name pins their content)."""
    return file_digest(Path(source)) if _is_file(source) else None


def file_digest(path: Path) -> str | None:
    """First 16 hex digits of the sha256 of a file's bytes (None when there is no such file)."""
    if not path.is_file():
        return None
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


# ---------------------------------------------------------------- helpers
def _at(where: str, key: str) -> str:
    """'grid.yaml: methods[2]', or just the key when there is no file to name."""
    return f"{where}: {key}" if where else key


def _known(d: dict, keys: tuple[str, ...], where: str, nested: bool = True) -> None:
    for key in d:
        if key not in keys:
            name = f"{where}.{key}" if nested else _at(where, str(key))
            raise UserError(f"{name}: unknown key (known: {', '.join(keys)})")


def _mapping(value, where: str) -> dict:
    if not isinstance(value, dict):
        raise UserError(f"{where}: give a mapping of option names to values")
    return {str(k): v for k, v in value.items()}


def _is_file(source: str) -> bool:
    return not source.startswith(("demo:", "hf:"))


def _resolve(source: str, base: Path | None) -> str:
    """A data source with relative file paths made absolute (from `base`, else the working folder)."""
    if not _is_file(source):
        return source
    path = Path(source).expanduser()
    if not path.is_absolute():
        path = (base or Path.cwd()) / path
    return str(path.resolve())
