"""Command-line options made from dataclasses, the task options every command shares, and how the
built-in demo task fills in what the user leaves out."""

from __future__ import annotations

import typing
from dataclasses import MISSING, dataclass, field, fields

import click

from frozen_lm import configs
from frozen_lm import data as data_mod
from frozen_lm.configs import nested_type
from frozen_lm.errors import UserError
from frozen_lm.registry import DEFAULT_MODEL


@dataclass
class TaskOptions:
    """Options shared by every command: which model, template, label words and data."""

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
    target: str | None = field(default=None, metadata={
        "help": "a target string the model should produce after the prompt (causal LMs), instead of label words; "
                "with no data fields in the template no data is needed"})
    target_field: str | None = field(default=None, metadata={"help": "data column holding each example's target string"})
    chat: bool = field(default=False, metadata={
        "help": "the template is a user message: render it with the model's chat template, the target being the "
                "assistant's reply", "flag": "--chat"})
    multi_token: str = field(default="skip", metadata={
        "help": "facts whose answer is several tokens: skip them (counted) or score their first token",
        "choices": ["skip", "first"]})
    device: str = field(default="auto", metadata={
        "help": "cpu, cuda, cuda:N, or auto (CUDA when present; under torchrun each process's own GPU)"})
    dtype: str = field(default="auto", metadata={
        "help": "base weights in float32, bfloat16 or float16 (trained prompts stay float32); auto = float32"})
    device_map: str | None = field(default=None, metadata={
        "help": "spread one copy of a model too large for one GPU over the machine's GPUs (then CPU) with "
                "accelerate: auto, balanced, balanced_low_0 or sequential (one process; pip install accelerate)",
        "choices": ["auto", "balanced", "balanced_low_0", "sequential"]})
    max_memory: str | None = field(default=None, metadata={
        "help": "with --device-map: the most each device may hold, e.g. '0=20GiB,1=20GiB,cpu=64GiB'"})
    quantize: str | None = field(default=None, metadata={
        "help": "load the linear layers in 8 or 4 bits (bitsandbytes, CUDA only); input-embedding gradients "
                "still flow, so search and prompt/prefix tuning work; intrinsic-dim --space model does not",
        "choices": ["8bit", "4bit"]})


TASK_FIELDS = ("template", "label_map", "label_field", "text_fields", "multi_token", "target", "target_field", "chat")


def with_demo_defaults(opts: TaskOptions, manual: bool, data: str | None = None) -> TaskOptions:
    """Fill what the user left out from a built-in demo task, when the data is the demo's.

    The demo task is the one --train names (demo:TASK); without --train, the one --data names, or
    demo:sentiment when no data is given at all. It lends its splits, label words, label column and
    template (its hand-written one when `manual`, else its [T] template). A user's own --train or
    --data takes nothing from the demo tasks.
    """
    values = {f.name: getattr(opts, f.name) for f in fields(opts)}
    if opts.target is not None or opts.target_field is not None:  # a target-string task: only a demo it names
        demo = _demo_of(opts.train) or _demo_of(data)
    else:
        demo = _demo_of(opts.train) if opts.train else (_demo_of(data) if data else data_mod.DEMO_TASKS[data_mod.DEFAULT_TASK])
    if demo is not None and (opts.target is not None or opts.target_field is not None):
        values["label_map"] = None  # the demo lends its splits only
        values["train"] = values["train"] or f"demo:{demo.name}:train"
        values["dev"] = values["dev"] or f"demo:{demo.name}:dev"
    elif demo is not None:
        if values["train"] in (None, f"demo:{demo.name}"):
            values["train"] = f"demo:{demo.name}:train"
        values["dev"] = values["dev"] or f"demo:{demo.name}:dev"
        values["template"] = values["template"] or (demo.manual_template if manual else demo.template)
        values["label_field"] = values["label_field"] or demo.label_field
        if values["label_map"] is None and demo.label_map is not None:
            values["label_map"] = demo.label_map
    if values["template"] is None:
        raise UserError("no --template given; write one with {field}, [T] and [P], e.g. '{sentence} [T] [T] [P]'")
    return TaskOptions(**values)


def _demo_of(source: str | None):
    if source and source.startswith("demo:"):
        name = source.split(":")[1]
        if name not in data_mod.DEMO_TASKS:
            raise UserError(f"{source}: unknown demo task; choose one of: {', '.join('demo:' + n for n in data_mod.DEMO_TASKS)}")
        return data_mod.DEMO_TASKS[name]
    return None


def load_lm(opts: TaskOptions, model: str | None = None, dtype: str | None = None):
    """The FrozenLM the options name (model / dtype: instead of the options', e.g. a saved run's),
    placed as they say. Under torchrun the other processes than 0 log warnings only."""
    import logging

    from frozen_lm import distributed
    from frozen_lm.model import FrozenLM

    lm = FrozenLM.load(model or opts.model, opts.device, dtype or opts.dtype, device_map=opts.device_map,
                       max_memory=opts.max_memory, quantize=opts.quantize)
    if not distributed.is_main():
        logging.getLogger().setLevel(max(logging.getLogger().level, logging.WARNING))
    return lm


def make_task(opts: TaskOptions, lm):
    from frozen_lm.task import PromptTask

    return PromptTask(lm, opts.template, opts.label_map, label_field=opts.label_field, text_fields=opts.text_fields,
                      multi_token=opts.multi_token, target=opts.target, target_field=opts.target_field, chat=opts.chat)


# ---------------------------------------------------------------- options from dataclasses
class IntList(click.ParamType):
    """'10,30,100' -> [10, 30, 100]."""

    name = "INTS"

    def convert(self, value, param, ctx):
        if value is None or isinstance(value, list):
            return value
        parts = [p.strip() for p in str(value).split(",") if p.strip()]
        try:
            return [int(p) for p in parts]
        except ValueError:
            self.fail(f"{value!r}: give whole numbers separated by commas, e.g. 10,30,100", param, ctx)


def _click_type(f, hint: str):
    choices = f.metadata.get("choices")
    if choices:
        return click.Choice(choices)
    if hint.startswith("list[int]"):
        return IntList()
    for name, typ in (("bool", bool), ("int", int), ("float", float)):
        if hint.startswith(name):
            return typ
    return str


def option_fields(cls) -> list[tuple[str, object, object]]:
    """(flag name, dataclass field, type hint) of every option a config gives the command line: its
    own fields, and the fields of a nested option group (a dataclass-typed field) flattened in."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in fields(cls):
        if not f.init or f.metadata.get("cli") is False:
            continue
        sub = nested_type(hints.get(f.name))
        if sub is not None:
            out += option_fields(sub)
        else:
            out.append((f.name, f, hints.get(f.name, f.type)))
    return out


def option_groups(cls) -> dict[str, list[str]]:
    """{field: the option names of its fields} of a config's nested option groups."""
    hints = typing.get_type_hints(cls)
    return {f.name: [n for n, _, _ in option_fields(sub)] for f in fields(cls)
            if f.init and (sub := nested_type(hints.get(f.name))) is not None}


def flags_of(cls) -> list[str]:
    """The flags options_from gives a config class (its --x, and --no-x of a switch)."""
    out = []
    for name, f, hint in option_fields(cls):
        flag = f.metadata.get("flag") or "--" + name.replace("_", "-")
        out.append(flag)
        if "bool" in str(hint) and "flag" not in f.metadata:
            out.append(f"--no-{flag[2:]}")
    return out


def options_from(cls, skip: tuple[str, ...] = ()):
    """Click options for every field of a config dataclass: --field-name (or metadata 'flag'), its
    type, default and help; nested option groups flattened. Booleans become --x/--no-x switches (a
    'flag' makes a plain flag)."""

    def decorate(fn):
        for name, f, hint in reversed(option_fields(cls)):
            if name in skip:
                continue
            hint = hint.__name__ if isinstance(hint, type) else str(hint)
            flag = f.metadata.get("flag") or "--" + name.replace("_", "-")
            default = None if f.default is MISSING else f.default
            typ, help_ = _click_type(f, hint), f.metadata.get("help", "")
            shown = ",".join(map(str, default)) if isinstance(default, list) else default
            if typ is bool and "flag" in f.metadata:
                fn = click.option(flag, name, is_flag=True, default=default, help=help_)(fn)
            elif typ is bool:
                fn = click.option(f"{flag}/--no-{flag[2:]}", name, default=default, show_default=True, help=help_)(fn)
            else:
                fn = click.option(flag, name, type=typ, default=shown, show_default=default is not None, help=help_)(fn)
        return fn

    return decorate


def config_from(cls, kwargs: dict, ctx: click.Context | None = None, base: dict | None = None):
    """A config dataclass from click kwargs (its own fields; a nested option group is built when one
    of its options was typed, else left at its default). base: saved values the typed options
    override (a resumed run's config); without ctx every value in kwargs counts as typed."""
    typed = (lambda name: name in kwargs) if ctx is None else (lambda name: name in kwargs and given(ctx, name))
    values = dict(base or {})
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        if not f.init:
            continue
        sub = nested_type(hints.get(f.name))
        if sub is not None:
            group = option_fields(sub)
            names = [n for n, _, _ in group]
            if ctx is None:  # no context: a group counts as typed when a value is not its default
                changed = any(n in kwargs and kwargs[n] != sf.default for n, sf, _ in group)
            else:
                changed = any(typed(n) for n in names)
            if changed:
                saved = values.get(f.name) if isinstance(values.get(f.name), dict) else {}
                values[f.name] = {**saved, **{n: kwargs[n] for n in names if n in kwargs and (typed(n) or n not in saved)}}
        elif f.name in kwargs and (typed(f.name) or f.name not in values):
            values[f.name] = kwargs[f.name]
    return configs.from_dict(cls, values, strict=False)


def given(ctx: click.Context, name: str) -> bool:
    """Whether the user gave this option, typed or in a --config file (rather than taking its default)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT", "PROMPT", "DEFAULT_MAP")
