"""Registry of methods whose artifacts `autoprompt evaluate ARTIFACT` can score.

Each entry names a function `(artifact, lm, task) -> logits_fn`, where logits_fn maps encoded
`Rows` to the logits at [P] with the learned prompt applied. Add a method with one entry here.
"""

from __future__ import annotations

import importlib

from frozen_lm.errors import UserError

METHODS: dict[str, str] = {
    "autoprompt": "autoprompt.search:artifact_logits_fn",
    "prompt_tuning": "softprompt.apply:artifact_logits_fn",
    "prefix_tuning": "softprompt.apply:artifact_logits_fn",
    "intrinsic_dim": "intrinsic_dim.apply:artifact_logits_fn",
}


def artifact_logits_fn(artifact, lm, task):
    target = METHODS.get(artifact.method)
    if target is None:
        raise UserError(f"{artifact.path}: method {artifact.method!r} cannot be evaluated (known: {', '.join(METHODS)})")
    module, _, name = target.partition(":")
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        raise UserError(f"{artifact.path}: a {artifact.method} artifact needs the '{module.split('.')[0]}' package, "
                        f"which this installation lacks ({e.name} not found); reinstall with `pip install -e .`") from None
    return getattr(mod, name)(artifact, lm, task)
