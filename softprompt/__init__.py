"""Prompt tuning, prefix tuning and PEZ on a frozen language model, with nearest-token interpretation.

    import softprompt
    r = softprompt.tune(task, train, dev, softprompt.TuneConfig(num_virtual_tokens=20, seed=0))
    r.metrics["dev"]; evaluate(task, test, prompt=r); r.save("runs/pt"); r.export_peft("runs/pt-peft")
    reading = softprompt.nearest(r, k=5); evaluate(task, test, prompt=reading.prompt)
    h = softprompt.tune(task, train, dev, softprompt.TuneConfig(method="pez", fluency_weight=0.1))
    h.prompt, h.filled_template, h.metrics["prompt_perplexity"]; evaluate(task, test, prompt=h)

Target strings are tasks of their own (`PromptTask(lm, template, target=...)` or `target_field=`):
tune trains them with the LM loss of the target and scores them with the shared evaluator.

Modules: config (TuneConfig), effective (the task a soft prompt trains and applies on), init
(random / vocab / labels / text initializations), prompt (vectors at the [T] slots), prefix
(key/value prefixes, MLP reparameterization and fold), train (loss and scoring for the shared
loop), run (the `tune` function), result (TuneResult, PezResult), pez (projection onto tokens and
the straight-through objective), pez_fit (PEZ in the shared loop, keeping the best discrete
prompt), pez_run (PEZ's result), fluency (trigger log-probabilities, prompt perplexity), reading
(nearest tokens, `nearest`), peft_export (PEFT's adapter layout), command (`autoprompt tune`).
"""

from frozen_lm.methods import Method, register_method
from softprompt.command import COMMAND
from softprompt.config import TuneConfig
from softprompt.reading import NearestReading, nearest
from softprompt.result import ARTIFACTS, PezResult, TuneResult
from softprompt.run import tune

__all__ = ["NearestReading", "PezResult", "TuneConfig", "TuneResult", "nearest", "tune"]

register_method(Method(name="tune", config=TuneConfig, run=tune, result=TuneResult, artifacts=ARTIFACTS,
                       module="softprompt", command=COMMAND))
