"""The method registry: one algorithm = one registered `Method` (as PEFT's `register_peft_method`).

A method package registers its methods when imported; packages announce themselves under the
entry-point group `frozen_lm.methods` (this project's own packages too), so a new method is one
folder plus one entry point: the `autoprompt` command, `compare`'s method list and `frozen_lm.run`
all read this registry. `frozen_lm` names no method.

A `Method` says what the runner (frozen_lm.runner) needs to run it and what a comparison needs to
place it: its config dataclass (seed inside), its `fit(run) -> Result` (the algorithm; the runner
owns output folders, data, interrupts and resume), its result class (which reads its artifacts),
what it trains, which template it takes, and its default hyperparameter search space.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata

from frozen_lm.errors import UserError

logger = logging.getLogger(__name__)
ENTRY_POINTS = "frozen_lm.methods"
TRAINS = ("nothing", "tokens", "vectors", "weights")
TEMPLATES = ("manual", "trigger")


@dataclass(frozen=True)
class Command:
    """How the command line presents a method (the CLI builds the click command from this and the
    config dataclass). name: the subcommand; methods that share it are chosen with --method (the
    one with default=True runs without it). help: the --help text (first line: the summary).
    summary(result) -> dict: the printed row (the CLI adds the artifact folder under `out_key`);
    headline(result) -> str: a line printed above it; details(result) -> {key: (title, rows)}:
    tables printed above the summary (and added to --json). manual_template: the built-in demo task
    lends its hand-written template rather than its [T] template (or a function of the config;
    None: as the method's `template` says).
    compare_manual: also score a hand-written template (--manual) on the dev split beside the result.
    options: a dataclass of command-line-only options (not saved); check(task, config, options) runs
    before any work, after(result, task, options) once the result is saved. alternative(options,
    cli) runs something other than one run when the options ask for it (GCG's behaviors file) and
    returns the tables to print, [(title, rows)], or None for the usual run; cli has the task
    options as a dict (`cli.task`), `cli.config()` (the method's config from the typed options),
    `cli.load_lm()`, and `cli.out`, `cli.overwrite`, `cli.resume`, `cli.progress`.
    models: what several models (`--model a,b`) mean: 'one' (refused: one model per run), 'joint'
    (one run on the first model with the others as the run's input 'models', e.g. a prompt searched
    for all of them) or 'each' (one run per model, in OUT/<n>-<model>/); across(results, out) ->
    (title, rows): after the 'each' runs, a table over them (and the files it writes into OUT)."""

    name: str
    help: str
    summary: Callable
    headline: Callable | None = None
    details: Callable | None = None
    out_key: str = "out"
    manual_template: bool | Callable | None = None
    compare_manual: bool = False
    options: type | None = None
    check: Callable | None = None
    after: Callable | None = None
    alternative: Callable | None = None
    default: bool = False
    models: str = "one"
    across: Callable | None = None


@dataclass(frozen=True)
class Derived:
    """A prompt read off a result that a comparison scores as a row of its own (a soft prompt's
    nearest-token reading): name (the row is 'METHOD (name)'), the prompt `evaluate` takes, what it
    is made of ('tokens'), and its text."""

    name: str
    prompt: object
    trains: str = "tokens"
    text: str = ""


@dataclass(frozen=True)
class Method:
    """One algorithm.

    name: registry name, artifact method name and the name a grid uses; config: its config dataclass;
    fit(run: frozen_lm.runner.Run) -> Result: the algorithm on a prepared run; result: its Result
    class; trains: 'nothing', 'tokens' (a discrete prompt), 'vectors' (a soft prompt) or 'weights';
    template: 'manual' (a hand-written template, extended or trained on) or 'trigger' (one with [T]
    slots to fill); space: the default hyperparameter search space {config field: [values]} that a
    tuned comparison tries; grid_defaults: config values a comparison starts from (e.g. how many
    virtual tokens prompt tuning prepends to a hand-written template); prepare(task, config, splits)
    -> (task, config): checks and model-dependent defaults, before any work (splits: the loaded data); resumable: the config
    fields a resumed run may change (None: the method cannot resume); check_resume(previous,
    config): refuses a resume that would not continue the saved run; needs_dev: the run selects on
    a dev split; derived(result, task) -> [Derived]: extra prompts a comparison scores; aliases:
    (old artifact method name, {saved config key: value}) pairs of earlier versions it reads; imports: modules it imports lazily (a
    comparison imports them before it measures memory); summary: one line for method lists;
    command: how the CLI presents it; module: the package that registers it; comparable: a
    comparison may run it as one of its methods (False for a measurement such as intrinsic dimension).
    """

    name: str
    config: type
    fit: Callable
    result: type
    trains: str = "nothing"
    template: str = "manual"
    space: dict = field(default_factory=dict)
    grid_defaults: dict = field(default_factory=dict)
    prepare: Callable | None = None
    resumable: tuple[str, ...] | None = None
    check_resume: Callable | None = None
    needs_dev: bool = True
    derived: Callable | None = None
    aliases: tuple[tuple[str, dict], ...] = ()
    imports: tuple[str, ...] = ()
    summary: str = ""
    command: Command | None = None
    module: str = ""
    comparable: bool = True

    def __post_init__(self):
        if self.trains not in TRAINS:
            raise ValueError(f"Method {self.name!r}: trains must be one of {TRAINS}, got {self.trains!r}")
        if self.template not in TEMPLATES:
            raise ValueError(f"Method {self.name!r}: template must be one of {TEMPLATES}, got {self.template!r}")
        names = {f for f in getattr(self.config, "__dataclass_fields__", {})}
        unknown = [k for k in (*self.space, *self.grid_defaults) if k not in names]
        if unknown:
            raise ValueError(f"Method {self.name!r}: {unknown[0]!r} is not a field of {self.config.__name__}")

    def reads(self, name: str, config: dict) -> bool:
        """Whether an artifact of method `name` with this saved config is this method's (an alias
        matches when the saved config holds every value it names)."""
        return any(old == name and all(config.get(k) == v for k, v in when.items()) for old, when in self.aliases)


_METHODS: dict[str, Method] = {}
_plugins_loaded = False


def register_method(method: Method) -> Method:
    """Add a method (idempotent for the same name and module)."""
    old = _METHODS.get(method.name)
    if old is not None and old.module != method.module:
        raise ValueError(f"method {method.name!r} is registered twice ({old.module} and {method.module})")
    _METHODS[method.name] = method
    return method


def load_plugins() -> None:
    """Import the packages announced under the `frozen_lm.methods` entry-point group (once)."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for ep in metadata.entry_points(group=ENTRY_POINTS):
        try:
            ep.load()
        except Exception as e:  # a broken third-party plug-in must not break the others
            logger.warning("method plug-in %s (%s) failed to load: %s", ep.name, ep.value, e)


def methods() -> dict[str, Method]:
    """Every registered method by name (plug-ins loaded first), in registration order."""
    load_plugins()
    return dict(_METHODS)


def get(name: str, where: str = "") -> Method:
    """The method called `name`; UserError listing the known ones."""
    found = methods().get(name)
    if found is None:
        raise UserError(f"{where + ': ' if where else ''}unknown method {name!r}; known: {', '.join(methods())}")
    return found


def for_config(config) -> Method:
    """The method whose config class `config` is an instance of."""
    for method in methods().values():
        if type(config) is method.config:
            return method
    raise UserError(f"{type(config).__name__} is not the config of a registered method")


def resolve(method=None, config=None) -> Method:
    """A Method from a Method, its name, or (method None) its config's class."""
    if isinstance(method, Method):
        return method
    if isinstance(method, str):
        return get(method)
    if config is not None:
        return for_config(config)
    raise UserError("give a method (a registered name, e.g. 'autoprompt') or its config")


def for_artifact(name: str, config: dict | None = None, module: str | None = None, where: str = "") -> Method:
    """The method that owns an artifact saved as method `name` with this config (earlier versions'
    names through the methods' aliases); imports `module`, the package that saved it, first."""
    missing = None
    if module:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as e:  # renamed since, or not installed: the entry points may know it
            missing = e.name
    known = methods()
    for method in known.values():
        if method.reads(name, config or {}):
            return method
    if name in known:
        return known[name]
    if missing:
        raise UserError(f"{where}: a {name} artifact needs the '{module}' package, which this installation "
                        f"lacks ({missing} not found); install it, e.g. `pip install -e .`")
    raise UserError(f"{where}: method {name!r} is not installed (known: {', '.join(sorted(known)) or 'none'})")
