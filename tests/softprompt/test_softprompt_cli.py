"""Prompt and prefix tuning through the command line on tiny random models: artifacts, PEFT export,
the nearest-token reading, one-line errors."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from frozen_lm import data as data_mod
from frozen_lm.artifact import read_artifact
from frozen_lm.evaluate import evaluate
from frozen_lm.model import FrozenLM
from frozen_lm.results import load_result
from softprompt.reading import describe, nearest_tokens, token_table
from tests.conftest import SENTIMENT_ROWS, assert_user_error, write_jsonl

FAST = dict(steps=4, eval_every=2, batch_size=4)
LABELS = {"0": "terrible", "1": "great"}
TRAIN, DEV = "demo:sentiment:train", "demo:sentiment:dev"


def _demo():
    return data_mod.load(DEV)


# ------------------------------------------------------------------ artifacts and CLI
def _cli_tune(cli, folder, out, *extra):
    result = cli("tune", "--model", folder, "--steps", 3, "--eval-every", 0, "--no-progress", "--out", out, "--json", *extra)
    assert result.exit_code == 0, result.output
    return json.loads(result.output.strip().splitlines()[-1])


@pytest.mark.parametrize("method", ["prompt", "prefix"])
def test_save_load_round_trip(cli, tiny_folder, tmp_path, method):
    folder = tiny_folder("llama")
    summary = _cli_tune(cli, folder, tmp_path / "run", "--method", method)
    assert set(summary) == {"method", "slots", "steps", "best_step", "train_accuracy", "dev_accuracy", "s/step",
                            "stopped", "out"}
    assert summary["method"] == method and summary["slots"] == 3 and summary["steps"] == 3
    art = read_artifact(tmp_path / "run")
    assert art.method == method and "method" not in art.meta["config"]
    assert set(art.tensors) == ({"prompt_embeddings", "init_embeddings"} if method == "prompt" else {"prefix", "prefix_init"})
    again = cli("evaluate", tmp_path / "run", "--model", folder, "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.output.strip().splitlines()[-1])["accuracy"] == summary["dev_accuracy"]


def test_cli_prints_the_summary_table(cli, tiny_folder, tmp_path):
    folder = tiny_folder("llama")
    result = cli("tune", "--model", folder, "--steps", 2, "--no-progress", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[-3] == f"prompt on {folder}, artifact {tmp_path / 'run'}"
    assert lines[-2].split() == ["method", "slots", "steps", "best_step", "train_accuracy", "dev_accuracy", "s/step",
                                 "stopped", "out"]
    help_text = " ".join(cli("tune", "--help").output.split())  # (click wraps the lines)
    assert "prompt tuning (a trainable vector per [T] slot)" in help_text and "--export-peft" in help_text
    assert "--seed" in help_text and "--method prefix" in help_text
    prefix_help = " ".join(cli("tune", "--method", "prefix", "--help").output.split())
    assert "prefix tuning (trainable key/values at every layer)" in prefix_help and "--prefix-hidden" in prefix_help
    assert "autoprompt tune --method prefix --num-virtual-tokens 10" in prefix_help


def test_cli_virtual_tokens_take_the_demo_manual_template(cli, tiny_folder, tmp_path):
    _cli_tune(cli, tiny_folder("llama"), tmp_path / "run", "--num-virtual-tokens", 2, "--seed", 5)
    result = load_result(tmp_path / "run")
    assert result.task.template == "{sentence} It was [P] ." and result.template == "[T][T]{sentence} It was [P] ."
    assert result.config.seed == 5 and result.data["train"]["source"] == TRAIN
    assert_user_error(cli("nearest", tmp_path / "run", "--k", 0), "--k must be at least 1")


def test_cli_nearest_refuses_a_prefix(cli, tiny_folder, tmp_path):
    _cli_tune(cli, tiny_folder("llama"), tmp_path / "run", "--method", "prefix")
    assert_user_error(cli("nearest", tmp_path / "run"), "holds key/values")


def _peft_logits(peft, folder, peft_dir, input_ids, attention_mask):
    from transformers import AutoModelForCausalLM

    with warnings.catch_warnings(), torch.no_grad():  # PEFT calls transformers' deprecated aliases
        warnings.simplefilter("ignore", FutureWarning)
        model = peft.PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(folder), str(peft_dir)).eval()
        return model(input_ids=input_ids, attention_mask=attention_mask).logits


def test_peft_export_round_trip(cli, tiny_folder, tmp_path):
    peft = pytest.importorskip("peft")
    folder = tiny_folder("gpt2")
    _cli_tune(cli, folder, tmp_path / "run", "--num-virtual-tokens", 3, "--template", "{sentence} it was [P]",
              "--export-peft", tmp_path / "peft")
    result, lm = load_result(tmp_path / "run"), FrozenLM.load(folder, device="cpu")  # PEFT runs on the CPU
    assert result.template.startswith("[T][T][T]{sentence}") and result.task.template == "{sentence} it was [P]"
    bound = result.bind(result.task_for(lm))
    rows = bound.task.encode(_demo()).rows.subset([0, 1, 2])
    ours = bound.logits(rows)
    plain = rows.input_ids[:, 3:]  # PEFT prepends its 3 virtual tokens to the text without slots
    logits = _peft_logits(peft, folder, tmp_path / "peft", plain, rows.attention_mask[:, 3:])
    theirs = logits.gather(1, rows.predict_pos.unsqueeze(-1).expand(-1, -1, logits.shape[-1]))
    assert torch.allclose(ours, theirs, atol=1e-4)
    result.export_peft(tmp_path / "again", lm=lm)  # the API writes the same files
    assert (tmp_path / "again" / "adapter_model.safetensors").read_bytes() == \
        (tmp_path / "peft" / "adapter_model.safetensors").read_bytes()


def test_peft_prefix_export_round_trip(cli, tiny_folder, tmp_path):
    peft = pytest.importorskip("peft")
    folder = tiny_folder("llama")  # one key/value head: PEFT's grouped-query layout
    _cli_tune(cli, folder, tmp_path / "run", "--method", "prefix", "--num-virtual-tokens", 2, "--template",
              "{sentence} it was [P]", "--export-peft", tmp_path / "peft")
    result, lm = load_result(tmp_path / "run"), FrozenLM.load(folder, device="cpu")  # PEFT runs on the CPU
    bound = result.bind(result.task_for(lm))
    rows = bound.task.encode(_demo()).rows.subset([0, 1, 2])
    ours = bound.logits(rows)
    logits = _peft_logits(peft, folder, tmp_path / "peft", rows.input_ids, rows.attention_mask)
    theirs = logits.gather(1, rows.predict_pos.unsqueeze(-1).expand(-1, -1, logits.shape[-1]))
    assert torch.allclose(ours, theirs, atol=1e-4)
    plain = lm.logits_at(rows.predict_pos, input_ids=rows.input_ids, attention_mask=rows.attention_mask)
    assert not torch.allclose(plain, theirs, atol=1e-3)


@pytest.mark.parametrize("kind,args,fragment", [
    ("bert", ("--method", "prefix", "--num-virtual-tokens", 2), "PEFT prefix tuning here supports causal LMs only"),
    ("bert", ("--num-virtual-tokens", 2), "PEFT prompt tuning has no masked-LM task type"),
    ("llama", ("--template", "{sentence} [T] [T] [P]"), "has [T] slots inside the text"),
])
def test_export_peft_that_cannot_work_is_refused_before_training(cli, tiny_folder, tmp_path, kind, args, fragment):
    result = cli("tune", "--model", tiny_folder(kind), "--steps", 2, "--no-progress", "--out", tmp_path / "r",
                 "--export-peft", tmp_path / "peft", *args)
    assert_user_error(result, fragment)
    assert not (tmp_path / "r" / "config.json").exists() and not (tmp_path / "peft").exists()


def test_nearest_finds_a_planted_token(cli, tiny, tiny_folder, tmp_path):
    lm = tiny("llama")
    great = lm.tokenizer.convert_tokens_to_ids("great")
    planted = token_table(lm)[[great, great + 1]]
    dist, ids = nearest_tokens(planted, token_table(lm), 3, "l2")
    assert ids[:, 0].tolist() == [great, great + 1] and float(dist[0, 0]) < 1e-4
    rows = describe(lm, planted, planted, 2, "cosine")
    assert rows[0]["nearest"][0]["token"] == "great" and rows[0]["drift_l2"] == 0

    folder = tiny_folder("llama")
    _cli_tune(cli, folder, tmp_path / "run")
    saved = load_result(tmp_path / "run")
    saved.tensors["prompt_embeddings"] = token_table(lm)[[great, great, great + 1]]
    saved.save(tmp_path / "run")
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
    art = read_artifact(tmp_path / "r")
    assert art.results["stopped"] == "nan" and torch.isfinite(art.tensors["prompt_embeddings"]).all()


def test_artifact_on_another_model_is_refused(cli, tiny_folder, tmp_path):
    _cli_tune(cli, tiny_folder("llama"), tmp_path / "run")
    assert_user_error(cli("nearest", tmp_path / "run", "--model", tiny_folder("gpt2")), "was made with model")
    assert_user_error(cli("evaluate", tmp_path / "run", "--model", tiny_folder("gpt2")), "was made with model")
    assert (tmp_path / "run" / "weights.safetensors").exists()


def test_cli_lm_loss_with_target_field_and_old_artifacts(cli, tiny_folder, tmp_path):
    """`--loss lm --target-field COLUMN` runs (the option is the task's now); an artifact of the old
    `--loss lm` (target_field in the config, label words in the task) loads as a target task."""
    rows = [{**r, "target": "great"} for r in SENTIMENT_ROWS]
    data = write_jsonl(tmp_path / "t.jsonl", rows)
    out = tmp_path / "run"
    summary = _cli_tune(cli, tiny_folder("llama"), out, "--loss", "lm", "--target-field", "target", "--template",
                        "{sentence} it was [T] [T] [P]", "--train", data, "--dev", data)
    assert {"train_exact_match", "dev_exact_match", "dev_loss"} <= set(summary)
    loaded = load_result(out)
    assert loaded.task.target_field == "target" and loaded.config.loss == "lm" and loaded.task.label_map is None
    again = json.loads(cli("evaluate", out, "--json").output.strip().splitlines()[-1])
    assert again["exact_match"] == summary["dev_exact_match"] and again["loss"] == pytest.approx(summary["dev_loss"])
    meta = json.loads((out / "config.json").read_text())
    meta["config"]["target_field"] = "target"
    meta["task"] = {**meta["task"], "target_field": None, "label_map": {"0": ["terrible"], "1": ["great"]}}
    (out / "config.json").write_text(json.dumps(meta))
    old = load_result(out)
    assert old.task.target_field == "target" and old.task.label_map is None and old.metric == "exact_match"
    lm = FrozenLM.load(tiny_folder("llama"))
    assert evaluate(old.task_for(lm), str(data), prompt=old)["exact_match"] == again["exact_match"]
