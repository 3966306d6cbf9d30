"""Resuming `softprompt.tune` and `autoprompt tune --resume` after Ctrl-C: the saved training state
(tensors, optimizer, schedule, batch position, best checkpoint; PEZ's kept prompt) continues the run,
which ends with the uninterrupted run's tensors, history and metrics (tiny models)."""

from __future__ import annotations

import json

import pytest
import torch

import softprompt.train as train_mod
from frozen_lm.checkpoint import deferred_interrupt
from frozen_lm.errors import Interrupted, UserError
from frozen_lm.results import load_result
from frozen_lm.task import PromptTask
from frozen_lm.train import Trainer, TrainSettings
from softprompt import PezConfig, PrefixTuningConfig, PromptTuningConfig, tune
from tests.conftest import assert_user_error

LABELS = {"0": "terrible", "1": "great"}
TEMPLATE = "{sentence} It was [P] ."
TRAIN, DEV = "demo:sentiment:train", "demo:sentiment:dev"


def ctrl_c_at(step: int):
    """A callback that presses Ctrl-C after optimizer step `step` (its evaluation done)."""

    def callback(event) -> bool:
        if event.kind == "step" and event.step == step:
            raise KeyboardInterrupt
        return False

    return callback


def assert_same(got, want) -> None:
    assert got.status == want.status == "done"
    assert got.history == want.history
    assert got.metrics == want.metrics
    assert (got.best_step, got.best_dev, got.steps_done, got.stopped) == (want.best_step, want.best_dev,
                                                                          want.steps_done, want.stopped)
    assert sorted(got.tensors) == sorted(want.tensors)
    for name, tensor in want.tensors.items():
        assert torch.equal(got.tensors[name], tensor), name


CONFIGS = {"prompt": PromptTuningConfig, "prefix": PrefixTuningConfig, "pez": PezConfig}
CASES = {
    "prompt": dict(method="prompt", num_virtual_tokens=3, steps=6, eval_every=2, batch_size=4, lr=0.05),
    "prefix-mlp-accum-cosine": dict(method="prefix", num_virtual_tokens=2, steps=6, eval_every=1, batch_size=2,
                                    grad_accum=2, schedule="cosine", warmup_steps=2, max_grad_norm=1.0, lr=0.01),
    "pez-adam-patience": dict(method="pez", num_virtual_tokens=3, steps=6, eval_every=1, batch_size=4, lr=0.1,
                              optimizer="adam", patience=10),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("cut", [1, 3])
def test_ctrl_c_then_resume_equals_the_uninterrupted_run(tiny, tmp_path, case, cut):
    lm = tiny("gpt2")
    task = PromptTask(lm, TEMPLATE, LABELS)
    values = dict(CASES[case])
    config = CONFIGS[values.pop("method")](**values, seed=3)
    want = tune(task, TRAIN, DEV, config, progress=False)
    out = tmp_path / "run"
    with pytest.raises(Interrupted) as stopped:
        tune(task, TRAIN, DEV, config, out=out, progress=False, callback=ctrl_c_at(cut))
    assert f"interrupted after step {cut}" in str(stopped.value)
    assert stopped.value.resumable and stopped.value.out == out and f"saved in {out}" in str(stopped.value)
    saved = load_result(out)
    assert saved.status == "interrupted" and saved.steps_done == cut and saved.checkpoint["step"] == cut

    steps = []
    got = tune(task, TRAIN, DEV, config, out=out, resume=out, progress=False,
               callback=lambda e: steps.append(e.step) and False)
    assert steps == list(range(cut + 1, config.steps + 1))  # only the remaining steps are trained
    assert_same(got, want)
    again = load_result(out)  # the finished artifact: no training state left in it
    assert again.checkpoint is None and not any(k.startswith("checkpoint.") for k in again.tensors)
    assert_same(again, want)


def test_ctrl_c_during_an_evaluation_evaluates_first_on_resume(tiny, monkeypatch):
    lm = tiny("llama")
    task = PromptTask(lm, TEMPLATE, LABELS)
    config = PromptTuningConfig(num_virtual_tokens=2, steps=4, eval_every=2, batch_size=4, lr=0.05, seed=1)
    want = tune(task, TRAIN, DEV, config, progress=False)
    real, calls = train_mod.split_metrics, []

    def ctrl_c_in_second_eval(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(train_mod, "split_metrics", ctrl_c_in_second_eval)
    with pytest.raises(Interrupted) as stopped:
        tune(task, TRAIN, DEV, config, progress=False)
    monkeypatch.setattr(train_mod, "split_metrics", real)
    cut = stopped.value.result
    assert cut.steps_done == 2 and cut.checkpoint["eval_pending"] and "dev" not in cut.history[-1]
    assert_same(tune(task, TRAIN, DEV, config, resume=cut, progress=False), want)


def test_resume_refuses_what_differs_and_returns_a_finished_run(tiny, tmp_path):
    lm = tiny("gpt2")
    task = PromptTask(lm, TEMPLATE, LABELS)
    config = PromptTuningConfig(num_virtual_tokens=2, steps=4, eval_every=2, batch_size=4, seed=0)
    out = tmp_path / "run"
    with pytest.raises(Interrupted):
        tune(task, TRAIN, DEV, config, out=out, progress=False, callback=ctrl_c_at(2))
    with pytest.raises(UserError, match=r"PromptTuningConfig.lr \(0.03 saved, 0.5 now\)"):
        tune(task, TRAIN, DEV, PromptTuningConfig(num_virtual_tokens=2, steps=4, eval_every=2, batch_size=4, lr=0.5),
             resume=out)
    with pytest.raises(UserError, match="holds a 'prompt' run, not a 'prefix' run"):
        tune(task, TRAIN, DEV, PrefixTuningConfig(num_virtual_tokens=2, steps=4, eval_every=2, batch_size=4), resume=out)
    with pytest.raises(UserError, match="template"):
        tune(task.derive(template="{sentence} So it was [P] ."), TRAIN, DEV, config, resume=out)
    with pytest.raises(UserError, match="the dev data"):
        tune(task, TRAIN, TRAIN, config, resume=out)
    done = tune(task, TRAIN, DEV, config, out=out, resume=out, progress=False)
    steps = []
    again = tune(task, TRAIN, DEV, config, resume=out, progress=False, callback=lambda e: steps.append(e) and False)
    assert steps == [] and again.status == "done"
    assert torch.equal(again.tensors["prompt_embeddings"], done.tensors["prompt_embeddings"])


def test_cli_resume_after_ctrl_c(cli, tiny_folder, tmp_path, monkeypatch):
    args = ["tune", "--model", tiny_folder("llama"), "--template", TEMPLATE, "--label-map", "0=terrible,1=great",
            "--train", TRAIN, "--dev", DEV, "--num-virtual-tokens", "2", "--steps", "4", "--eval-every", "2",
            "--batch-size", "4", "--lr", "0.05", "--no-progress"]
    full = cli(*args, "--out", tmp_path / "full")
    assert full.exit_code == 0, full.output
    real, calls = Trainer._step, []

    def ctrl_c_in_third_step(self, opt, stream, params):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, opt, stream, params)

    monkeypatch.setattr(Trainer, "_step", ctrl_c_in_third_step)
    out = tmp_path / "part"
    part = cli(*args, "--out", out)
    assert part.exit_code == 130, part.output
    assert f"continue with: autoprompt tune --resume {out}" in part.output
    saved = json.loads((out / "results.json").read_text())
    assert saved["status"] == "interrupted" and saved["steps_done"] == 2
    monkeypatch.setattr(Trainer, "_step", real)

    assert_user_error(cli("tune", "--resume", out, "--steps", "8"), "--steps (4 saved, 8 now)")
    resumed = cli("tune", "--resume", out, "--no-progress", "--json")
    assert resumed.exit_code == 0, resumed.output
    got, want = load_result(out), load_result(tmp_path / "full")
    assert got.history == want.history and got.metrics == want.metrics
    assert torch.equal(got.tensors["prompt_embeddings"], want.tensors["prompt_embeddings"])


def test_an_update_is_never_cut_in_half():
    """Ctrl-C (SIGINT) inside deferred_interrupt is held until the block ends."""
    import os
    import signal

    done = []
    with pytest.raises(KeyboardInterrupt):
        with deferred_interrupt():
            os.kill(os.getpid(), signal.SIGINT)
            done.append("update finished")
    assert done == ["update finished"]


def test_sigterm_is_held_too_and_reaches_its_handler_after_the_update():
    """SIGTERM inside deferred_interrupt is held, then delivered to the handler installed before
    (the CLI's turns it into KeyboardInterrupt, so the run saves its state as on Ctrl-C)."""
    import os
    import signal

    def terminate(signum, frame):
        raise KeyboardInterrupt

    before = signal.signal(signal.SIGTERM, terminate)
    done = []
    try:
        with pytest.raises(KeyboardInterrupt):
            with deferred_interrupt():
                os.kill(os.getpid(), signal.SIGTERM)
                done.append("update finished")
        assert done == ["update finished"] and signal.getsignal(signal.SIGTERM) is terminate
    finally:
        signal.signal(signal.SIGTERM, before)


def test_trainer_checkpoint_round_trips_through_saved_tensors_and_json():
    """A Trainer cut at step 2 and resumed from its checkpoint's tensors + JSON meta ends where an
    uninterrupted one does (AdamW state, linear schedule, batch position)."""
    from frozen_lm.checkpoint import TrainCheckpoint
    from frozen_lm.train import TrainInterrupted

    target = torch.linspace(-1, 1, 12)
    data = torch.randn(10, 12, generator=torch.Generator().manual_seed(0))

    def make(on_event=None):
        w = {"w": torch.zeros(12)}

        def loss(index):
            return ((data[index] * w["w"]).sum(1) - (data[index] * target).sum(1)).pow(2).mean()

        s = TrainSettings(steps=5, batch_size=3, lr=0.1, seed=4, schedule="linear", warmup_steps=1)
        return w, Trainer(w, loss, 10, s, callback=on_event)

    w_full, trainer = make()
    full = trainer.run()

    def cut(event):
        if event.step == 2:
            raise KeyboardInterrupt

    _, trainer = make(cut)
    with pytest.raises(TrainInterrupted) as stop:
        trainer.run()
    c = stop.value.checkpoint
    meta = json.loads(json.dumps(c.meta()))
    w, trainer = make()
    resumed = trainer.run(resume=TrainCheckpoint.from_saved(c.tensors(), meta))
    assert torch.equal(w["w"], w_full["w"]) and resumed.history == full.history
