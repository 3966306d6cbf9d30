"""Prompt tuning and prefix tuning on tiny random models: maths, inits, the API (the CLI: test_softprompt_cli.py)."""

from __future__ import annotations

import json

import pytest
import torch

import softprompt
from frozen_lm import data as data_mod
from frozen_lm.errors import UserError
from frozen_lm.evaluate import Bound, DiscretePrompt, evaluate, score
from frozen_lm.results import load_result
from frozen_lm.task import PromptTask
from frozen_lm.train import lr_factor
from softprompt import PrefixTuningConfig, PromptTuningConfig, TuneResult
from softprompt.train import train_settings
from tests.conftest import SENTIMENT_ROWS, write_jsonl

FAST = dict(steps=4, eval_every=2, batch_size=4)
LABELS = {"0": "terrible", "1": "great"}
TRAIN, DEV = "demo:sentiment:train", "demo:sentiment:dev"
CONFIGS = {"prompt": PromptTuningConfig, "prefix": PrefixTuningConfig}


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _task(lm, template="{sentence} [T] [T] [P]"):
    return PromptTask(lm, template, LABELS)


def _demo():
    return data_mod.load(DEV)


def _tune(lm, template="{sentence} [T] [T] [T] [P]", train=TRAIN, dev=DEV, method="prompt", **cfg) -> TuneResult:
    return softprompt.tune(_task(lm, template), train, dev, CONFIGS[method](**{**FAST, **cfg}), progress=False)


# ------------------------------------------------------------------ training keeps the model frozen
@pytest.mark.parametrize("kind,method", [("llama", "prompt"), ("gpt2", "prefix"), ("llama", "prefix"), ("bert", "prompt"),
                                         ("bert", "prefix")])
def test_frozen_weights_bit_identical_prompt_changes(tiny, kind, method):
    lm = tiny(kind)
    before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    r = _tune(lm, method=method, lr=0.05)
    for k, v in lm.model.state_dict().items():
        assert torch.equal(v, before[k]), k
    t = r.tensors
    learned, init = (t["prompt_embeddings"], t["init_embeddings"]) if method == "prompt" else (t["prefix"], t["prefix_init"])
    assert not torch.allclose(learned, init)
    assert all(not p.requires_grad for p in lm.model.parameters())
    assert r.lm is lm and r.status == "done" and r.config.seed == 0
    assert set(r.timings) == {"total_seconds", "step_seconds", "step_cpu_seconds"}


def test_same_seed_same_result(tiny):
    lm = tiny("llama")
    runs = [_tune(lm, seed=3) for _ in range(2)]
    assert torch.equal(runs[0].tensors["prompt_embeddings"], runs[1].tensors["prompt_embeddings"])
    assert runs[0].history == runs[1].history and runs[0].metrics == runs[1].metrics
    other = _tune(lm, seed=4)
    assert not torch.equal(other.tensors["prompt_embeddings"], runs[0].tensors["prompt_embeddings"])


def test_early_stopping_and_facts(tiny):
    lm = tiny("llama")
    task = PromptTask(lm, "{sub_label} [T] [T] [T] [P]")
    cfg = PromptTuningConfig(steps=10, eval_every=1, patience=2, lr=1e-12, batch_size=8)
    r = softprompt.tune(task, "demo:capitals:train", "demo:capitals:dev", cfg, progress=False)
    assert r.stopped == "early_stopping" and r.steps_done == 3 and r.best_step == 1
    assert "p_at_1" in r.metrics["dev"] and r.metric == "p_at_1"
    assert r.history[0]["step"] == 0 and "dev" in r.history[0]  # the initial prompt, for reference


def test_adafactor_accumulation_and_schedule(tiny):
    r = _tune(tiny("gpt2"), optimizer="adafactor", grad_accum=2, warmup_steps=2, schedule="cosine")
    assert r.steps_done == 4 and all("loss" in h for h in r.history[1:])
    lin = train_settings(PromptTuningConfig(steps=10, warmup_steps=2))
    assert [round(lr_factor(s, lin), 3) for s in (0, 1, 2, 6, 10)] == [0.333, 0.667, 1.0, 0.5, 0.0]


def test_lm_loss_learns_a_planted_target(tiny, tmp_path):
    """Every row's target is 'great' (a target-string task): training on it lowers the LM loss and
    reaches exact match, and the reported loss is the hand-computed cross-entropy of the learned prompt."""
    rows = [{**r, "target": "great"} for r in SENTIMENT_ROWS]
    data = str(write_jsonl(tmp_path / "t.jsonl", rows))
    lm = tiny("llama")
    task = PromptTask(lm, "{sentence} it was [T] [T] [P]", target_field="target")
    r = softprompt.tune(task, data, data, PromptTuningConfig(**{**FAST, "lr": 0.3, "steps": 12, "eval_every": 4}),
                        progress=False)
    assert r.config.loss == "lm" and r.metric == "exact_match"  # a target task always trains with its LM loss
    start, end = r.history[0]["dev"], r.metrics["dev"]
    assert end["loss"] < start["loss"] - 0.3, (start, end)
    assert start["exact_match"] == 0.0 and end["exact_match"] == 1.0 and end["score"] > 1.0
    bound = r.bind(task)
    great = lm.tokenizer.convert_tokens_to_ids("great")
    encoded = bound.task.encode(data)
    with torch.no_grad():
        logits = bound.logits(encoded.rows)[:, 0].float()
    by_hand = float(-torch.log_softmax(logits, -1)[:, great].mean())
    assert end["loss"] == pytest.approx(by_hand, rel=1e-5)
    assert {k: end[k] for k in ("exact_match", "loss", "n_scored")} == {
        k: v for k, v in evaluate(task, data, prompt=r).items() if k != "n_skipped"}


def test_lm_loss_needs_a_target_task(tiny):
    with pytest.raises(UserError, match="PromptTuningConfig.loss 'lm' trains on a target string"):
        _tune(tiny("llama"), loss="lm")


# ------------------------------------------------------------------ the API
def test_tune_writes_nothing_without_out(tiny, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = _tune(tiny("llama"))
    assert list(tmp_path.iterdir()) == [] and r.saved_to is None


@pytest.mark.parametrize("method", ["prompt", "prefix"])
def test_out_writes_an_artifact_that_evaluates_the_same(tiny, tmp_path, method):
    lm = tiny("llama")
    task = _task(lm, "{sentence} it was [P]")
    cfg = CONFIGS[method](num_virtual_tokens=3, **FAST)
    r = softprompt.tune(task, TRAIN, DEV, cfg, out=tmp_path / "run", progress=False)
    loaded = load_result(tmp_path / "run")
    assert isinstance(loaded, TuneResult) and loaded.method == method and loaded.lm is None
    assert loaded.template == r.template and loaded.config == r.config and loaded.task == task.spec
    assert loaded.metrics == json.loads(json.dumps(r.metrics)) and loaded.init_ids == r.init_ids
    for name, t in r.tensors.items():
        assert torch.equal(loaded.tensors[name], t.cpu()), name
    in_memory = evaluate(task, _demo(), prompt=r)
    assert evaluate(task, _demo(), prompt=loaded) == in_memory
    assert in_memory["accuracy"] == r.metrics["dev"]["accuracy"]
    assert r.data["train"]["source"] == TRAIN and r.data["dev"]["rows"] == 32


def test_callback_sees_steps_and_can_stop(tiny):
    events = []

    def stop_at_two(event):
        events.append(event)
        return event.step == 2

    r = softprompt.tune(_task(tiny("llama")), TRAIN, DEV, PromptTuningConfig(steps=6, eval_every=0, batch_size=4),
                        callback=stop_at_two, progress=False)
    assert r.status == "stopped" and r.stopped == "callback" and r.steps_done == 2
    assert [(e.kind, e.step, e.total, e.method) for e in events] == [("step", 1, 6, "prompt"), ("step", 2, 6, "prompt")]
    assert "loss" in events[0].metrics and r.best_step == 2


def test_prefix_result_evaluates_on_the_task_it_was_given(tiny):
    lm = tiny("gpt2")
    task = _task(lm, "{sentence} [T] [T] it was [P]")  # the [T] slots give the prefix length
    r = softprompt.tune(task, TRAIN, None, PrefixTuningConfig(**FAST), progress=False)
    assert r.template == "{sentence} it was [P]" and r.n_slots == 2 and "dev" not in r.metrics
    eff = task.derive(template=r.template, reserved_positions=2)
    on_given, on_effective = evaluate(task, DEV, prompt=r), evaluate(eff, DEV, prompt=r)
    assert on_given == on_effective
    bound = r.bind(task)
    assert bound.task.spec.template == r.template and bound.task.spec.reserved_positions == 2
    rows = eff.encode(_demo()).rows.subset([0, 1])
    assert not torch.allclose(bound.logits(rows), lm.logits_at(rows.predict_pos, input_ids=rows.input_ids,
                                                                attention_mask=rows.attention_mask))


def test_bind_checks_slot_counts(tiny):
    lm = tiny("llama")
    r = _tune(lm, steps=1)
    with pytest.raises(UserError, match="3 prompt vectors, but template"):
        r.bind(_task(lm, "{sentence} [T] [P]"))


def test_nearest_reading_evaluates_like_the_discrete_prompt(tiny):
    lm = tiny("llama")
    task = _task(lm, "{sentence} it was [P]")
    r = softprompt.tune(task, TRAIN, DEV, PromptTuningConfig(num_virtual_tokens=3, init="text:it was great", **FAST),
                        progress=False)
    reading = softprompt.nearest(r, k=2)
    assert set(reading.to_dict()) == {"method", "slots", "trigger_ids", "trigger_text", "trigger_tokens",
                                      "trigger_round_trips", "template"}
    assert reading.template == "[T][T][T]{sentence} it was [P]" and len(reading.trigger_ids) == 3
    eff = task.derive(template=reading.template)
    filled = score(Bound(eff), eff.encode(_demo(), reading.trigger_ids).rows)  # the ids written into the rows
    new_way = evaluate(task, DEV, prompt=reading.prompt)
    assert new_way["accuracy"] == filled.correct / filled.n and new_way["n_scored"] == filled.n == 32
    assert evaluate(eff, DEV, prompt=DiscretePrompt.from_ids(lm.tokenizer, reading.trigger_ids)) == new_way
    line = reading.command()
    assert line.startswith("autoprompt evaluate --model tiny-llama") and "--trigger" in line and DEV in line
    assert "0=terrible,1=great" in line and len(reading.table_rows()) == 3


def test_nearest_refuses_a_prefix(tiny):
    r = _tune(tiny("llama"), method="prefix", steps=1)
    with pytest.raises(UserError, match="holds key/values"):
        softprompt.nearest(r)


def test_format_1_artifacts_still_load(tiny, tmp_path):
    """Package 0.1 saved the effective template as the task's, and the data sources and model in "task"."""
    lm = tiny("llama")
    task = _task(lm, "{sentence} it was [P]")
    for method in ("prompt", "prefix"):
        r = softprompt.tune(task, TRAIN, DEV, CONFIGS[method](num_virtual_tokens=2, steps=1),
                            out=tmp_path / method, progress=False)
        meta = json.loads((tmp_path / method / "config.json").read_text())
        old_task = {**meta["task"], "template": r.template, "model": "tiny", "train": TRAIN, "dev": DEV, "device": "auto",
                    "dtype": "auto", "label_map": "0=terrible,1=great"}
        old_task.pop("reserved_positions")
        old = {"method": f"{method}_tuning", "config": {**meta["config"], "method": method, "progress": False,
                                                         "pez_metric": "cosine", "fluency_weight": 0.0},
               "task": old_task,
               "seed": 0, "model": meta["model"], "versions": meta["versions"]}
        (tmp_path / method / "config.json").write_text(json.dumps(old))
        results = json.loads((tmp_path / method / "results.json").read_text())
        results.pop("template")
        (tmp_path / method / "results.json").write_text(json.dumps(results))
        loaded = load_result(tmp_path / method)
        assert loaded.template == r.template and loaded.data["dev"]["source"] == DEV
        assert loaded.method == method and loaded.config == r.config and isinstance(loaded, TuneResult)
        expected = evaluate(task, DEV, prompt=r)
        assert evaluate(loaded.task_for(lm), DEV, prompt=loaded) == expected
        assert evaluate(task, DEV, prompt=loaded) == expected


# ------------------------------------------------------------------ configs and the registry
@pytest.mark.parametrize("cls,values,message", [
    (PromptTuningConfig, {"lr": -1.0}, "PromptTuningConfig.lr must be positive, got -1.0"),
    (PrefixTuningConfig, {"lr": float("nan")}, "PrefixTuningConfig.lr must be positive, got nan"),
    (PromptTuningConfig, {"num_virtual_tokens": 0}, "PromptTuningConfig.num_virtual_tokens must be at least 1, got 0"),
    (PromptTuningConfig, {"init": "bogus"}, "PromptTuningConfig.init 'bogus' is unknown"),
    (PrefixTuningConfig, {"init": "text:"}, "PrefixTuningConfig.init 'text:' needs some text"),
    (PrefixTuningConfig, {"prefix_hidden": 0}, "PrefixTuningConfig.prefix_hidden must be at least 1, got 0"),
    (PromptTuningConfig, {"steps": 0}, "PromptTuningConfig.steps must be at least 1, got 0"),
    (PromptTuningConfig, {"warmup_steps": -1}, "PromptTuningConfig.warmup_steps must be 0 or more, got -1"),
    (PromptTuningConfig, {"loss": "mse"}, "PromptTuningConfig.loss is 'mse'; choose one of: classes, vocab, lm"),
])
def test_bad_config_values_name_the_field(cls, values, message):
    with pytest.raises(UserError) as info:
        cls(**values)
    assert str(info.value).startswith(message) and "--" not in str(info.value)


def test_config_defaults_are_the_old_ones():
    assert PromptTuningConfig().lr == 0.03 and PrefixTuningConfig().lr == 1e-4
    assert PrefixTuningConfig(prefix_projection=False).lr == 5e-3 and PrefixTuningConfig(lr=0.2).lr == 0.2
    assert PromptTuningConfig(lr=float("inf")).lr == float("inf")  # a non-finite loss then stops the run
    c = PromptTuningConfig()
    assert (c.num_virtual_tokens, c.init, c.truncate_init, c.loss, c.optimizer, c.bf16, c.steps, c.seed) == \
        (None, "vocab", True, "classes", "adamw", False, 100, 0)
    assert (PrefixTuningConfig().prefix_projection, PrefixTuningConfig().prefix_hidden) == (True, 512)
    assert PromptTuningConfig.placement == "prompt" and PrefixTuningConfig.placement == "prefix"


def test_methods_are_registered_with_their_nearest_reading(tiny):
    from frozen_lm.methods import for_artifact, methods

    found = methods()
    assert {(n, found[n].trains, found[n].template) for n in ("prompt", "prefix", "pez")} == {
        ("prompt", "vectors", "manual"), ("prefix", "vectors", "manual"), ("pez", "tokens", "trigger")}
    assert found["prompt"].grid_defaults == {"num_virtual_tokens": 20} and "lr" in found["prompt"].space
    assert found["prompt"].command.default and found["prefix"].command.name == found["pez"].command.name == "tune"
    assert for_artifact("prompt_tuning", {"method": "prompt"}).name == "prompt"
    assert for_artifact("prefix_tuning", {"method": "prefix"}).name == "prefix"
    lm = tiny("llama")
    task = _task(lm, "{sentence} it was [P]")
    r = softprompt.tune(task, TRAIN, DEV, PromptTuningConfig(num_virtual_tokens=2, **FAST), progress=False)
    (derived,) = found["prompt"].derived(r, task)
    reading = softprompt.nearest(r, k=1, lm=lm)
    assert (derived.name, derived.trains, derived.text) == ("nearest tokens", "tokens", reading.trigger_text)
    assert evaluate(task, DEV, prompt=derived.prompt) == evaluate(task, DEV, prompt=reading.prompt)


# ------------------------------------------------------------------ the best-so-far artifact
@pytest.mark.parametrize("method", ["prompt", "prefix"])
def test_a_long_run_writes_its_best_so_far_artifact(tiny, tmp_path, method):
    """Issue 27: with a dev split, the artifact is written when dev finds a better state, long
    before the end; it evaluates to the dev score it records."""
    lm = tiny("llama")
    task = _task(lm, "{sentence} it was [P]")
    out, seen = tmp_path / "run", []

    def look(event):
        if event.step == 3:
            seen.append(json.loads((out / "results.json").read_text()))
            seen.append(load_result(out))
        return event.step == 3

    cfg = CONFIGS[method](num_virtual_tokens=2, steps=100000, eval_every=1, batch_size=4)
    r = softprompt.tune(task, TRAIN, DEV, cfg, out=out, callback=look, progress=False)
    results, running = seen
    assert results["status"] == "running" and results["stopped"] == "running" and 1 <= results["steps_done"] <= 3
    assert running.status == "running" and running.method == method and running.best_step == results["steps_done"]
    assert evaluate(task, DEV, prompt=running)[running.metric] == running.best_dev == results["metrics"]["dev"]["accuracy"]
    assert r.status == "stopped" and load_result(out).status == "stopped"


def test_a_killed_run_cannot_be_resumed_but_its_best_state_evaluates(tiny, tmp_path):
    """A folder left by a killed run (status 'running', no training state) is refused by resume=."""
    import shutil

    lm = tiny("llama")
    task = _task(lm, "{sentence} it was [P]")
    out, copy = tmp_path / "run", tmp_path / "killed"
    cfg = PromptTuningConfig(num_virtual_tokens=2, steps=6, eval_every=1, batch_size=4)

    def kill_at_three(event):
        if event.step == 3:
            shutil.copytree(out, copy)  # what a machine that died here leaves
        return False

    softprompt.tune(task, TRAIN, DEV, cfg, out=out, callback=kill_at_three, progress=False)
    assert load_result(copy).status == "running"
    with pytest.raises(UserError, match="this running run stored no training state"):
        softprompt.tune(task, TRAIN, DEV, cfg, resume=copy, progress=False)
    assert evaluate(task, DEV, prompt=load_result(copy))["n_scored"] == 32
