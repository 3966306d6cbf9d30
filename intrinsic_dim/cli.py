"""`autoprompt intrinsic-dim`: how many free parameters does a task need? (d90)"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

import click

from frozen_lm.artifact import save_artifact
from frozen_lm.cli import (
    config_from,
    default_out,
    guarded,
    json_option,
    options_from,
    out_option,
    print_table,
    seed_everything,
    seed_option,
)
from frozen_lm.task import TaskConfig
from intrinsic_dim.config import IntrinsicDimConfig

logger = logging.getLogger(__name__)
METHOD = "intrinsic_dim"


def _progress_bar():
    from tqdm.auto import tqdm

    bar = tqdm(desc="intrinsic-dim", unit="run", disable=None)

    def update(label, run):
        bar.update(1)
        bar.set_postfix_str(f"{label} score={run.score:.3f}")

    return bar, update


def save(outcome, cfg: IntrinsicDimConfig, seed: int, out: Path) -> dict:
    """Write the artifact (chosen run's theta_d), results.json and d90.png; returns the results."""
    exp, sweep = outcome.experiment, outcome.sweep
    chosen = outcome.chosen()
    results = {**sweep.report(), "metric": exp.task.metric, "D": exp.D, "n_tensors": len(exp.base),
               "baseline_run": None if outcome.baseline is None else outcome.baseline.record(),
               "runs": [r.record() for r in outcome.runs], "saved_run": chosen.record()}
    meta = {**asdict(cfg), "d": chosen.d, "projection_seed": chosen.seed, "head_seed": seed, "D": exp.D,
            "n_tensors": len(exp.base)}
    save_artifact(out, METHOD, meta, exp.task_cfg, exp.lm, seed, chosen.tensors, results)
    if cfg.plot:
        from intrinsic_dim.plot import plot_d90

        title = f"{exp.lm.name}: {cfg.projection}{' + SAID' if cfg.said else ''}, params={cfg.params}"
        results["plot"] = str(plot_d90(results, out / "d90.png", title, exp.task.metric))
    return results


@click.command("intrinsic-dim")
@options_from(TaskConfig)
@options_from(IntrinsicDimConfig)
@seed_option
@out_option
@json_option
@guarded
def intrinsic_dim(seed, out, as_json, **options) -> None:
    """Intrinsic dimension: train theta = theta_0 + P(theta_d) with only theta_d in R^d trainable,
    sweep d and report d90, the smallest d that reaches 90% of the full fine-tuning score
    (Li et al., 2018; Aghajanyan et al., 2020).

    \b
    Examples:
      autoprompt intrinsic-dim --model bert-tiny-mlm --dims 10,100,1000 --seeds 2
      autoprompt intrinsic-dim --projection fastfood --said --params attention --head linear
    """
    from intrinsic_dim.run import prepare, run_experiment

    cfg = config_from(IntrinsicDimConfig, options)
    task_cfg = config_from(TaskConfig, options)
    seed_everything(seed)
    exp = prepare(cfg, task_cfg, seed)
    bar, update = _progress_bar()
    try:
        outcome = run_experiment(cfg, exp, seed, update)
    finally:
        bar.close()
    out = Path(out or default_out("intrinsic-dim"))
    results = save(outcome, cfg, seed, out)
    summary = {"d90": results["d90"], "d90_range": f"{results['d90_min']}-{results['d90_max']}",
               "baseline": results["baseline"], "target": results["target"], "D": results["D"],
               "projection": cfg.projection, "artifact": str(out)}
    if as_json:
        click.echo(json.dumps({**summary, "per_dim": results["per_dim"]}, sort_keys=True))
        return
    print_table(results["per_dim"], f"{exp.task.metric} per d ({cfg.seeds} seed(s) each)")
    print_table([summary])
