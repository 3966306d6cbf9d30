"""Intrinsic dimension: training in a random subspace theta = theta_0 + P(theta_d), and d90.

    import intrinsic_dim
    r = intrinsic_dim.measure(task, train, dev, intrinsic_dim.IntrinsicDimConfig(dims=[10, 100], seed=0))
    r.d90, r.per_dim; evaluate(task, test, prompt=r); r.save("runs/x"); r.plot("d90.png")

Modules: config (IntrinsicDimConfig), run (the `measure` function: baseline, sweep, result),
result (D90Result), train (subspace and full fine-tuning runs on the shared Trainer), apply (the
weights as a Bound for the shared evaluator), objective (label words or a linear head), subspace
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
            "projection": r.config.projection}


def _details(r: D90Result) -> dict:
    return {"per_dim": (f"{r.metric} per d ({r.config.seeds} seed(s) each)", r.per_dim)}


register_method(Method(
    name=METHOD, config=IntrinsicDimConfig, run=measure, result=D90Result, module=__name__,
    command=Command(
        name="intrinsic-dim", summary=_summary, details=_details, manual_template=True, out_key="artifact",
        help="""Intrinsic dimension: train theta = theta_0 + P(theta_d) with only theta_d in R^d trainable,
    sweep d and report d90, the smallest d that reaches 90% of the full fine-tuning score
    (Li et al., 2018; Aghajanyan et al., 2020).

    \b
    Examples:
      autoprompt intrinsic-dim --model bert-tiny-mlm --dims 10,100,1000 --seeds 2
      autoprompt intrinsic-dim --projection fastfood --said --params attention --head linear
    """)))
