"""The method packages the command line offers. Adding a method to the command line is one line
here (or an entry point in the group `frozen_lm.methods`, for a package of your own)."""

from __future__ import annotations

import importlib
import logging

logger = logging.getLogger(__name__)
PACKAGES = ("autoprompt", "softprompt", "intrinsic_dim", "baselines")


def load() -> None:
    """Import each method package (each registers itself); a package that is absent is skipped."""
    from frozen_lm.methods import load_plugins

    for name in PACKAGES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                logger.warning("the %s commands are unavailable: %s", name, e)
        except ImportError as e:  # a broken package must not take the other commands with it
            logger.warning("the %s commands are unavailable: %s", name, e)
    load_plugins()
