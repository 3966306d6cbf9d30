"""Issue 29: the `models` axis of a grid. Every method runs on each model; every discrete result
(trains 'tokens' or 'nothing', and a soft prompt's nearest-token reading) is also scored on every
other model, giving a source x target transfer table (transfer.md / transfer.csv) and a heatmap;
soft prompts and trained weights fill only their diagonal. Two tiny Llamas with the same tokenizer
and different weights (seeds 0 and 1) stand for two models, so the scoring path works whether or not
the core carries a prompt to another tokenizer."""

from __future__ import annotations

import csv
import io
import json

import pytest

from frozen_lm.errors import UserError
from frozen_lm.testing import save_tiny
from prompt_compare import compare, load_spec, significance
from prompt_compare.significance import flatten
from prompt_compare.store import TRANSFER, read_records
from tests.conftest import assert_user_error
from tests.prompt_compare.conftest import FAST

METHODS = ["manual", "autoprompt", "prompt", "bitfit"]


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    """Two tiny Llama folders: the same tokenizer, weights from seeds 0 and 1."""
    return [str(save_tiny("llama", tmp_path_factory.mktemp(f"llama-{seed}"), seed=seed)) for seed in (0, 1)]


def test_every_method_on_each_model_and_discrete_results_across(tmp_path, two_models, words_task):
    a, b = two_models
    r = compare(words_task, METHODS, [1, 2], out=tmp_path / "g", models=[a, b], defaults=FAST)
    assert r.ran == 2 * len(METHODS) * 2 and {row["model"] for row in r.rows} == {a, b}
    assert [(row["model"], row["method"]) for row in r.table][:5] == [(a, "manual"), (a, "autoprompt"), (a, "prompt"),
                                                                      (a, "prompt (nearest tokens)"), (a, "bitfit")]
    # discrete: manual, autoprompt and the prompt's nearest tokens, each seed, each direction
    moved = {(t["method"], t["source"], t["target"], t["seed"]) for t in r.transfers}
    assert moved == {(m, s, t, seed) for m in ("manual", "autoprompt", "prompt (nearest tokens)") for s, t in ((a, b), (b, a))
                     for seed in (1, 2)}
    assert all(t["status"] == "done" and len(t["test_examples"]["correct"]) == 32 for t in r.transfers)
    assert {t["drift"]["how"] for t in r.transfers if t["method"] != "manual"} == {"ids"}  # one tokenizer: ids kept
    rows = {(row["method"], row["source"]): row["scores"] for row in r.transfer}
    own = {(row["method"], row["model"], row["seed"]): row["test"] for row in flatten(r.rows)}
    for (method, source), scores in rows.items():  # the diagonal: the grid's own cells
        assert scores[source]["mean"] == pytest.approx((own[(method, source, 1)] + own[(method, source, 2)]) / 2)
        other = b if source == a else a
        assert (scores[other]["mean"] is None) == (method in ("prompt", "bitfit"))  # only their diagonal
    manual_ab = [t["test"] for t in r.transfers if (t["method"], t["source"], t["target"]) == ("manual", a, b)]
    assert manual_ab == [own[("manual", b, 1)], own[("manual", b, 2)]]  # the template is the template
    text = (tmp_path / "g" / "transfer.md").read_text()
    assert "| method | made on | on " in text and "| prompt | " in text and "### words" in text
    lines = list(csv.DictReader(io.StringIO((tmp_path / "g" / "transfer.csv").read_text())))
    assert len(lines) == len(r.transfer) * 2 and {"source", "target", "test_mean"} <= set(lines[0])
    assert "transfer.png" in {p.name for p in r.plots} and "| model |" in r.markdown
    assert significance("autoprompt", "manual", r, model=a).n == 64
    again = compare(words_task, METHODS, [1, 2], out=tmp_path / "g", models=[a, b], defaults=FAST)
    assert (again.ran, again.skipped) == (0, 16) and len(read_records(tmp_path / "g", TRANSFER)) == len(r.transfers)
    assert again.transfer == r.transfer


def test_one_model_grids_are_unchanged(tmp_path, two_models, words_task):
    a, _ = two_models
    one = compare(words_task, ["manual"], [1], out=tmp_path / "one", model=a)
    listed = compare(words_task, ["manual"], [1], out=tmp_path / "one", models=[a])
    assert (listed.ran, listed.skipped) == (0, 1) and listed.rows[0]["id"] == one.rows[0]["id"]
    assert not (tmp_path / "one" / "transfer.md").exists() and "| model |" not in one.markdown


def test_spec_cli_and_mistakes(tmp_path, two_models, words_task, cli):
    a, b = two_models
    spec = tmp_path / "grid.yaml"
    spec.write_text(f"models: [{a}, {b}]\nseeds: [1]\nmethods: [manual]\ntasks: [{json.dumps(words_task)}]\n")
    assert load_spec(spec).models == [a, b]
    out = cli("compare", "--spec", spec, "--out", tmp_path / "g")
    assert out.exit_code == 0, out.output
    assert "transfer.md" in out.output and "| manual | " in out.output
    flags = ["compare", "--template", words_task["template"], "--label-map", "0=terrible,1=great", "--train",
             words_task["train"], "--dev", words_task["dev"], "--test", words_task["test"], "--methods", "manual",
             "--seeds", "1", "--out", tmp_path / "flags"]
    out = cli(*flags, "--models", f"{a},{b}", "--json")
    assert out.exit_code == 0, out.output
    assert_user_error(cli(*flags, "--models", f"{a},{a}"), "--models: a model is listed twice")
    assert_user_error(cli(*flags, "--models", f"{a},{b}", "--model", a), "give --model (one) or --models (several)")
    spec.write_text(f"model: {a}\nmodels: [{a}, {b}]\nseeds: [1]\nmethods: [manual]\ntasks: [{json.dumps(words_task)}]\n")
    assert_user_error(cli("compare", "--spec", spec, "--out", tmp_path / "x"),
                      "grid.yaml: models: give model (one) or models (several), not both")
    with pytest.raises(UserError, match="models: give a list of model names"):
        compare(words_task, ["manual"], [1], out=tmp_path / "y", models=[])


def test_a_discrete_prompt_goes_to_another_tokenizer_as_text(tmp_path, tiny_folder, words_task):
    """Tiny Llama (word-level vocabulary) and tiny GPT-2 (byte-level BPE): the prompts move as text and
    the records keep what became of their tokens; the soft prompt stays on its model."""
    llama, gpt2 = tiny_folder("llama"), tiny_folder("gpt2")
    r = compare(words_task, ["manual", "autoprompt", "prompt"], [1], out=tmp_path / "g", models=[llama, gpt2],
                defaults=FAST)
    assert r.failed == 0 and all(t["status"] == "done" for t in r.transfers), r.transfers
    moved = {(t["method"], t["source"]): t for t in r.transfers}
    assert set(moved) == {(m, s) for m in ("manual", "autoprompt", "prompt (nearest tokens)") for s in (llama, gpt2)}
    search = moved[("autoprompt", llama)]["drift"]
    assert search["how"] == "text" and search["n_tokens_before"] == 3 and len(search["target_tokens"]) == 3
    rows = {(row["method"], row["source"]): row["scores"] for row in r.transfer}
    assert rows[("prompt", llama)][gpt2]["mean"] is None and rows[("autoprompt", llama)][gpt2]["mean"] is not None
    assert "slots one token" in rows[("autoprompt", llama)][gpt2]["drift"]
    assert "autoprompt from " in (tmp_path / "g" / "transfer.md").read_text()
