"""An honest d90: no d90 when full training does not clearly beat doing nothing.

d90 is "the smallest d reaching 90% of full training". When full training itself is no better than
chance (bert-tiny's full fine-tuning at P@1 0.0 on a small fact task, or MRPC 16-shot below the
majority class), 90% of it is reached by any d and the number says nothing. So the sweep compares
the full-training score on dev with two references, both on the same dev rows:

- the majority-class rate: the share of the most frequent label (facts: the most frequent answer),
  what always answering that label scores;
- the theta_0 score (d = 0): the task's template as written on the untouched model in model space
  (the manual template), the prompt at its initialization in prompt / prefix space.

Unless baseline > max(both) + min_gain, d90 is None and results.json's `d90_refused` gives the
reason and the numbers. The same when the target itself (threshold x baseline) is no higher than
either reference: d = 0 or a constant answer would already reach it, so every d would "pass". A
baseline score given by the user is taken as it is.
"""

from __future__ import annotations

from collections import Counter

from frozen_lm.encode import Rows


def majority_rate(rows: Rows) -> float:
    """Share of the most frequent label among the rows' examples (what answering it always scores)."""
    labels = rows.labels.tolist()
    return Counter(labels).most_common(1)[0][1] / len(labels) if labels else 0.0


def refusal(baseline: float, majority: float, manual: float, min_gain: float, metric: str = "accuracy",
            threshold: float = 0.9) -> dict | None:
    """None when the baseline beats both references by min_gain and its target (threshold x baseline)
    lies above both; else why there is no d90, with the numbers."""
    bar, target = max(majority, manual) + min_gain, threshold * baseline
    numbers = {"baseline": baseline, "majority": majority, "manual": manual, "min_gain": min_gain,
               "threshold": threshold}
    if baseline <= bar:
        reason = (f"full training scores {metric} {baseline:.4f} on dev, not above both the majority-class rate "
                  f"{majority:.4f} and the theta_0 (manual template) score {manual:.4f} by IntrinsicDimConfig.min_gain {min_gain:g} "
                  f"(needs > {bar:.4f}): {threshold:.0%} of it would be reached by any d")
    elif target <= max(majority, manual):
        reason = (f"the target, {threshold:.0%} of full training's {metric} {baseline:.4f} = {target:.4f}, is no higher "
                  f"than the {'theta_0 (d = 0)' if manual >= majority else 'majority-class'} score "
                  f"{max(majority, manual):.4f}: every d would reach it without learning (raise IntrinsicDimConfig.threshold)")
    else:
        return None
    return {"reason": reason, **numbers}
