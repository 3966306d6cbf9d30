"""The lecture's baselines for prompts, on the same template, label words, loop and evaluator:
LoRA, (IA)3 and a bottleneck adapter (PEFT), BitFit, the last k blocks, full fine-tuning
(`finetune`), and the hand-written template as a method of its own (`run_manual`).

    import prompt_baselines
    r = prompt_baselines.finetune(task, train, dev, prompt_baselines.LoRAFinetuneConfig(r=8, steps=40, seed=0))
    b = prompt_baselines.finetune(task, train, dev, prompt_baselines.BitFitConfig(steps=40))
    r.metrics["dev"]; evaluate(task, test, prompt=r); r.save("runs/lora"); load_result("runs/lora")

Seven registered methods: 'lora', 'ia3', 'adapter', 'bitfit', 'last_k', 'full' (one config each,
all on the shared options FinetuneOptions) and 'manual'. Modules: config, adapt (PEFT on a
weight-sharing copy, or functional overrides, chosen by the config's class; the frozen model is
never changed), fit (what the runner calls: prepare, fit_finetune on the shared Trainer), result
(FinetuneResult), manual (ManualResult, fit_manual), command (`autoprompt finetune`).
"""

from frozen_lm.errors import UserError
from frozen_lm.events import Callback
from frozen_lm.methods import Method, register_method
from frozen_lm.runner import run
from prompt_baselines.command import COMMANDS
from prompt_baselines.config import (
    AdapterFinetuneConfig,
    BitFitConfig,
    FinetuneOptions,
    FullFinetuneConfig,
    IA3FinetuneConfig,
    LastKConfig,
    LoRAFinetuneConfig,
    ManualConfig,
    PeftOptions,
)
from prompt_baselines.fit import fit_finetune, prepare
from prompt_baselines.manual import ManualResult, fit_manual, prepare_manual
from prompt_baselines.result import FinetuneResult

__all__ = ["AdapterFinetuneConfig", "BitFitConfig", "FinetuneOptions", "FinetuneResult", "FullFinetuneConfig",
           "IA3FinetuneConfig", "LastKConfig", "LoRAFinetuneConfig", "ManualConfig", "ManualResult", "PeftOptions",
           "finetune", "run_manual"]

CONFIGS = {"lora": LoRAFinetuneConfig, "ia3": IA3FinetuneConfig, "adapter": AdapterFinetuneConfig,
           "bitfit": BitFitConfig, "last_k": LastKConfig, "full": FullFinetuneConfig}


def finetune(task, train, dev=None, config: FinetuneOptions | None = None, *, test=None, out=None,
             overwrite: bool = False, callback: Callback | None = None, progress: bool = True) -> FinetuneResult:
    """Fine-tune `task`'s model on `train` as the config's class says (LoRAFinetuneConfig, the
    default; IA3FinetuneConfig, AdapterFinetuneConfig, BitFitConfig, LastKConfig,
    FullFinetuneConfig); `dev` (optional) picks the best checkpoint and early stopping; test: an
    optional split scored at the end (metrics['test']). out: an artifact folder, rewritten at every
    new best dev score (refused if it holds another run, unless overwrite). callback(event) gets a
    'step' Event per optimizer step; True stops the run. Ctrl-C raises `frozen_lm.errors.Interrupted`
    carrying the best checkpoint (saved first when `out` is given)."""
    config = config if config is not None else LoRAFinetuneConfig()
    if type(config) not in CONFIGS.values():
        raise UserError(f"finetune takes one of {', '.join(c.__name__ for c in CONFIGS.values())}, got a "
                        f"{type(config).__name__}")
    return run(None, task, train, dev, config, test=test, out=out, overwrite=overwrite, callback=callback,
               progress=progress)


def run_manual(task, train=None, dev=None, config: ManualConfig | None = None, *, test=None, out=None,
               overwrite: bool = False, callback: Callback | None = None, progress: bool = False) -> ManualResult:
    """Score the task's template on `dev` (and `test`; train is not used); save it to `out` when given."""
    if train is None:  # (never read; the runner takes dev, or one empty example, in its place)
        train = dev if dev is not None else [{}]
    return run("manual", task, train, dev, config or ManualConfig(), test=test, out=out, overwrite=overwrite,
               callback=callback, progress=progress)


# Default search spaces of a tuned comparison: the learning rates the papers and PEFT's docs use,
# spread around the default. LoRA: Hu et al. (2021) report 2e-4 to 5e-4 for GPT-2 and RoBERTa; small
# ranks trained for few steps take up to 3e-3. (IA)3: Liu et al. (2022, T-Few) train the scaling
# vectors at 3e-3; they start at 1 and take larger steps. Adapter: Houlsby et al. (2019) sweep
# 3e-5 to 3e-3; ours is a LoRA of rank adapter_size, so LoRA's range. BitFit: Ben Zaken et al.
# (2022) use 1e-4 to 1e-3 on BERT; biases alone take up to 1e-2. Full fine-tuning: Devlin et al.
# (2019) use 2e-5 to 5e-5 for BERT. Last k blocks (no paper): full fine-tuning's rates to a few
# times more, as fewer weights train.
SPACES = {"lora": [1e-4, 3e-4, 1e-3, 3e-3], "ia3": [3e-3, 1e-2, 3e-2], "adapter": [1e-4, 3e-4, 1e-3, 3e-3],
          "bitfit": [1e-4, 1e-3, 1e-2], "last_k": [1e-5, 3e-5, 1e-4, 3e-4], "full": [1e-5, 2e-5, 5e-5, 1e-4]}
SUMMARIES = {"lora": "LoRA (PEFT)", "ia3": "(IA)3 (PEFT)",
             "adapter": "bottleneck adapter (PEFT LoRA on the feed-forward output projection)",
             "bitfit": "BitFit: biases only", "last_k": "the last k transformer blocks", "full": "full fine-tuning"}
PEFT_METHODS = ("lora", "ia3", "adapter")

for _name, _config in CONFIGS.items():
    register_method(Method(
        name=_name, config=_config, fit=fit_finetune, result=FinetuneResult, trains="weights", template="manual",
        space={"lr": SPACES[_name]}, prepare=prepare, resumable=None, needs_dev=False,
        aliases=(("finetune", {"method": _name}),), imports=("peft",) if _name in PEFT_METHODS else (),
        summary=SUMMARIES[_name], command=COMMANDS[_name], module=__name__))
register_method(Method(
    name="manual", config=ManualConfig, fit=fit_manual, result=ManualResult, trains="nothing", template="manual",
    prepare=prepare_manual, needs_dev=False, summary="the hand-written template as written", command=None,
    module=__name__))
