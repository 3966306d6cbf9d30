"""PEZ (hard prompts made easy) on tiny random models: the straight-through gradient, planted
prompts for label words, facts and target strings, the fluency term, artifacts and the CLI."""

from __future__ import annotations

import json

import pytest
import torch

import softprompt
from frozen_lm import data as data_mod
from frozen_lm.errors import UserError
from frozen_lm.evaluate import DiscretePrompt, evaluate
from frozen_lm.fluency import prompt_perplexity
from frozen_lm.model import FrozenLM
from frozen_lm.prompts.init import special_ids, typical_norm
from frozen_lm.prompts.soft import prompt_logits
from frozen_lm.results import load_result
from frozen_lm.task import PromptTask
from frozen_lm.testing import tiny_lm, tiny_model
from softprompt import PezConfig, PezResult, PromptTuningConfig
from softprompt.pez import PezPrompt, Projector, output_map, pez_loss
from softprompt.reading import token_table
from tests.conftest import assert_user_error

LABELS = {"0": "terrible", "1": "great"}
TRAIN, DEV = "demo:sentiment:train", "demo:sentiment:dev"
FAST = dict(steps=6, eval_every=2, batch_size=8)


def _pez(task, train=TRAIN, dev=DEV, **cfg) -> PezResult:
    return softprompt.tune(task, train, dev, PezConfig(**{**FAST, **cfg}), progress=False)


def _rows(task, n=8):
    return task.encode(data_mod.load(DEV)).rows.subset(list(range(n)))


def _planted_facts(secret: str) -> list[dict]:
    """Every answer is the secret word. The tiny Llama ties its input and output embeddings, so that
    word in the slot right before [P] makes the model say it: the trigger to find is the word itself."""
    return [{"sentence": r["sentence"], "obj_label": secret} for r in data_mod.load("demo:sentiment:all").rows]


# ------------------------------------------------------------------ the maths
@pytest.mark.parametrize("weight", [0.0, 0.5])
def test_gradient_is_the_gradient_at_the_projection(tiny, weight):
    """The continuous vectors get exactly the gradient of the loss taken at their nearest tokens'
    embeddings (straight-through), not the gradient at the vectors themselves."""
    lm = tiny("llama")
    task = PromptTask(lm, "{sentence} [T] [T] [P]", LABELS)
    rows = _rows(task)
    start = torch.randn(2, lm.hidden_size, generator=torch.Generator().manual_seed(0)) * typical_norm(lm)
    module = PezPrompt(start, Projector(lm, "cosine"))
    to_output = output_map(lm) if weight else None
    loss = module.loss(task, rows, "vocab", weight, to_output)
    loss.backward()
    ids = module.project()
    at = lm.embed(ids).detach().float().requires_grad_(True)
    direct = pez_loss(lm, task, rows, at, ids, "vocab", weight, to_output)
    direct.backward()
    assert torch.equal(loss.detach(), direct.detach())
    assert torch.allclose(module.vectors.grad, at.grad, atol=1e-7, rtol=1e-5)
    v = start.clone().requires_grad_(True)
    task.loss(prompt_logits(lm, rows, v), rows, "vocab").backward()
    assert not torch.allclose(v.grad, at.grad, atol=1e-6)  # prompt tuning's gradient is another one


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_projection_is_the_nearest_allowed_token(tiny, metric):
    lm = tiny("llama")
    table = token_table(lm)
    great = lm.tokenizer.convert_tokens_to_ids("great")
    mask = lm.tokenizer.mask_token_id
    vectors = torch.stack([table[great] * (1.5 if metric == "cosine" else 1.0) + 1e-4, table[mask]])
    ids = Projector(lm, metric)(vectors)
    assert int(ids[0]) == great and int(ids[1]) != mask and int(ids[1]) not in special_ids(lm.tokenizer)


def test_fluency_adds_the_trigger_log_prob_by_hand(tiny):
    """loss = task loss - w * mean log p(trigger token | everything before it), on one batch."""
    lm = tiny("llama")
    task = PromptTask(lm, "{sentence} [T] [T] [T] [P]", LABELS)
    rows = _rows(task)
    ids = torch.tensor(lm.tokenizer("it was great", add_special_tokens=False).input_ids)
    prompt = lm.embed(ids).float()
    w = 0.7
    with torch.no_grad():
        plain = pez_loss(lm, task, rows, prompt, ids, "classes", 0.0)
        fluent = pez_loss(lm, task, rows, prompt, ids, "classes", w)
        full = lm.model(input_ids=rows.with_triggers(ids), attention_mask=rows.attention_mask).logits
    lp = torch.log_softmax(full.float(), -1)
    by_hand = torch.stack([lp[r, rows.trigger_pos[r, s] - 1, ids[s]] for r in range(len(rows)) for s in range(3)])
    assert float(fluent) == pytest.approx(float(plain) - w * float(by_hand.mean()), rel=1e-5)
    ppl = prompt_perplexity(lm, rows, ids)
    assert ppl == pytest.approx(float(torch.exp(-by_hand.mean())), rel=1e-5)


def test_output_map_takes_the_prompt_space_to_the_output_embeddings(tiny):
    lm = tiny("llama")  # tied embeddings: exactly the identity
    assert torch.equal(output_map(lm), torch.eye(lm.hidden_size))
    model, tok = tiny_model("llama")
    model.config.tie_word_embeddings = False
    m = torch.randn(lm.hidden_size, lm.hidden_size, generator=torch.Generator().manual_seed(0))
    model.lm_head.weight = torch.nn.Parameter(model.get_input_embeddings().weight.detach() @ m)
    untied = FrozenLM(model, tok, kind="causal")
    assert torch.allclose(output_map(untied), m, atol=1e-3)


def test_fluency_gradient_reaches_each_slot_through_its_own_token(tiny):
    """Beyond the context path, each slot's vector gets -w times d/du of the mean over rows and
    slots of f . u, f the final hidden state that predicts the slot (tied embeddings: u scores as
    an output embedding), so the vector moves toward tokens likely after its context."""
    lm, w = tiny("llama"), 0.7
    task = PromptTask(lm, "{sentence} [T] [T] [T] [P]", LABELS)
    rows = _rows(task)
    ids = torch.tensor(lm.tokenizer("it was great", add_special_tokens=False).input_ids)
    grads = []
    for to_output in (None, output_map(lm)):
        at = lm.embed(ids).detach().float().requires_grad_(True)
        pez_loss(lm, task, rows, at, ids, "vocab", w, to_output).backward()
        grads.append(at.grad)
    with torch.no_grad():
        out = lm.model(input_ids=rows.with_triggers(ids), attention_mask=rows.attention_mask, output_hidden_states=True)
    final = out.hidden_states[-1].float()
    by_hand = torch.stack([torch.stack([final[r, rows.trigger_pos[r, s] - 1] for r in range(len(rows))]).mean(0) / 3
                           for s in range(3)])
    assert torch.allclose(grads[1] - grads[0], -w * by_hand, atol=1e-5, rtol=1e-4)


def test_fluency_without_a_separate_head_says_so_and_still_trains(tiny, monkeypatch, caplog):
    """A model whose head cannot run on its own gets the context-only fluency gradient, with a notice."""
    lm = tiny("llama")
    task = PromptTask(lm, "{sentence} [T] [T] [T] [P]", LABELS)
    monkeypatch.setattr(FrozenLM, "splits_head", property(lambda self: False))
    with caplog.at_level("WARNING", logger="softprompt.pez"):
        r = _pez(task, steps=2, fluency_weight=0.5)
    assert "only through the context" in caplog.text
    assert r.metrics["prompt_perplexity"] > 0 and len(r.prompt.trigger_ids) == 3


def test_fluency_needs_a_causal_lm_and_pez(tiny):
    from frozen_lm.configs import from_dict

    task = PromptTask(tiny("bert"), "{sentence} [T] [T] [P]", LABELS)
    with pytest.raises(UserError, match="PezConfig.fluency_weight scores the trigger .* needs a causal LM"):
        _pez(task, fluency_weight=0.5)
    with pytest.raises(UserError, match="PromptTuningConfig.fluency_weight is not an option"):
        from_dict(PromptTuningConfig, {"fluency_weight": 0.5})  # a PEZ option only
    with pytest.raises(UserError, match="PezConfig.fluency_weight must be 0 or more, got -1"):
        PezConfig(fluency_weight=-1)
    with pytest.raises(UserError, match="PezConfig.fluency_weight must be 0 or more, got inf"):
        PezConfig(fluency_weight=float("inf"))
    with pytest.raises(UserError, match="PezConfig.pez_metric is 'dot'; choose one of: cosine, l2"):
        PezConfig(pez_metric="dot")
    r = _pez(task, steps=2)  # PEZ itself runs on a masked LM; there is no perplexity to report
    assert r.metrics["prompt_perplexity"] is None and len(r.prompt.trigger_ids) == 2


def test_fluency_weight_lowers_the_prompt_perplexity(tiny):
    task = PromptTask(tiny("llama"), "{sentence} [T] [T] [T] [P]", LABELS)
    runs = {w: _pez(task, steps=20, lr=0.03, fluency_weight=w, seed=1) for w in (0.0, 5.0)}
    plain, fluent = runs[0.0].metrics["prompt_perplexity"], runs[5.0].metrics["prompt_perplexity"]
    assert plain is not None and fluent < plain * 0.9, (plain, fluent)
    assert runs[5.0].metrics["dev"]["prompt_perplexity"] == pytest.approx(fluent)


# ------------------------------------------------------------------ planted prompts
def test_pez_finds_the_planted_token(tiny):
    lm = tiny("llama")
    task = PromptTask(lm, "{sentence} [T] [P]")
    data = _planted_facts("acting")
    assert evaluate(task, data, prompt="the")["p_at_1"] == 0.0
    r = _pez(task, data, data, init="text:the", steps=20, lr=0.01)
    assert r.trigger_text == "acting" and r.metrics["dev"]["p_at_1"] == 1.0 and r.best_dev == 1.0
    assert r.history[0]["dev"]["p_at_1"] == 0.0 and r.best_step > 0
    assert evaluate(task, data, prompt=r)["p_at_1"] == 1.0


def test_pez_reaches_a_planted_label(tiny):
    """Every label is 1 ('great'): PEZ finds a prompt that is right on every dev example."""
    lm = tiny("llama")
    task = PromptTask(lm, "{sentence} [T] [P]", LABELS)
    data = [{**r, "label": 1} for r in data_mod.load("demo:sentiment:all").rows]
    start = evaluate(task, data, prompt="the")["accuracy"]
    r = _pez(task, data, data, init="text:the", steps=10, lr=0.03)
    assert start < 1.0 and r.metrics["dev"]["accuracy"] == 1.0 and "loglik" in r.metrics["dev"]


def test_pez_on_a_target_string(tiny):
    lm = tiny("llama")
    task = PromptTask(lm, "{sentence} [T] [T]", target="acting")
    r = _pez(task, init="text:the", steps=20, lr=0.01)
    assert r.config.loss == "lm" and r.metric == "exact_match" and r.trigger_tokens[-1] == "acting"
    dev = r.metrics["dev"]
    assert dev["exact_match"] == 1.0 and r.history[0]["dev"]["exact_match"] == 0.0
    assert {k: dev[k] for k in ("exact_match", "loss", "n_scored", "n_skipped")} == evaluate(task, DEV, prompt=r)


def test_pez_with_a_fixed_target_and_no_data(tiny):
    lm = tiny("llama")
    task = PromptTask(lm, "[T] [T]", target="acting")
    r = _pez(task, task.default_data(), task.default_data(), init="text:the", steps=20, lr=0.01)
    assert r.metrics["dev"]["exact_match"] == 1.0 and r.metrics["prompt_perplexity"] > 0


# ------------------------------------------------------------------ the result
def test_result_is_a_discrete_prompt_that_saves_and_loads(tiny, tmp_path):
    lm = tiny("llama")
    task = PromptTask(lm, "{sentence} It was [P] .", LABELS)
    r = softprompt.tune(task, TRAIN, DEV, PezConfig(**{**FAST, "num_virtual_tokens": 3, "init": "text:it was"}),
                        out=tmp_path / "run", progress=False)
    assert isinstance(r, PezResult) and r.method == "pez" and r.template == "[T][T][T]{sentence} It was [P] ."
    assert isinstance(r.prompt, DiscretePrompt) and r.tensors["trigger_ids"].tolist() == r.prompt.trigger_ids
    assert set(r.tensors) == {"trigger_ids", "prompt_embeddings", "init_embeddings"}
    assert r.filled_template.startswith(r.trigger_tokens[0])
    loaded = load_result(tmp_path / "run")
    assert isinstance(loaded, PezResult) and loaded.prompt == r.prompt and loaded.config == r.config
    for name, t in r.tensors.items():
        assert torch.equal(loaded.tensors[name], t.cpu()), name
    on_task = evaluate(task, DEV, prompt=r)
    assert evaluate(task, DEV, prompt=loaded) == on_task
    eff = task.derive(template=r.template)
    assert evaluate(eff, DEV, prompt=r.prompt) == on_task == evaluate(eff, DEV, prompt=loaded)
    assert evaluate(task, DEV, prompt=r.prompt) == on_task  # the prompt prepends its slots as tuning did
    plain = DiscretePrompt.from_ids(lm.tokenizer, r.prompt.trigger_ids)
    assert evaluate(eff, DEV, prompt=plain) == on_task
    assert on_task["accuracy"] == r.metrics["dev"]["accuracy"]
    assert softprompt.nearest(loaded, k=2, lm=lm).template == r.template  # the final vectors read like any prompt
    with pytest.raises(UserError, match="discrete prompt"):
        loaded.export_peft(tmp_path / "peft", lm=lm)


def test_same_seed_same_result(tiny):
    task = PromptTask(tiny("llama"), "{sentence} [T] [T] [T] [P]", LABELS)
    runs = [_pez(task, seed=3, fluency_weight=0.5) for _ in range(2)]
    for name, t in runs[0].tensors.items():
        assert torch.equal(runs[1].tensors[name], t), name
    assert runs[0].history == runs[1].history and runs[0].metrics == runs[1].metrics
    other = _pez(task, seed=4)
    assert not torch.equal(other.tensors["prompt_embeddings"], runs[0].tensors["prompt_embeddings"])


def test_default_lr_follows_the_embedding_scale_and_is_saved(tiny, tmp_path):
    """PEZ's default lr is PEZ_LR_SCALE x the RMS embedding coordinate: scaling the embeddings by c
    scales it by c (Adam moves each coordinate by about lr, so the steps keep their size relative to
    the distances between tokens); an lr given explicitly is kept; the config saved holds the value."""
    from frozen_lm.prompts.init import embedding_rms
    from softprompt.config import PEZ_LR_SCALE

    lm = tiny("llama")
    task = PromptTask(lm, "{sentence} [T] [T] [P]", LABELS)
    assert PezConfig().lr is None and PromptTuningConfig().lr == 0.03
    rms = float(lm.embedding_matrix.float().pow(2).mean().sqrt())
    assert embedding_rms(lm) == pytest.approx(rms)
    r = _pez(task, steps=1)
    assert r.config.lr == pytest.approx(PEZ_LR_SCALE * rms, rel=1e-4)
    r.save(tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert json.dumps(saved).count(str(r.config.lr)) >= 1
    assert load_result(tmp_path / "run").config.lr == r.config.lr
    assert _pez(task, steps=1, lr=0.05).config.lr == 0.05
    big = tiny_lm("llama")
    with torch.no_grad():
        big.embedding_matrix.mul_(10.0)
    assert embedding_rms(big) == pytest.approx(10 * rms, rel=1e-5)


def test_patience_stops_and_callback_stops(tiny):
    task = PromptTask(tiny("llama"), "{sentence} [T] [T] [P]", LABELS)
    r = _pez(task, steps=20, eval_every=1, patience=2, lr=1e-9)  # the projection never changes
    assert r.stopped == "early_stopping" and r.steps_done == 2 and r.best_step == 0 and r.status == "done"
    stopped = softprompt.tune(task, TRAIN, DEV, PezConfig(**FAST), callback=lambda e: e.step == 3, progress=False)
    assert stopped.stopped == "callback" and stopped.status == "stopped" and stopped.steps_done == 3


# ------------------------------------------------------------------ the command line
def test_cli_tune_pez_then_evaluate(cli, tiny_folder, tmp_path):
    folder, out = tiny_folder("llama"), tmp_path / "run"
    result = cli("tune", "--method", "pez", "--model", folder, "--num-virtual-tokens", 2, "--init", "text:it was",
                 "--steps", 4, "--eval-every", 2, "--fluency-weight", 0.1, "--pez-metric", "l2", "--no-progress",
                 "--out", out, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["method"] == "pez" and summary["slots"] == 2 and summary["prompt_ppl"] > 0
    assert isinstance(summary["trigger"], str) and "dev_accuracy" in summary
    again = cli("evaluate", out, "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.output.strip().splitlines()[-1])["accuracy"] == summary["dev_accuracy"]
    help_text = cli("tune", "--method", "pez", "--help").output
    assert "--pez-metric" in help_text and "--fluency-weight" in help_text
    assert "autoprompt tune --method pez --num-virtual-tokens 5 --init 'text:It was'" in help_text


def test_cli_pez_on_a_fixed_target_needs_no_data(cli, tiny_folder, tmp_path):
    out = tmp_path / "run"
    result = cli("tune", "--method", "pez", "--model", tiny_folder("llama"), "--target", "acting", "--template",
                 "[T] [T]", "--init", "text:the", "--lr", 0.01, "--steps", 20, "--eval-every", 2, "--no-progress",
                 "--out", out, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["dev_exact_match"] == 1.0 and summary["trigger"].endswith("acting") and "dev_loss" in summary
    again = json.loads(cli("evaluate", out, "--json").output.strip().splitlines()[-1])
    assert again["exact_match"] == 1.0 and again["n_scored"] == 1


def test_ctrl_c_during_pez_keeps_the_best_prompt(tiny, tmp_path, monkeypatch):
    from frozen_lm.errors import Interrupted
    from softprompt.pez_fit import PezFit

    real, calls = PezFit.loss, {"n": 0}

    def loss(self, index):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(self, index)

    monkeypatch.setattr(PezFit, "loss", loss)
    task = PromptTask(tiny("llama"), "{sentence} [T] [T] [P]", LABELS)
    with pytest.raises(Interrupted, match="interrupted after step 3") as info:
        softprompt.tune(task, TRAIN, DEV, PezConfig(**{**FAST, "eval_every": 1}), out=tmp_path / "run", progress=False)
    saved = load_result(tmp_path / "run")
    assert saved.status == "interrupted" and saved.steps_done == 3 and saved.prompt == info.value.result.prompt
    assert saved.best_step in (0, 1, 2, 3) and evaluate(task, DEV, prompt=saved)["n_scored"] == 32


@pytest.mark.parametrize("args,fragment", [
    (("--fluency-weight", 0.5), "add --method pez"),
    (("--method", "pez", "--export-peft", "peft"), "a pez run finds a discrete prompt"),
    (("--method", "pez", "--loss", "lm"), "--loss 'lm' trains on a target string"),
])
def test_cli_bad_pez_input_is_one_line(cli, tiny_folder, tmp_path, args, fragment):
    result = cli("tune", "--model", tiny_folder("llama"), "--steps", 2, "--no-progress", "--out", tmp_path / "r", *args)
    assert_user_error(result, fragment)
    assert not (tmp_path / "r" / "config.json").exists()


def test_a_pez_artifact_of_package_0_2_still_loads(tiny, tmp_path):
    """0.2 saved every TuneConfig field (method 'pez', the prefix options) in the config."""
    lm = tiny("llama")
    task = PromptTask(lm, "{sentence} [T] [T] [P]", LABELS)
    r = softprompt.tune(task, TRAIN, DEV, PezConfig(**{**FAST, "steps": 2}), out=tmp_path / "run", progress=False)
    meta = json.loads((tmp_path / "run" / "config.json").read_text())
    meta["config"] = {**meta["config"], "method": "pez", "prefix_projection": True, "prefix_hidden": 512}
    (tmp_path / "run" / "config.json").write_text(json.dumps(meta))
    loaded = load_result(tmp_path / "run")
    assert isinstance(loaded, PezResult) and loaded.method == "pez" and loaded.config == r.config
    assert loaded.prompt == r.prompt and evaluate(task, DEV, prompt=loaded) == evaluate(task, DEV, prompt=r)


def test_a_long_pez_run_writes_each_better_prompt(tiny, tmp_path):
    """The artifact is rewritten when dev finds a better discrete prompt (status 'running'), and
    that prompt scores what it records."""
    task = PromptTask(tiny("llama"), "{sentence} [T] [T] [P]", LABELS)
    out, seen = tmp_path / "run", []

    def look(event):
        if event.step == 3:
            seen.append(load_result(out))
        return event.step == 3

    r = softprompt.tune(task, TRAIN, DEV, PezConfig(**{**FAST, "steps": 100000, "eval_every": 1}), out=out,
                        callback=look, progress=False)
    (running,) = seen
    assert running.status == "running" and running.method == "pez" and 0 <= running.best_step <= 3
    assert evaluate(task, DEV, prompt=running)["accuracy"] == running.best_dev == running.metrics["dev"]["accuracy"]
    assert r.status == "stopped" and load_result(out).status == "stopped"
