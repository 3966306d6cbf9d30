"""Continuing a saved intrinsic_dim run (`resume=`): what the runner (frozen_lm.runner) does not check,
and the saved run's finished work.

An unfinished artifact (status 'running', 'interrupted' or 'stopped') holds, beside the chosen run's
tensors, every finished subspace run's trained tensors as `runs.{i}.{name}` (i: the run's index in
`runs`; theta_d and the SAID scales, about d numbers each). A resumed measure takes the baseline and
every finished run whose tensors it has from the saved result instead of training it again (same
score, loss and record); the sweep asks for the runs in the same order, so the result equals an
uninterrupted run's, timings aside. A run cut short by a callback (marked stopped) is trained again,
and so is a finished run whose tensors an unfinished artifact lacks (an older one): the seeds make
it the same run. A finished artifact ('done') keeps only the chosen run's tensors, and the same
sweep chooses the same run again, so it gives back an equal result without training.

The runner checks that the model, task, data and config equal the saved run's, except the
resumable fields (IntrinsicDimConfig.RESUMABLE: plot, max_projection_gib), which change no number;
`check_inputs` checks the prompt in the [T] slots (model space) and theta_0 (prompt and prefix space).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch

from frozen_lm.errors import UserError
from intrinsic_dim.result import D90Result
from intrinsic_dim.train import Run

logger = logging.getLogger(__name__)
RUN_TENSORS = ("theta_d", "said_scale")  # a run's trained tensors (the chosen run's keep these names)
PREFIX = "runs."


def run_tensors(runs: list[Run]) -> dict[str, torch.Tensor]:
    """Every finished run's trained tensors, as `runs.{i}.{name}` (copies: safetensors refuses tensors
    that share memory, and the chosen run's are saved under their own names too)."""
    return {f"{PREFIX}{i}.{name}": t.detach().clone() for i, run in enumerate(runs) if not run.stopped
            for name, t in run.tensors.items()}


def check_inputs(previous: D90Result, trigger: list[int] | None, theta_0: torch.Tensor | None) -> None:
    """UserError when the prompt (model space: the trigger ids in the [T] slots) or a prompt/prefix
    theta_0 differ from the saved run's: its runs were trained on those. (The runner has already
    checked the model, task, data and config.)"""
    diffs = []
    if (previous.trigger_ids or None) != (trigger or None):
        diffs.append(f"the prompt's trigger ids ({previous.trigger_ids} saved, {trigger} now)")
    saved_theta = previous.tensors.get("theta_0")
    if theta_0 is not None and saved_theta is not None and not torch.equal(saved_theta.cpu(), theta_0.detach().cpu()):
        diffs.append("theta_0, the prompt's or prefix's starting point (another model, init or device)")
    if diffs:
        raise UserError(f"resume: these differ from the saved run, so its runs would not belong to this one: "
                        f"{'; '.join(diffs)}; give the saved run's prompt, or start a new run")


@dataclass
class Restored:
    """The saved run's finished work: the baseline and the subspace runs by (d, seed), each with its
    tensors; `take` hands each out once, in the order the sweep asks."""

    baseline: Run | None = None
    runs: dict[tuple[int, int], list[Run]] = field(default_factory=dict)

    def take(self, d: int, seed: int) -> Run | None:
        found = self.runs.get((d, seed))
        return found.pop(0) if found else None

    def take_baseline(self) -> Run | None:
        run, self.baseline = self.baseline, None
        return run


def restore(previous: D90Result, device: torch.device) -> Restored:
    """The finished runs of a saved result (their losses from its history, tensors on `device`)."""
    losses = [h.get("loss", []) for h in previous.history if not h.get("baseline")]
    base_losses = next((h.get("loss", []) for h in previous.history if h.get("baseline")), [])
    restored = Restored()
    if previous.baseline_run and not previous.baseline_run.get("stopped"):
        restored.baseline = Run.from_record(previous.baseline_run, base_losses, {})
    for i, record in enumerate(previous.runs):
        if record.get("stopped"):
            continue
        tensors = _tensors_of(previous, i, record, device)
        if tensors is None and previous.status == "done" and record != previous.saved_run:
            tensors = {}  # not the chosen run: the same sweep chooses the saved run again
        if tensors is None:
            logger.info("d=%d seed=%d: the artifact lacks its tensors; it is trained again", record["d"], record["seed"])
            continue
        run = Run.from_record(record, losses[i] if i < len(losses) else [], tensors)
        restored.runs.setdefault((run.d, run.seed), []).append(run)
    return restored


def _tensors_of(previous: D90Result, i: int, record: dict, device: torch.device) -> dict[str, torch.Tensor] | None:
    """Run i's trained tensors: `runs.{i}.*`, or the chosen run's own names when it is run i; None when
    the artifact has neither."""
    key = f"{PREFIX}{i}."
    found = {k[len(key):]: t for k, t in previous.tensors.items() if k.startswith(key)}
    if not found and previous.saved_run == record and previous.runs.index(record) == i:
        found = {k: previous.tensors[k] for k in RUN_TENSORS if k in previous.tensors}
    if "theta_d" not in found or (previous.config.said and "said_scale" not in found):
        return None
    return {k: t.to(device) for k, t in found.items()}
