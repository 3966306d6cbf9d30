"""Prompt tuning and prefix tuning on tiny random models: maths, inits, artifacts, PEFT, CLI errors."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from frozen_lm.artifact import load_artifact, save_artifact
from frozen_lm.data import Dataset
from frozen_lm.errors import UserError
from frozen_lm.task import PromptTask, TaskConfig
from softprompt.apply import artifact_logits_fn
from softprompt.config import TuneConfig, parse_init
from softprompt.init import (
    fit_ids,
    frequency_order,
    init_ids,
    prefix_init,
    prompt_init,
    token_kv,
    typical_norm,
)
from softprompt.nearest import describe, nearest_tokens, token_table
from softprompt.prefix import PrefixParams, as_prefix, prefix_logits, reserve_positions
from softprompt.prompt import place
from softprompt.train import lr_factor
from softprompt.tune import run_tune
from tests.conftest import SENTIMENT_ROWS, assert_user_error, write_jsonl

FAST = dict(steps=4, eval_every=2, progress=False, batch_size=4)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _task(lm, template="{sentence} [T] [T] [P]"):
    return PromptTask(lm, template, {"0": "terrible", "1": "great"})


# ------------------------------------------------------------------ training keeps the model frozen
@pytest.mark.parametrize("kind,method", [("llama", "prompt"), ("gpt2", "prefix"), ("llama", "prefix"), ("bert", "prompt"),
                                         ("bert", "prefix")])
def test_frozen_weights_bit_identical_prompt_changes(tiny, kind, method):
    lm = tiny(kind)
    before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    out = run_tune(TaskConfig(model="tiny"), TuneConfig(method=method, lr=0.05, **FAST), seed=0, lm=lm)
    for k, v in lm.model.state_dict().items():
        assert torch.equal(v, before[k]), k
    t = out.module.tensors()
    learned, init = (t["prompt_embeddings"], t["init_embeddings"]) if method == "prompt" else (t["prefix"], t["prefix_init"])
    assert not torch.allclose(learned, init)
    assert all(not p.requires_grad for p in lm.model.parameters())


def test_same_seed_same_result(tiny):
    lm = tiny("llama")
    runs = [run_tune(TaskConfig(model="tiny"), TuneConfig(**FAST), seed=3, lm=lm) for _ in range(2)]
    assert torch.equal(runs[0].module.vectors, runs[1].module.vectors)
    assert runs[0].result.history == runs[1].result.history


def test_early_stopping_and_facts(tiny):
    cfg = TuneConfig(steps=10, eval_every=1, patience=2, lr=1e-12, progress=False, batch_size=8)
    out = run_tune(TaskConfig(model="tiny", train="demo:capitals"), cfg, seed=0, lm=tiny("llama"))
    assert out.result.stopped == "early_stopping" and out.result.steps_done == 3 and out.result.best_step == 1
    assert "p_at_1" in out.metrics["dev"]


def test_adafactor_accumulation_and_schedule(tiny):
    cfg = TuneConfig(optimizer="adafactor", grad_accum=2, warmup_steps=2, schedule="cosine", **FAST)
    out = run_tune(TaskConfig(model="tiny"), cfg, seed=0, lm=tiny("gpt2"))
    assert out.result.steps_done == 4 and all("loss" in h for h in out.result.history[1:])
    lin = TuneConfig(steps=10, warmup_steps=2)
    assert [round(lr_factor(s, lin), 3) for s in (0, 1, 2, 6, 10)] == [0.333, 0.667, 1.0, 0.5, 0.0]


def test_lm_loss_on_target_field(tiny, tmp_path):
    rows = [{**r, "target": "great" if r["label"] else "terrible"} for r in SENTIMENT_ROWS]
    data = str(write_jsonl(tmp_path / "t.jsonl", rows))
    task_cfg = TaskConfig(model="tiny", template="{sentence} [T] [T] it was [P]", train=data, dev=data,
                          label_map="0=terrible,1=great")
    out = run_tune(task_cfg, TuneConfig(loss="lm", target_field="target", lr=0.1, **FAST), seed=0, lm=tiny("llama"))
    assert 0 <= out.metrics["dev"]["token_accuracy"] <= 1 and out.metrics["dev"]["lm_loss"] > 0


# ------------------------------------------------------------------ inits
def test_init_random_is_scaled_to_embedding_norms(tiny):
    lm = tiny("llama")
    vectors, ids = prompt_init(lm, _task(lm), 4, "random", _gen())
    assert ids is None and vectors.shape == (4, lm.hidden_size)
    assert torch.allclose(vectors.norm(dim=-1), torch.full((4,), typical_norm(lm)), rtol=1e-5)


def test_init_vocab_samples_distinct_frequent_tokens(tiny):
    gpt2, llama = tiny("gpt2"), tiny("llama")
    assert frequency_order(gpt2.tokenizer, gpt2.vocab_size) is not None  # BPE: ids follow merge order
    assert frequency_order(llama.tokenizer, llama.vocab_size) is None  # word level: no known order
    ids = init_ids("vocab", None, 6, gpt2, _task(gpt2), _gen())
    assert len(set(ids)) == 6 and not set(ids) & set(gpt2.tokenizer.all_special_ids)
    vectors, same = prompt_init(gpt2, _task(gpt2), 6, "vocab", _gen())
    assert same == ids and torch.allclose(vectors, gpt2.embed(torch.tensor(ids)))


def test_init_text_repeats_or_cuts_and_labels_come_first(tiny):
    lm = tiny("llama")
    ids = lm.tokenizer("it was", add_special_tokens=False).input_ids
    assert init_ids("text", "it was", 5, lm, _task(lm), _gen()) == (ids * 3)[:5]
    assert init_ids("text", "it was", 1, lm, _task(lm), _gen()) == ids[:1]
    with pytest.raises(UserError, match="2 tokens but there are only 1 slots"):
        fit_ids(ids, 1, truncate=False, what="init text 'it was'")
    labels = init_ids("labels", None, 4, lm, _task(lm), _gen())
    words = lm.tokenizer("terrible great", add_special_tokens=False).input_ids
    assert labels[:2] == words and len(set(labels)) == 4
    assert parse_init('text:"a b"') == ("text", "a b")


# ------------------------------------------------------------------ prefixes
@pytest.mark.parametrize("kind,layout", [("gpt2", (2, 2, 2, 3, 16)), ("llama", (2, 2, 1, 3, 8)), ("bert", (2, 2, 2, 3, 16))])
def test_prefix_shapes_follow_kv_layout(tiny, kind, layout):
    lm = tiny(kind)
    for spec in ("text:it was great", "random"):
        kv, _ = prefix_init(lm, _task(lm, "{sentence} [P]"), 3, spec, _gen())
        assert tuple(kv.shape) == layout
    rows = _task(lm, "{sentence} [P]").encode(_demo()).rows.subset([0, 1])
    logits = prefix_logits(lm, rows, kv)
    assert logits.shape == (*rows.predict_pos.shape, lm.vocab_size) and torch.isfinite(logits).all()


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_token_prefix_equals_prepended_text(tiny, kind):
    """Key/values of real tokens as a prefix give the same logits as those tokens in the input (GQA too)."""
    lm = tiny(kind)
    text = lm.tokenizer("it was great", add_special_tokens=False).input_ids
    row = lm.tokenizer(" a nice movie", add_special_tokens=False).input_ids
    kv = token_kv(lm, text)
    with_prefix = lm.logits_at(torch.tensor([[len(row) - 1]]), input_ids=torch.tensor([row]), prefix=as_prefix(kv))
    joined = lm.logits_at(torch.tensor([[len(text) + len(row) - 1]]), input_ids=torch.tensor([text + row]))
    assert torch.allclose(with_prefix, joined, atol=1e-4)


def test_long_rows_leave_room_for_the_prefix(tiny):
    lm = tiny("gpt2")  # 128 positions
    task = _task(lm, "{sentence} [P]")
    reserve_positions(task, 20)
    rows = task.encode(Dataset("long", [{"sentence": "great movie " * 200, "label": 1}])).rows
    assert rows.input_ids.shape[1] <= 108
    assert torch.isfinite(prefix_logits(lm, rows, prefix_init(lm, task, 20, "random", _gen())[0])).all()


def test_prefix_mlp_starts_at_init_and_folds(tiny):
    lm = tiny("llama")
    kv, _ = prefix_init(lm, None, 3, "random", _gen())
    params = PrefixParams(kv, projection=True, hidden=16, input_size=lm.hidden_size, generator=_gen())
    assert torch.equal(params(), kv)
    with torch.no_grad():
        params.mlp[2].weight.normal_(generator=_gen(1))
    folded = params.fold()
    assert not torch.allclose(folded, kv) and set(params.tensors()) == {"prefix", "prefix_init"}
    rows = _task(lm, "{sentence} [P]").encode(_demo()).rows.subset([0, 1])
    assert torch.allclose(params.logits(lm, rows), prefix_logits(lm, rows, folded))


def test_prompt_vectors_sit_at_the_slots(tiny):
    lm = tiny("llama")
    rows = _task(lm).encode(_demo()).rows.subset([0, 1])
    vectors = torch.randn(2, lm.hidden_size)
    embeds = place(lm, rows, vectors)
    assert torch.equal(embeds[1, rows.trigger_pos[1, 1]], vectors[1])
    assert torch.equal(embeds[0, 0], lm.embed(rows.input_ids[0, :1])[0])


def _demo():
    from frozen_lm import data as data_mod

    return data_mod.load("demo:sentiment:dev")


# ------------------------------------------------------------------ artifacts and CLI
def _tune(cli, folder, out, *extra):
    result = cli("tune", "--model", folder, "--steps", 3, "--eval-every", 0, "--no-progress", "--out", out, "--json", *extra)
    assert result.exit_code == 0, result.output
    return json.loads(result.output.strip().splitlines()[-1])


@pytest.mark.parametrize("method", ["prompt", "prefix"])
def test_save_load_round_trip(cli, tiny_folder, tmp_path, method):
    folder = tiny_folder("llama")
    summary = _tune(cli, folder, tmp_path / "run", "--method", method)
    art = load_artifact(tmp_path / "run")
    assert art.method == f"{method}_tuning" and art.config["method"] == method
    assert set(art.tensors) == ({"prompt_embeddings", "init_embeddings"} if method == "prompt" else {"prefix", "prefix_init"})
    again = cli("evaluate", tmp_path / "run", "--model", folder, "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.output.strip().splitlines()[-1])["accuracy"] == summary["dev_accuracy"]


def test_peft_export_round_trip(cli, tiny_folder, tmp_path):
    peft = pytest.importorskip("peft")
    from transformers import AutoModelForCausalLM

    folder = tiny_folder("gpt2")
    _tune(cli, folder, tmp_path / "run", "--num-virtual-tokens", 3, "--template", "{sentence} it was [P]",
          "--export-peft", tmp_path / "peft")
    art = load_artifact(tmp_path / "run")
    assert art.task["template"].startswith("[T][T][T]{sentence}")
    from frozen_lm.model import FrozenLM

    lm = FrozenLM.load(folder)
    task = PromptTask.from_config(lm, TaskConfig(**art.task))
    rows = task.encode(_demo()).rows.subset([0, 1, 2])
    ours = artifact_logits_fn(art, lm, task)(rows)
    plain = rows.input_ids[:, 3:]  # PEFT prepends its 3 virtual tokens to the text without slots
    with warnings.catch_warnings(), torch.no_grad():  # PEFT calls transformers' deprecated aliases
        warnings.simplefilter("ignore", FutureWarning)
        model = peft.PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(folder), str(tmp_path / "peft")).eval()
        logits = model(input_ids=plain, attention_mask=rows.attention_mask[:, 3:]).logits
    theirs = logits.gather(1, rows.predict_pos.unsqueeze(-1).expand(-1, -1, logits.shape[-1]))
    assert torch.allclose(ours, theirs, atol=1e-4)


def test_peft_prefix_export_round_trip(cli, tiny_folder, tmp_path):
    peft = pytest.importorskip("peft")
    from transformers import AutoModelForCausalLM

    from frozen_lm.model import FrozenLM

    folder = tiny_folder("llama")  # one key/value head: PEFT's grouped-query layout
    _tune(cli, folder, tmp_path / "run", "--method", "prefix", "--num-virtual-tokens", 2, "--template", "{sentence} it was [P]",
          "--export-peft", tmp_path / "peft")
    art, lm = load_artifact(tmp_path / "run"), FrozenLM.load(folder)
    task = PromptTask.from_config(lm, TaskConfig(**art.task))
    rows = task.encode(_demo()).rows.subset([0, 1, 2])
    ours = artifact_logits_fn(art, lm, task)(rows)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", FutureWarning)
        model = peft.PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(folder), str(tmp_path / "peft")).eval()
        logits = model(input_ids=rows.input_ids, attention_mask=rows.attention_mask).logits
    theirs = logits.gather(1, rows.predict_pos.unsqueeze(-1).expand(-1, -1, logits.shape[-1]))
    assert torch.allclose(ours, theirs, atol=1e-4)
    plain = lm.logits_at(rows.predict_pos, input_ids=rows.input_ids, attention_mask=rows.attention_mask)
    assert not torch.allclose(plain, theirs, atol=1e-3)


def test_nearest_finds_a_planted_token(cli, tiny, tiny_folder, tmp_path):
    lm = tiny("llama")
    great = lm.tokenizer.convert_tokens_to_ids("great")
    planted = token_table(lm)[[great, great + 1]]
    dist, ids = nearest_tokens(planted, token_table(lm), 3, "l2")
    assert ids[:, 0].tolist() == [great, great + 1] and float(dist[0, 0]) < 1e-4
    rows = describe(lm, planted, planted, 2, "cosine")
    assert rows[0]["nearest"][0]["token"] == "great" and rows[0]["drift_l2"] == 0

    folder = tiny_folder("llama")
    _tune(cli, folder, tmp_path / "run")
    art = load_artifact(tmp_path / "run")
    tensors = {"prompt_embeddings": token_table(lm)[[great, great, great + 1]], "init_embeddings": art.tensors["init_embeddings"]}
    save_artifact(tmp_path / "run", art.method, art.config, art.task, lm, 0, tensors, art.results)
    result = cli("nearest", tmp_path / "run", "--k", 2, "--metric", "l2", "--json", "--evaluate")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.strip().splitlines()[-1])
    assert report["trigger_tokens"][:2] == ["great", "great"] and report["slots"][0]["nearest"][0]["distance"] < 1e-3
    assert "--trigger" in report["command"] and len(report["scores"]) == 2
    table = cli("nearest", tmp_path / "run", "--k", 2)
    assert "great" in table.output and "autoprompt evaluate" in table.output


@pytest.mark.parametrize("args,fragment", [
    (("--num-virtual-tokens", 0), "--num-virtual-tokens must be at least 1"),
    (("--init", "bogus"), "--init 'bogus' is unknown"),
    (("--template", "{sentence} it was [P]"), "has no [T] slots"),
    (("--init", "text:it was a great movie", "--no-truncate-init"), "tokens but there are only 3 slots"),
])
def test_bad_input_is_one_line_exit_2(cli, tiny_folder, tmp_path, args, fragment):
    result = cli("tune", "--model", tiny_folder("llama"), "--steps", 2, "--no-progress", "--out", tmp_path / "r", *args)
    assert_user_error(result, fragment)


def test_nan_loss_stops_and_keeps_best(cli, tiny_folder, tmp_path):
    result = cli("tune", "--model", tiny_folder("llama"), "--steps", 6, "--eval-every", 1, "--lr", "inf",
                 "--max-grad-norm", 0, "--no-progress", "--out", tmp_path / "r", "--json")
    assert_user_error(result, "kept the best checkpoint", str(tmp_path / "r"))
    art = load_artifact(tmp_path / "r")
    assert art.results["stopped"] == "nan" and torch.isfinite(art.tensors["prompt_embeddings"]).all()


def test_artifact_on_another_model_is_refused(cli, tiny_folder, tmp_path):
    _tune(cli, tiny_folder("llama"), tmp_path / "run")
    assert_user_error(cli("nearest", tmp_path / "run", "--model", tiny_folder("gpt2")), "was made with model")
    assert_user_error(cli("evaluate", tmp_path / "run", "--model", tiny_folder("gpt2")), "was made with model")
    assert (tmp_path / "run" / "weights.safetensors").exists()
