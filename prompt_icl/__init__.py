"""In-context demonstrations on a hand-written template (LM-BFF's demonstrations, Gao et al. 2021;
GPT-3's k-shot context, Brown et al. 2020): nothing trains, the training split is the pool the
demonstrations are drawn from.

    import prompt_icl
    r = prompt_icl.icl(task, train, dev, prompt_icl.ICLConfig(demos_per_class=1, mode="sampled", seed=0))
    r.metrics["dev"]; r.example; evaluate(task, test, prompt=r); r.save("runs/icl"); load_result("runs/icl")

One registered method, 'icl' (trains nothing, takes the manual template). Modules: config
(ICLConfig), demos (the pool, which demonstrations each example gets, the context-length check),
result (ICLResult and its Bound, which adds the demonstrations to the rows it scores), fit (what
the runner calls), command (`autoprompt icl`).
"""

from frozen_lm.events import Callback
from frozen_lm.methods import Method, register_method
from frozen_lm.runner import run
from prompt_icl.command import ICL
from prompt_icl.config import ICLConfig
from prompt_icl.demos import DEMOS_FIELD, Demonstrations
from prompt_icl.fit import fit, prepare
from prompt_icl.result import ICLBound, ICLResult

__all__ = ["DEMOS_FIELD", "Demonstrations", "ICLBound", "ICLConfig", "ICLResult", "icl"]


def icl(task, train, dev=None, config: ICLConfig | None = None, *, test=None, out=None, overwrite: bool = False,
        callback: Callback | None = None, progress: bool = False) -> ICLResult:
    """Score the task's template after in-context demonstrations drawn from `train` on `dev` (and on
    `test`, when given: metrics['test']). train, dev, test: any data source (path, demo:/hf: source,
    list of dicts, datasets.Dataset). out: an artifact folder (refused if it holds another run, unless
    overwrite). Before any work, a UserError names the config field when a class has fewer than
    demos_per_class training examples or the demonstrations do not fit the model's rows."""
    return run("icl", task, train, dev, config or ICLConfig(), test=test, out=out, overwrite=overwrite,
               callback=callback, progress=progress)


# A tuned comparison tries one, two and four demonstrations per class (LM-BFF uses one per class, as
# more did not help RoBERTa within its 512 positions; GPT-3 fills the context, so more can help a
# causal LM with a long window), each drawn per example (LM-BFF) or as one fixed context (GPT-3).
SPACE = {"demos_per_class": [1, 2, 4], "mode": ["sampled", "fixed"]}

register_method(Method(
    name="icl", config=ICLConfig, fit=fit, result=ICLResult, trains="nothing", template="manual", space=SPACE,
    prepare=prepare, needs_dev=False, summary="in-context demonstrations before the hand-written template (LM-BFF)",
    command=ICL, module=__name__))
