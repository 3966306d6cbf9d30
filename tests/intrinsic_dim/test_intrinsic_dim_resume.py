"""Resuming `intrinsic_dim.measure` and `autoprompt intrinsic-dim --resume` after Ctrl-C, a stop or a
finished run: the finished runs are taken from the artifact, not trained again, and the result
equals an uninterrupted run's (tiny models)."""

from __future__ import annotations

import json
import re

import pytest
import torch

import intrinsic_dim.measurement as run_mod
from frozen_lm.errors import Interrupted, UserError
from frozen_lm.results import load_result
from frozen_lm.task import PromptTask
from intrinsic_dim import IntrinsicDimConfig, measure
from tests.conftest import assert_user_error, need_cmaes

TEMPLATE, LABELS = "{sentence} It was [P] .", "0=terrible,1=great"
TRAIN, DEV = "demo:sentiment:train", "demo:sentiment:dev"
TIMING = ("seconds", "s_per_step", "cpu_s_per_step")


def _config(**changes) -> IntrinsicDimConfig:
    values = dict(dims=[5, 40], seeds=2, steps=3, baseline_steps=3, baseline_lr=1e-2, batch_size=4, max_train=12,
                  max_dev=12, plot=False)
    return IntrinsicDimConfig(**{**values, **changes})


def _untimed(record: dict | None) -> dict | None:
    return None if record is None else {k: v for k, v in record.items() if k not in TIMING}


def assert_same_result(got, want) -> None:
    """Equal d90, sweep, records (timings aside), history and tensors."""
    for name in ("status", "d90", "d90_per_seed", "baseline", "target", "per_dim", "d90_refused", "forward_passes",
                 "majority", "manual", "metrics", "history"):
        assert getattr(got, name) == getattr(want, name), name
    assert [_untimed(r) for r in got.runs] == [_untimed(r) for r in want.runs]
    assert _untimed(got.baseline_run) == _untimed(want.baseline_run)
    assert _untimed(got.saved_run) == _untimed(want.saved_run)
    assert sorted(got.tensors) == sorted(want.tensors)
    for name, tensor in want.tensors.items():
        assert torch.equal(got.tensors[name].cpu(), tensor.cpu()), name


class Recorder:
    """A callback that records the events; raises KeyboardInterrupt (Ctrl-C) at the `interrupt_at`-th
    'run' event, or stops at the first 'step' event of stage `stop_in`."""

    def __init__(self, interrupt_at: int | None = None, stop_in: str | None = None):
        self.events, self.interrupt_at, self.stop_in = [], interrupt_at, stop_in

    def __call__(self, event) -> bool:
        self.events.append(event)
        if event.kind == "run" and len(self.runs) == self.interrupt_at:
            raise KeyboardInterrupt
        return event.kind == "step" and event.stage == self.stop_in

    @property
    def runs(self) -> list[str]:
        return [e.stage for e in self.events if e.kind == "run"]

    @property
    def trained(self) -> list[str]:
        """The stages that trained at least one step."""
        return list(dict.fromkeys(e.stage for e in self.events if e.kind == "step"))


@pytest.fixture(scope="module")
def llama_task(tiny):
    return PromptTask(tiny("llama"), TEMPLATE, LABELS)


@pytest.fixture(scope="module")
def uninterrupted(llama_task):
    return measure(llama_task, TRAIN, DEV, _config(), progress=False)


@pytest.mark.parametrize("k", [1, 3])
def test_ctrl_c_after_k_runs_resumes_to_the_uninterrupted_result(llama_task, uninterrupted, tmp_path, k):
    out = tmp_path / "run"
    first = Recorder(interrupt_at=k)
    with pytest.raises(Interrupted, match=re.escape(f"after {k - 1} finished subspace runs; the best so far is "
                                                    f"saved in {out}")) as info:
        measure(llama_task, TRAIN, DEV, _config(), out=out, callback=first, progress=False)
    assert info.value.out == out and info.value.resumable  # resume=out continues it
    saved = load_result(out)
    assert saved.status == "interrupted" and len(saved.runs) == k - 1 and saved.baseline_run is not None
    assert sorted(n for n in saved.tensors if n.startswith("runs.")) == [f"runs.{i}.theta_d" for i in range(k - 1)]
    assert info.value.result.runs == saved.runs

    again = Recorder()
    resumed = measure(llama_task, TRAIN, DEV, _config(), out=out, resume=out, callback=again, progress=False)
    stages = ["d=5 seed=0", "d=5 seed=1", "d=40 seed=0", "d=40 seed=1"]
    assert first.runs == ["baseline", *stages][:k]
    assert again.trained == again.runs == stages[k - 1:]  # the baseline and finished runs are not trained again
    assert_same_result(resumed, uninterrupted)
    assert_same_result(load_result(out), uninterrupted)
    assert not any(n.startswith("runs.") for n in load_result(out).tensors)


def test_resuming_a_finished_run_trains_nothing_and_gives_it_back(llama_task, uninterrupted, tmp_path):
    measure(llama_task, TRAIN, DEV, _config(), out=tmp_path / "done", progress=False)
    events = Recorder()
    again = measure(llama_task, TRAIN, DEV, _config(), out=tmp_path / "done", resume=tmp_path / "done",
                    callback=events, progress=False)
    assert events.events == [] and again.status == "done"
    assert_same_result(again, uninterrupted)
    from_memory = measure(llama_task, TRAIN, DEV, _config(), resume=again, progress=False)  # a result, no folder
    assert_same_result(from_memory, uninterrupted)


def test_a_run_stopped_midway_is_trained_again_with_said_scales(tiny, tmp_path):
    task = PromptTask(tiny("bert"), TEMPLATE, LABELS)
    cfg = _config(head="linear", said=True, params="attention", dims=[60, 80], seeds=1, baseline_score=0.5)
    want = measure(task, TRAIN, DEV, cfg, progress=False)
    out = tmp_path / "stopped"
    stopped = measure(task, TRAIN, DEV, cfg, out=out, callback=Recorder(stop_in="d=80 seed=0"), progress=False)
    assert stopped.status == "stopped" and [r.get("stopped", False) for r in stopped.runs] == [False, True]
    assert sorted(n for n in load_result(out).tensors if n.startswith("runs.")) == ["runs.0.said_scale",
                                                                                       "runs.0.theta_d"]
    events = Recorder()
    resumed = measure(task, TRAIN, DEV, cfg, out=out, resume=out, callback=events, progress=False)
    assert events.trained == ["d=80 seed=0"] and resumed.baseline_run is None
    assert_same_result(resumed, want)


@pytest.mark.parametrize("optimizer", ["adam", "cma"])
def test_prompt_space_resumes_with_its_theta_0(tiny, tmp_path, optimizer):
    need_cmaes(optimizer)
    task = PromptTask(tiny("gpt2"), TEMPLATE, LABELS)
    cfg = _config(space="prompt", num_virtual_tokens=2, dims=[4, 8], seeds=1, optimizer=optimizer, popsize=4)
    want = measure(task, TRAIN, DEV, cfg, progress=False)
    out = tmp_path / "prompt"
    with pytest.raises(Interrupted):
        measure(task, TRAIN, DEV, cfg, out=out, callback=Recorder(interrupt_at=2), progress=False)
    assert {"theta_0", "theta_d", "runs.0.theta_d"} <= set(load_result(out).tensors)
    events = Recorder()
    resumed = measure(task, TRAIN, DEV, cfg, out=out, resume=out, callback=events, progress=False)
    assert events.trained == ["d=8 seed=0"]
    assert_same_result(resumed, want)
    moved = load_result(out)
    moved.tensors["theta_0"] = moved.tensors["theta_0"] + 1  # another start would not continue the same runs
    with pytest.raises(UserError, match="theta_0, the prompt's or prefix's starting point"):
        measure(task, TRAIN, DEV, cfg, resume=moved)


def test_the_artifact_is_rewritten_after_every_run(llama_task, tmp_path, monkeypatch):
    """A crash (not Ctrl-C) loses at most the run in progress."""
    real, calls = run_mod.train_subspace, []

    def crash_on_third(*args, **kwargs):
        calls.append(args[3])
        if len(calls) == 3:
            raise RuntimeError("out of memory")
        return real(*args, **kwargs)

    monkeypatch.setattr(run_mod, "train_subspace", crash_on_third)
    out = tmp_path / "crash"
    with pytest.raises(RuntimeError):
        measure(llama_task, TRAIN, DEV, _config(), out=out, progress=False)
    saved = load_result(out)
    assert saved.status == "running" and [(r["d"], r["seed"]) for r in saved.runs] == [(5, 0), (5, 1)]
    assert {"runs.0.theta_d", "runs.1.theta_d", "theta_d"} <= set(saved.tensors)


def test_resume_refuses_what_differs(llama_task, tiny, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(Interrupted):
        measure(llama_task, TRAIN, DEV, _config(), out=out, callback=Recorder(interrupt_at=2), progress=False)
    with pytest.raises(UserError, match=r"steps \(3 saved, 4 now\)") as err:
        measure(llama_task, TRAIN, DEV, _config(steps=4), resume=out, progress=False)
    assert "\n" not in str(err.value)
    assert "IntrinsicDimConfig.plot, IntrinsicDimConfig.max_projection_gib may change" in str(err.value)
    with pytest.raises(UserError, match=r"template \(.* saved"):
        measure(PromptTask(tiny("llama"), "{sentence} So [P] .", LABELS), TRAIN, DEV, _config(), resume=out)
    with pytest.raises(UserError, match="the dev data"):
        measure(llama_task, TRAIN, TRAIN, _config(), resume=out, progress=False)
    with pytest.raises(UserError, match="already holds a run"):  # resuming into another run's folder
        measure(llama_task, TRAIN, DEV, _config(), resume=out, out=_done(llama_task, tmp_path / "other"))

    import autoprompt

    search = tmp_path / "search"
    autoprompt.search(PromptTask(tiny("llama"), "{sentence} [T] [P] .", LABELS), TRAIN, DEV,
                      autoprompt.AutoPromptConfig(iters=1, num_cand=2), out=search, progress=False)
    with pytest.raises(UserError, match="holds a 'autoprompt' run, not a 'intrinsic_dim' run"):
        measure(llama_task, TRAIN, DEV, _config(), resume=search)

    events = Recorder()  # what changes no number may change: into a new folder, with the plot
    resumed = measure(llama_task, TRAIN, DEV, _config(plot=True, max_projection_gib=1.0), resume=out,
                      out=tmp_path / "new", callback=events, progress=False)
    assert events.trained == ["d=5 seed=1", "d=40 seed=0", "d=40 seed=1"]
    assert resumed.status == "done" and (tmp_path / "new" / "d90.png").exists()
    assert load_result(out).status == "interrupted"  # the resumed folder is left as it was


def _done(task, out):
    measure(task, TRAIN, DEV, _config(dims=[5], seeds=1, baseline_score=0.5), out=out, progress=False)
    return out


def _results(out) -> dict:
    return json.loads((out / "results.json").read_text())


def test_cli_resume_after_ctrl_c_equals_the_uninterrupted_run(cli, tiny_folder, tmp_path, monkeypatch):
    args = ["intrinsic-dim", "--model", tiny_folder("llama"), "--dims", "5,40", "--steps", "3", "--baseline-steps",
            "3", "--seeds", "2", "--baseline-lr", "1e-2", "--max-train", "12", "--max-dev", "12", "--no-plot",
            "--no-progress"]
    full = cli(*args, "--out", tmp_path / "full")
    assert full.exit_code == 0, full.output

    real, calls = run_mod.train_subspace, []

    def ctrl_c_in_third(*args, **kwargs):
        calls.append((args[3], args[4]))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(run_mod, "train_subspace", ctrl_c_in_third)
    out = tmp_path / "part"
    part = cli(*args, "--out", out)
    assert part.exit_code == 130, part.output
    assert f"continue with: autoprompt intrinsic-dim --resume {out}" in part.output
    assert _results(out)["status"] == "interrupted" and len(_results(out)["runs"]) == 2

    assert_user_error(cli("intrinsic-dim", "--resume", out, "--steps", "4"), "--steps (3 saved, 4 now)")
    calls.clear()
    resumed = cli("intrinsic-dim", "--resume", out, "--no-progress", "--json")
    assert resumed.exit_code == 0, resumed.output
    assert calls == [(40, 0), (40, 1)]  # the finished runs are not trained again
    got, want = _results(out), _results(tmp_path / "full")
    assert got["status"] == "done" and got["d90"] == want["d90"] and got["per_dim"] == want["per_dim"]
    assert [_untimed(r) for r in got["runs"]] == [_untimed(r) for r in want["runs"]]
    assert _untimed(got["baseline_run"]) == _untimed(want["baseline_run"])
    assert json.loads(resumed.output.strip().splitlines()[-1])["d90"] == want["d90"]
    saved, full_result = load_result(out), load_result(tmp_path / "full")
    assert torch.equal(saved.tensors["theta_d"], full_result.tensors["theta_d"])
