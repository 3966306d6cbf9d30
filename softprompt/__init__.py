"""Prompt tuning, prefix tuning and PEZ on a frozen language model, with nearest-token interpretation.

    import softprompt
    r = softprompt.tune(task, train, dev, softprompt.PromptTuningConfig(num_virtual_tokens=20, seed=0))
    r.metrics["dev"]; evaluate(task, test, prompt=r); r.save("runs/pt"); r.export_peft("runs/pt-peft")
    reading = softprompt.nearest(r, k=5); evaluate(task, test, prompt=reading.prompt)
    p = softprompt.tune(task, train, dev, softprompt.PrefixTuningConfig(num_virtual_tokens=10))
    h = softprompt.tune(task, train, dev, softprompt.PezConfig(fluency_weight=0.1))
    h.prompt, h.filled_template, h.metrics["prompt_perplexity"]; evaluate(task, test, prompt=h)

Target strings are tasks of their own (`PromptTask(lm, template, target=...)` or `target_field=`):
tune trains them with the LM loss of the target and scores them with the shared evaluator.

Three registered methods: 'prompt' (a trainable vector per [T] slot), 'prefix' (trainable key/values
at every layer) and 'pez' (vectors trained at their nearest tokens: a discrete prompt). The soft
prompt, prefix, inits and effective task are shared pieces in frozen_lm.prompts. Modules: config
(one config per method on a shared base), fit (what the runner calls), train (loss and scoring for
the shared loop), pez (projection onto tokens and the straight-through objective), pez_fit (PEZ in
the shared loop, keeping the best discrete prompt), result (TuneResult, PezResult), reading (nearest
tokens, `nearest`), peft_export (PEFT's adapter layout), command (`autoprompt tune`).
"""

from frozen_lm.events import Callback
from frozen_lm.methods import Derived, Method, register_method
from frozen_lm.runner import run
from softprompt.command import PEZ, PREFIX, PROMPT
from softprompt.config import PezConfig, PrefixTuningConfig, PromptTuningConfig, SoftPromptOptions
from softprompt.fit import check_resume, fit_pez, fit_prefix, fit_prompt, prepare, prepare_pez, prepare_prefix
from softprompt.reading import NearestReading, nearest
from softprompt.result import PezResult, TuneResult

__all__ = ["NearestReading", "PezConfig", "PezResult", "PrefixTuningConfig", "PromptTuningConfig", "SoftPromptOptions",
           "TuneResult", "nearest", "tune"]


def tune(task, train, dev=None, config: PromptTuningConfig | PrefixTuningConfig | PezConfig | None = None, *,
         test=None, out=None, overwrite: bool = False, resume=None, callback: Callback | None = None,
         progress: bool = True) -> TuneResult:
    """Prompt tuning (a PromptTuningConfig, the default: a trainable vector per [T] slot), prefix
    tuning (a PrefixTuningConfig: trainable key/values at every layer) or PEZ (a PezConfig: a
    discrete prompt, returned as a PezResult) of `task`'s frozen model.

    train, dev: any data source (path, demo:/hf: source, list of dicts, datasets.Dataset); dev
    (optional) picks the best checkpoint and early stopping; test: an optional split scored at the
    end (never used to choose), reported as metrics['test']. out: an artifact folder, written when
    dev finds a better state (status 'running') and at the end (a folder holding another run is
    refused unless overwrite=True; an unwritable one before training). callback(event) gets a
    'step' Event after every optimizer step; returning True stops the run (the result says status
    'stopped'). Ctrl-C raises `frozen_lm.errors.Interrupted` carrying the best checkpoint so far
    (saved first when `out` is given) and the state that continues the run: resume (that result,
    or its folder) continues it with the same task, config and data, and ends with the result the
    uninterrupted run would have given (a finished run is returned as saved). progress: show a
    progress bar.
    """
    return run(None, task, train, dev, config if config is not None else PromptTuningConfig(), test=test, out=out,
               resume=resume, overwrite=overwrite, callback=callback, progress=progress)


def _nearest_reading(result: TuneResult, task) -> list[Derived]:
    """A soft prompt's nearest-token reading, the discrete prompt a comparison scores beside it."""
    reading = nearest(result, k=1, lm=task.lm)
    return [Derived("nearest tokens", reading.prompt, "tokens", reading.trigger_text)]


# Default search spaces of the learning rate, around each method's default:
# prompt: Lester et al. (2021) train with lr 0.3 (Adafactor); PEFT's prompt-tuning guides use 3e-2 with
#   AdamW (this package's default); the space spans both by half decades.
# prefix: Li & Liang (2021) train through the MLP with lr 5e-5 (GPT-2, AdamW); this package's default is
#   1e-4 (5e-3 without the MLP, nearer PEFT's prefix-tuning example, 1e-2 without projection).
# pez: Wen et al. (2023) use lr 0.1 (AdamW); this package's default is 2x the RMS token-embedding
#   coordinate (0.27 on smollm2-135m). PEZ is a discrete search, so its budget is part of its space
#   (issue 28): 30 steps (a comparison's usual budget for the training methods) or the default 100,
#   the best on dev (the learning-rate schedule spans the run, so the two runs differ throughout).
register_method(Method(
    name="prompt", config=PromptTuningConfig, fit=fit_prompt, result=TuneResult, trains="vectors", template="manual",
    space={"lr": [0.003, 0.01, 0.03, 0.1, 0.3]}, grid_defaults={"num_virtual_tokens": 20}, prepare=prepare,
    resumable=(), check_resume=check_resume, needs_dev=False, derived=_nearest_reading,
    aliases=(("prompt_tuning", {}),), summary="prompt tuning: a trainable vector per [T] slot", command=PROMPT,
    module=__name__))
register_method(Method(
    name="prefix", config=PrefixTuningConfig, fit=fit_prefix, result=TuneResult, trains="vectors", template="manual",
    space={"lr": [3e-5, 1e-4, 3e-4, 1e-3]}, grid_defaults={"num_virtual_tokens": 10}, prepare=prepare_prefix,
    resumable=(), check_resume=check_resume, needs_dev=False, aliases=(("prefix_tuning", {}),),
    summary="prefix tuning: trainable key/values at every layer", command=PREFIX, module=__name__))
register_method(Method(
    name="pez", config=PezConfig, fit=fit_pez, result=PezResult, trains="tokens", template="trigger",
    space={"lr": [0.1, 0.3, 1.0], "steps": [30, 100]}, prepare=prepare_pez, resumable=(), check_resume=check_resume,
    needs_dev=False, summary="PEZ: vectors trained at their nearest tokens (a discrete prompt)", command=PEZ,
    module=__name__))
