"""Prompts across models on the command line: `evaluate ARTIFACT --model OTHER` (a discrete prompt as
text, its drift shown; a soft prompt refused in one line), `search --model a,b` (one prompt for
several models; resume refusals), `intrinsic-dim --model a,b` (one run per model, d90 against size),
and commands that take one model."""

from __future__ import annotations

import json

import pytest

from frozen_lm.testing import save_tiny
from tests.conftest import assert_user_error


def test_evaluate_a_search_artifact_on_another_model(cli, tiny_folder, tmp_path):
    gpt2, llama = tiny_folder("gpt2"), tiny_folder("llama")
    done = cli("search", "--model", gpt2, "--iters", "1", "--num-cand", "4", "--out", tmp_path / "s", "--no-progress")
    assert done.exit_code == 0, done.output
    shown = cli("evaluate", tmp_path / "s", "--model", llama, "--data", "demo:sentiment:dev")
    assert shown.exit_code == 0, shown.output
    assert f"carried from {gpt2} to {llama}: written as text and retokenized" in shown.output
    assert "source tokens became" in shown.output
    as_json = cli("evaluate", tmp_path / "s", "--model", llama, "--data", "demo:sentiment:dev", "--json")
    moved = json.loads(as_json.output.strip().splitlines()[-1])["transfer"]
    assert moved["source_model"] == gpt2 and moved["drift"]["n_tokens_before"] == 3


def test_evaluate_a_soft_prompt_on_another_model_is_refused(cli, tiny_folder, tmp_path):
    llama, gpt2 = tiny_folder("llama"), tiny_folder("gpt2")
    done = cli("tune", "--model", llama, "--steps", "1", "--out", tmp_path / "t", "--no-progress")
    assert done.exit_code == 0, done.output
    assert_user_error(cli("evaluate", tmp_path / "t", "--model", gpt2), "was made with model", "soft prompt",
                      "only discrete prompts")


def test_search_on_two_models_and_resume(cli, tiny_folder, tmp_path):
    llama, gpt2 = tiny_folder("llama"), tiny_folder("gpt2")
    other = str(save_tiny("llama", tmp_path / "llama1", seed=1))
    out = tmp_path / "s"
    done = cli("search", "--model", f"{llama},{other},{gpt2}", "--iters", "1", "--num-cand", "4", "--out", out,
               "--no-progress")
    assert done.exit_code == 0, done.output
    assert "the prompt on each model" in done.output
    saved = json.loads((out / "results.json").read_text())
    assert [m["name"] for m in saved["models"]] == [other, gpt2] and len(saved["metrics"]["dev_models"]) == 3
    more = cli("search", "--resume", out, "--iters", "2", "--no-progress")  # the saved models, by name
    assert more.exit_code == 0, more.output
    assert json.loads((out / "results.json").read_text())["state"]["iteration"] == 2
    refused = cli("search", "--resume", out, "--model", f"{llama},{gpt2}", "--iters", "3", "--no-progress")
    assert_user_error(refused, "resume:", "--model gives")


@pytest.mark.parametrize("command", ["tune", "finetune"])
def test_commands_of_one_model_refuse_several(cli, tiny_folder, command):
    assert_user_error(cli(command, "--model", f"{tiny_folder('llama')},{tiny_folder('gpt2')}"),
                      "--model takes one model")


def test_intrinsic_dim_over_models(cli, tiny_folder, tmp_path):
    pytest.importorskip("matplotlib")
    llama, gpt2 = tiny_folder("llama"), tiny_folder("gpt2")
    done = cli("intrinsic-dim", "--model", f"{llama},{gpt2}", "--space", "prompt", "--num-virtual-tokens", "2",
               "--dims", "2,4", "--steps", "1", "--baseline-score", "0.5", "--max-dev", "8", "--out", tmp_path / "id",
               "--no-progress")
    assert done.exit_code == 0, done.output
    assert "d90 against model size" in done.output
    names = sorted(p.name for p in (tmp_path / "id").iterdir())
    assert names[2:] == ["d90_by_size.png", "summary.json"]
    assert names[0].startswith("0-tiny-llama") and names[1].startswith("1-tiny-gpt2")
    assert (tmp_path / "id" / names[0] / "config.json").exists()
    rows = json.loads((tmp_path / "id" / "summary.json").read_text())["rows"]  # sizes from the results, models released
    assert len(rows) == 2 and all(r["parameters"] > 0 for r in rows)
    assert_user_error(cli("intrinsic-dim", "--model", f"{llama},{gpt2}", "--resume", tmp_path / "id" / names[0]),
                      "--resume continues one model's run")
