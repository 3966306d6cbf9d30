"""The plug-in registry: each method package registers itself here, as PEFT's `register_peft_method`.

A `Method` names its config dataclass, its run function `run(task, train, dev, config, **kw) ->
Result`, its result class (which reads its own artifacts), the artifact method names it owns, and
optionally the `Command` the command line builds from it. `frozen_lm` names no method: a package
registers on import (`import autoprompt`), and `load_result` imports the package an artifact names.
Third-party packages can also announce themselves under the entry-point group `frozen_lm.methods`.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata

from frozen_lm.errors import UserError

logger = logging.getLogger(__name__)
ENTRY_POINTS = "frozen_lm.methods"


@dataclass(frozen=True)
class Command:
    """How the command line presents a method (the CLI builds the click command from this and the
    config dataclass). help: the --help text (first line: the summary). summary(result) -> dict: the
    printed row (the CLI adds the artifact folder under `out_key`); headline(result) -> str: a line
    printed above it; details(result) -> {key: (title, rows)}: tables printed above the summary under
    their titles (and added to --json under their keys). manual_template: the built-in demo
    task lends its hand-written template rather than its [T] template. compare_manual: also score a
    hand-written template (--manual) on the dev split and print it beside the result. options: a
    dataclass of command-line-only options (not saved in the config); check(task, config, options)
    runs before any work, after(result, task, options) once the result is saved. resumable: the run
    function takes resume= and the command gets --resume."""

    name: str
    help: str
    summary: Callable
    headline: Callable | None = None
    details: Callable | None = None
    out_key: str = "out"
    manual_template: bool = False
    compare_manual: bool = False
    needs_dev: bool = True
    options: type | None = None
    check: Callable | None = None
    after: Callable | None = None
    resumable: bool = False


@dataclass(frozen=True)
class Method:
    name: str
    config: type
    run: Callable
    result: type
    artifacts: tuple[str, ...] = ()
    command: Command | None = None
    module: str = ""

    @property
    def artifact_names(self) -> tuple[str, ...]:
        return self.artifacts or (self.name,)


_METHODS: dict[str, Method] = {}
_ARTIFACTS: dict[str, Method] = {}
_plugins_loaded = False


def register_method(method: Method) -> Method:
    """Add a method (idempotent for the same name and module)."""
    old = _METHODS.get(method.name)
    if old is not None and old.module != method.module:
        raise ValueError(f"method {method.name!r} is registered twice ({old.module} and {method.module})")
    _METHODS[method.name] = method
    for name in method.artifact_names:
        _ARTIFACTS[name] = method
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
    """Every registered method by name (plug-ins loaded first)."""
    load_plugins()
    return dict(_METHODS)


def for_artifact(name: str, module: str | None = None, where: str = "") -> Method:
    """The method that owns artifacts of method `name`; imports `module` (the package that saved
    it) when it has not registered yet."""
    if name not in _ARTIFACTS and module:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as e:
            raise UserError(f"{where}: a {name} artifact needs the '{module}' package, which this installation "
                            f"lacks ({e.name} not found); install it, e.g. `pip install -e .`") from None
    if name not in _ARTIFACTS:
        load_plugins()
    if name not in _ARTIFACTS:
        raise UserError(f"{where}: method {name!r} is not installed (known: {', '.join(sorted(_ARTIFACTS)) or 'none'})")
    return _ARTIFACTS[name]
