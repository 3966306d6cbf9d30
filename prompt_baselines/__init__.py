"""The lecture's baselines for prompts, on the same template, label words, loop and evaluator:
LoRA, (IA)3 and a bottleneck adapter (PEFT), BitFit, the last k blocks, full fine-tuning
(`finetune`), and the hand-written template as a method of its own (`manual`).

    import prompt_baselines
    r = baselines.finetune(task, train, dev, baselines.FinetuneConfig(method="lora", steps=40, seed=0))
    r.metrics["dev"]; evaluate(task, test, prompt=r); r.save("runs/lora"); load_result("runs/lora")

Modules: config (FinetuneConfig), adapt (PEFT on a weight-sharing copy, or functional overrides;
the frozen model is never changed), run (the `finetune` function on the shared Trainer), result
(FinetuneResult), manual (ManualConfig, ManualResult, run_manual), command (`autoprompt finetune`).
"""

from prompt_baselines.command import COMMAND
from prompt_baselines.config import FinetuneConfig
from prompt_baselines.manual import METHOD as MANUAL
from prompt_baselines.manual import ManualConfig, ManualResult, run_manual
from prompt_baselines.result import METHOD, FinetuneResult
from prompt_baselines.run import finetune
from frozen_lm.methods import Method, register_method

__all__ = ["FinetuneConfig", "FinetuneResult", "ManualConfig", "ManualResult", "finetune", "run_manual"]

register_method(Method(name=METHOD, config=FinetuneConfig, run=finetune, result=FinetuneResult, module="prompt_baselines",
                       command=COMMAND))
register_method(Method(name=MANUAL, config=ManualConfig, run=run_manual, result=ManualResult, module="prompt_baselines"))
