"""One frozen language model shared by discrete prompt search, soft prompts and intrinsic dimension.

    from frozen_lm import FrozenLM, PromptTask, evaluate, load_result
    lm = FrozenLM.load("smollm2-135m")
    task = PromptTask(lm, "{sentence} It was [P] .", label_map={"0": "terrible", "1": "great"})
    evaluate(task, "demo:sentiment:dev")            # the manual template
    evaluate(task, test, prompt=load_result("runs/x"))  # any method's saved result

Every algorithm is a registered method (frozen_lm.methods; the packages `autoprompt`, `softprompt`,
`intrinsic_dim` and `prompt_baselines` register theirs, found through entry points), and one runner
runs any of them by name or config:

    r = frozen_lm.run("gcg", task, train, dev, out="runs/x")    # or run(None, ..., GCGConfig(...))
    sorted(frozen_lm.methods())                                  # every registered method
"""

__version__ = "0.3.0"

from frozen_lm.errors import UserError  # noqa: E402
from frozen_lm.evaluate import DiscretePrompt, evaluate  # noqa: E402
from frozen_lm.events import Event  # noqa: E402
from frozen_lm.methods import Command, Derived, Method, methods, register_method  # noqa: E402
from frozen_lm.model import FrozenLM  # noqa: E402
from frozen_lm.results import Result, load_result  # noqa: E402
from frozen_lm.runner import Run, run  # noqa: E402
from frozen_lm.task import PromptTask, TaskSpec  # noqa: E402

__all__ = ["Command", "Derived", "DiscretePrompt", "Event", "FrozenLM", "Method", "PromptTask", "Result", "Run",
           "TaskSpec", "UserError", "__version__", "evaluate", "load_result", "methods", "register_method", "run"]
