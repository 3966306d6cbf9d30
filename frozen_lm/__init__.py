"""One frozen language model shared by discrete prompt search, soft prompts and intrinsic dimension."""

__version__ = "0.1.0"

from frozen_lm.errors import UserError  # noqa: E402
from frozen_lm.model import FrozenLM  # noqa: E402

__all__ = ["FrozenLM", "UserError", "__version__"]
