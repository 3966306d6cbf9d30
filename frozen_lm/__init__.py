"""One frozen language model shared by discrete prompt search, soft prompts and intrinsic dimension.

    from frozen_lm import FrozenLM, PromptTask, evaluate, load_result
    lm = FrozenLM.load("smollm2-135m")
    task = PromptTask(lm, "{sentence} It was [P] .", label_map={"0": "terrible", "1": "great"})
    evaluate(task, "demo:sentiment:dev")            # the manual template
    evaluate(task, test, prompt=load_result("runs/x"))  # any method's saved result

The methods live in their own packages (`autoprompt`, `softprompt`, `intrinsic_dim`), which
register themselves in `frozen_lm.methods` on import.
"""

__version__ = "0.2.0"

from frozen_lm.errors import UserError  # noqa: E402
from frozen_lm.evaluate import DiscretePrompt, evaluate  # noqa: E402
from frozen_lm.events import Event  # noqa: E402
from frozen_lm.methods import Command, Method, register_method  # noqa: E402
from frozen_lm.model import FrozenLM  # noqa: E402
from frozen_lm.results import Result, load_result  # noqa: E402
from frozen_lm.task import PromptTask, TaskSpec  # noqa: E402

__all__ = ["Command", "DiscretePrompt", "Event", "FrozenLM", "Method", "PromptTask", "Result", "TaskSpec", "UserError",
           "__version__", "evaluate", "load_result", "register_method"]
