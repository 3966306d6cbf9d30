"""Intrinsic dimension: training in a random subspace theta = theta_0 + P(theta_d), and d90, in model
space (the weights), prompt space (soft-prompt vectors) or prefix space (prefix key/values).

    import intrinsic_dim
    r = intrinsic_dim.measure(task, train, dev, intrinsic_dim.IntrinsicDimConfig(dims=[10, 100], seed=0))
    r.d90, r.per_dim; evaluate(task, test, prompt=r); r.save("runs/x"); r.plot("d90.png")
    s = intrinsic_dim.measure_models(task, train, dev, config, models=["gemma3-270m"])  # d90 against model size
    p = intrinsic_dim.measure(task, train, dev, intrinsic_dim.IntrinsicDimConfig(
        space="prompt", num_virtual_tokens=20, dims=[500], optimizer="cma"))   # Black-Box Tuning

One registered method, 'intrinsic_dim' (it trains model weights, prompt vectors or a prefix through
theta_d). Modules: config (IntrinsicDimConfig), fit (what the runner calls: prepare, fit),
measurement (references, baseline, sweep, result), resume (continuing a saved run), result
(D90Result, which writes d90.png with the artifact), honest (no d90 without a baseline above
chance), train (subspace and full training runs on the shared Trainer), cma (CMA-ES runs), spaces
(prompt and prefix space on frozen_lm.prompts' inits and Bounds), objective (model space: label
words or a linear head, and WeightsBound), apply (a saved model-space run as a Bound), subspace
(theta_0 + P(theta_d), SAID), projections (dense, sparse, fastfood), sweep (d90 search), params
(which tensors move), memory (projection size limits), plot, sizes (the same measurement on several
models: d90 against parameter count), command (the CLI's presentation).
"""

from frozen_lm.events import Callback
from frozen_lm.methods import Method, register_method
from frozen_lm.runner import run
from frozen_lm.task import PromptTask
from intrinsic_dim import fit as fitting  # the module (intrinsic_dim.fit stays the module)
from intrinsic_dim.command import INTRINSIC_DIM
from intrinsic_dim.config import IntrinsicDimConfig
from intrinsic_dim.result import METHOD, D90Result
from intrinsic_dim.sizes import ModelSizes, measure_models

__all__ = ["D90Result", "IntrinsicDimConfig", "ModelSizes", "measure", "measure_models"]


def measure(task: PromptTask, train, dev, config: IntrinsicDimConfig | None = None, *, prompt=None, out=None,
            resume=None, overwrite: bool = False, callback: Callback | None = None,
            progress: bool = True) -> D90Result:
    """Measure the task's intrinsic dimension d90 in config.space (see IntrinsicDimConfig): the model's
    weights, a soft prompt at the template's [T] slots, or a prefix.

    train, dev: any data source (path, demo:/hf: source, list of dicts, datasets.Dataset); every run
    is scored on dev with the shared evaluator (at most config.max_train / max_dev examples, a seeded
    sample). prompt (model space): fills the template's [T] slots (a DiscretePrompt, trigger text or
    a search result); needed when the template has slots. out: the artifact folder to write
    (nothing is written without it; a folder holding another run is refused unless overwrite=True
    or it is the run being resumed); it is rewritten after every finished run, with d90.png at the
    end when config.plot. resume: a D90Result or its folder (interrupted, stopped, or written while
    running) to continue: its baseline and finished runs are taken as they are, the rest trained,
    and the result equals an uninterrupted run's (timings aside; a finished run gives back an equal
    result without training). Task, data, prompt (default: the saved one) and config must equal the
    saved run's, except plot and max_projection_gib (IntrinsicDimConfig.RESUMABLE). callback(event):
    'step' events of each run (an optimizer step, or a CMA-ES generation) and a 'run' event after
    each finished run (stage 'baseline' or 'd=D seed=S'; runs taken from `resume` send none);
    returning True stops the sweep (status 'stopped'). No d90 is reported when full training does
    not beat the dev majority-class rate and the theta_0 score by config.min_gain (result.d90_refused
    says why). Ctrl-C raises `frozen_lm.errors.Interrupted` carrying the runs done so far (saved
    first when `out` is given, to be continued with resume=out).
    """
    return run(METHOD, task, train, dev, config or IntrinsicDimConfig(), out=out, resume=resume, overwrite=overwrite,
               callback=callback, progress=progress, inputs={"prompt": prompt})


# No default search space: d90 is a measurement of the task and model, not a prompt a tuned comparison
# should improve by dev score (picking, say, the baseline_lr whose saved subspace run scores best would
# bias the measurement it reports). Its own learning rates are set per space (config.BASELINE_LR) and
# per d (baseline_lr * sqrt(D / d)).
register_method(Method(
    name=METHOD, config=IntrinsicDimConfig, fit=fitting.fit, result=D90Result, trains="weights", template="manual",
    space={}, prepare=fitting.prepare, resumable=IntrinsicDimConfig.RESUMABLE, needs_dev=True,
    summary="intrinsic dimension: d90 of training in a random subspace (model, prompt or prefix space)",
    command=INTRINSIC_DIM, module=__name__, comparable=False))
