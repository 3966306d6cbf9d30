"""Instructions written by a language model and chosen on data: APE (Zhou et al., 2023) with
OPRO-style rounds (Yang et al., 2024), as one registered method, 'instruct'.

    import prompt_instruct
    r = prompt_instruct.instruct(task, train, dev, prompt_instruct.InstructConfig(rounds=3, seed=0))
    r.instruction, r.template, r.metrics["dev"]; evaluate(task, test, prompt=r); r.save("runs/x")
    evaluate(other_task, test, prompt=r)   # the found template is text: it scores on any model

A proposer (config.proposer_model, default the task's model) writes instructions from training
examples, then from the best instructions so far with their scores; each candidate (the
instruction before the task's hand-written template) is scored by the shared evaluator on training
examples, the best few on dev, and the best on dev wins (never worse on dev than the template
alone). Modules: config (InstructConfig), propose (meta-prompts, sampling, cleaning), pool
(candidates, scoring, choice), fit (what the runner calls), result (InstructResult), command (the
CLI's presentation).
"""

from frozen_lm.events import Callback
from frozen_lm.methods import Method, register_method
from frozen_lm.runner import run
from prompt_instruct.command import INSTRUCT
from prompt_instruct.config import InstructConfig
from prompt_instruct.fit import fit_instruct, prepare
from prompt_instruct.result import InstructResult

__all__ = ["InstructConfig", "InstructResult", "instruct"]


def instruct(task, train, dev, config: InstructConfig | None = None, *, test=None, out=None, overwrite: bool = False,
             callback: Callback | None = None, progress: bool = True) -> InstructResult:
    """Find an instruction for the task's hand-written template (no [T] slots) and return the best
    by dev score. train, dev, test: any data source (test is scored at the end, never used to
    choose: metrics['test']). out: an artifact folder rewritten after every round (refused if it
    holds another run, unless overwrite). callback(event) gets an 'iteration' Event after each
    round; returning True stops the run. Ctrl-C raises `frozen_lm.errors.Interrupted` carrying the
    best so far. A run cannot be resumed."""
    return run("instruct", task, train, dev, config or InstructConfig(), test=test, out=out, overwrite=overwrite,
               callback=callback, progress=progress)


# A tuned comparison tries one round (APE alone) against three (APE, then two OPRO rounds that
# rewrite the best instructions so far): the number of rounds is what the OPRO rounds add, and
# both stay cheap (8 sampled instructions per round, each scored on 32 training examples).
register_method(Method(
    name="instruct", config=InstructConfig, fit=fit_instruct, result=InstructResult, trains="tokens",
    template="manual", space={"rounds": [1, 3]}, prepare=prepare, resumable=None,
    summary="instructions written by a language model and chosen on data (APE, OPRO-style rounds)",
    command=INSTRUCT, module=__name__))
