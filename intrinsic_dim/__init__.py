"""Intrinsic dimension: training in a random subspace theta = theta_0 + P(theta_d), and d90, in model
space (the weights), prompt space (soft-prompt vectors) or prefix space (prefix key/values).

    import intrinsic_dim
    r = intrinsic_dim.measure(task, train, dev, intrinsic_dim.IntrinsicDimConfig(dims=[10, 100], seed=0))
    r.d90, r.per_dim; evaluate(task, test, prompt=r); r.save("runs/x"); r.plot("d90.png")
    p = intrinsic_dim.measure(task, train, dev, intrinsic_dim.IntrinsicDimConfig(
        space="prompt", num_virtual_tokens=20, dims=[500], optimizer="cma"))   # Black-Box Tuning

Modules: config (IntrinsicDimConfig), run (the `measure` function: references, baseline, sweep,
result), resume (continuing a saved run), result (D90Result), honest (no d90 without a baseline
above chance), train (subspace and full training runs on the shared Trainer), cma (CMA-ES runs),
spaces (prompt and prefix space on softprompt's inits and Bounds), objective (model space: label
words or a linear head), apply (model weights as a Bound for the shared evaluator), subspace
(theta_0 + P(theta_d), SAID), projections (dense, sparse, fastfood), sweep (d90 search), params
(which tensors move), memory (projection size limits), plot.
"""

from frozen_lm.methods import Command, Method, register_method
from intrinsic_dim.config import IntrinsicDimConfig
from intrinsic_dim.result import METHOD, D90Result
from intrinsic_dim.run import measure

__all__ = ["D90Result", "IntrinsicDimConfig", "measure"]


def _summary(r: D90Result) -> dict:
    return {"d90": r.d90, "d90_range": r.d90_range, "baseline": r.baseline, "target": r.target, "D": r.D,
            "projection": r.config.projection, "space": r.space, "optimizer": r.config.optimizer,
            "chance": r.majority, "manual": r.manual, "forward_passes": r.forward_passes}


def _headline(r: D90Result) -> str:
    if r.d90_refused:
        return f"no d90: {r.d90_refused['reason']}"
    found = (f"d90 = {r.d90:,}" if r.d90 is not None else "no d reached the target" if r.per_dim
             else f"no finished subspace run ({r.status})")
    return f"{r.space} space ({r.D:,} numbers move): {found}"


def _details(r: D90Result) -> dict:
    return {"per_dim": (f"{r.metric} per d ({r.config.seeds} seed(s) each)", r.per_dim)}


register_method(Method(
    name=METHOD, config=IntrinsicDimConfig, run=measure, result=D90Result, module=__name__,
    command=Command(
        name="intrinsic-dim", summary=_summary, headline=_headline, details=_details, out_key="artifact",
        resumable=True,
        manual_template=lambda cfg: cfg.space == "model" or cfg.num_virtual_tokens is not None,
        help="""Intrinsic dimension: train theta = theta_0 + P(theta_d) with only theta_d in R^d trainable,
    sweep d and report d90, the smallest d that reaches 90% of the full training score
    (Li et al., 2018; Aghajanyan et al., 2020), in model space (the weights), prompt space (a soft
    prompt at the [T] slots, IPT / Black-Box Tuning) or prefix space (prefix key/values). No d90
    is reported when full training does not beat the majority class and theta_0 by --min-gain.
    --optimizer cma trains theta_d by CMA-ES without gradients (pip install cmaes). The artifact
    is rewritten after every finished run; after Ctrl-C, --resume OUT continues the sweep without
    training the finished runs again (only --plot and --max-projection-gib may change).

    \b
    Examples:
      autoprompt intrinsic-dim --model bert-tiny-mlm --dims 10,100,1000 --seeds 2
      autoprompt intrinsic-dim --projection fastfood --said --params attention --head linear
      autoprompt intrinsic-dim --space prompt --num-virtual-tokens 20 --template '{sentence} It was [P] .' --dims 10,100,1000
      autoprompt intrinsic-dim --space prompt --num-virtual-tokens 20 --dims 500 --optimizer cma --steps 100
      autoprompt intrinsic-dim --space prefix --num-virtual-tokens 5 --projection dense --dims 10,100
      autoprompt intrinsic-dim --resume runs/intrinsic-dim-20250101-120000
    """)))
