"""Prompt tuning and prefix tuning on a frozen language model, with nearest-token interpretation.

    import softprompt
    r = softprompt.tune(task, train, dev, softprompt.TuneConfig(num_virtual_tokens=20, seed=0))
    r.metrics["dev"]; evaluate(task, test, prompt=r); r.save("runs/pt"); r.export_peft("runs/pt-peft")
    reading = softprompt.nearest(r, k=5); evaluate(task, test, prompt=reading.prompt)

Modules: config (TuneConfig), effective (the task a soft prompt trains and applies on), init
(random / vocab / labels / text initializations), prompt (vectors at the [T] slots), prefix
(key/value prefixes, MLP reparameterization and fold), targets (LM-loss examples), train (loss and
scoring for the shared loop), run (the `tune` function), result (TuneResult), reading (nearest
tokens, `nearest`), peft_export (PEFT's adapter layout), command (`autoprompt tune`).
"""

from frozen_lm.methods import Method, register_method
from softprompt.command import COMMAND
from softprompt.config import TuneConfig
from softprompt.reading import NearestReading, nearest
from softprompt.result import ARTIFACTS, TuneResult
from softprompt.run import tune

__all__ = ["NearestReading", "TuneConfig", "TuneResult", "nearest", "tune"]

register_method(Method(name="tune", config=TuneConfig, run=tune, result=TuneResult, artifacts=ARTIFACTS,
                       module="softprompt", command=COMMAND))
