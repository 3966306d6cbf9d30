"""How the `autoprompt intrinsic-dim` command presents intrinsic_dim (the CLI builds the command from
this spec and IntrinsicDimConfig): the help text and the printed rows."""

from __future__ import annotations

from frozen_lm.methods import Command
from intrinsic_dim.result import D90Result
from intrinsic_dim.sizes import ModelSizes


def summary(r: D90Result) -> dict:
    return {"d90": r.d90, "d90_range": r.d90_range, "baseline": r.baseline, "target": r.target, "D": r.D,
            "projection": r.config.projection, "space": r.space, "optimizer": r.config.optimizer,
            "chance": r.majority, "manual": r.manual, "forward_passes": r.forward_passes}


def headline(r: D90Result) -> str:
    if r.d90_refused:
        return f"no d90: {r.d90_refused['reason']}"
    found = (f"d90 = {r.d90:,}" if r.d90 is not None else "no d reached the target" if r.per_dim
             else f"no finished subspace run ({r.status})")
    return f"{r.space} space ({r.D:,} numbers move): {found}"


def details(r: D90Result) -> dict:
    return {"per_dim": (f"{r.metric} per d ({r.config.seeds} seed(s) each)", r.per_dim)}


def across(results: list[D90Result], out) -> tuple[str, list[dict]]:
    """After one run per model (--model a,b): d90 against model size (summary.json and d90_by_size.png
    in OUT; intrinsic_dim.sizes)."""
    sizes = ModelSizes.of(results)
    if out is not None:
        sizes.save(out)
    rows = [{k: row[k] for k in ("model", "parameters", "D", "d90", "d90_min", "d90_max", "baseline", "status")}
            for row in sizes.rows]
    return f"d90 against model size: {sizes.trend or '-'}", rows


def manual_template(config) -> bool:
    """The built-in demo lends its hand-written template in model space, and in prompt space when
    virtual tokens are prepended to it."""
    return config.space == "model" or config.num_virtual_tokens is not None


INTRINSIC_DIM = Command(
    name="intrinsic-dim", summary=summary, headline=headline, details=details, out_key="artifact",
    manual_template=manual_template, default=True, models="each", across=across,
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
      autoprompt intrinsic-dim --model smollm2-135m,gemma3-270m --space prompt --num-virtual-tokens 10 \
          --dims 10,100,1000 --out runs/sizes   # one run per model, then d90 against model size
    """)
