"""`autoprompt evaluate` scores (accuracy, P@1 with n_scored / n_skipped, --json), `autoprompt models`,
--version and --help, on tiny models saved to folders."""

from __future__ import annotations

import json

import click
import pytest
import torch

from frozen_lm import data as data_mod
from frozen_lm import registry
from tests.conftest import SENTIMENT_ROWS, assert_user_error, write_jsonl

MANUAL = "{sentence} It was [P] ."


def run_json(cli, *args):
    result = cli("evaluate", *args, "--json")
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output  # one JSON object, nothing else on stdout
    return json.loads(lines[0])


def masked_predictions(lm, texts):
    """Logits at the one [MASK] of each text, straight from the model (no template machinery)."""
    out = []
    with torch.no_grad():
        for text in texts:
            enc = lm.tokenizer(text, return_tensors="pt")
            where = (enc.input_ids[0] == lm.tokenizer.mask_token_id).nonzero()[0, 0]
            out.append(lm.model(**enc).logits[0, where])
    return torch.stack(out)


def test_accuracy_matches_the_model(cli, tiny, tiny_folder, tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", SENTIMENT_ROWS * 3)
    m = run_json(cli, "--model", tiny_folder("bert"), "--template", MANUAL, "--label-map", "0=terrible,1=great",
                 "--data", path)
    assert set(m) == {"accuracy", "n_scored", "n_skipped", "template", "data", "model"}
    assert (m["n_scored"], m["n_skipped"], m["template"], m["data"]) == (12, 0, MANUAL, str(path))
    lm = tiny("bert")  # the same seed-0 weights as the saved folder
    logits = masked_predictions(lm, [f"{r['sentence']} It was [MASK] ." for r in SENTIMENT_ROWS * 3])
    words = lm.tokenizer.convert_tokens_to_ids(["terrible", "great"])
    want = (logits[:, words].argmax(-1) == torch.tensor([r["label"] for r in SENTIMENT_ROWS * 3])).float().mean()
    assert m["accuracy"] == pytest.approx(float(want))


def test_p_at_1_over_the_vocabulary(cli, tiny, tiny_folder):
    m = run_json(cli, "--model", tiny_folder("bert"), "--data", "demo:capitals:dev")
    rows = data_mod.load("demo:capitals:dev").rows
    lm = tiny("bert")
    single = [r for r in rows if len(lm.tokenizer(r["obj_label"], add_special_tokens=False).input_ids) == 1]
    assert m["n_scored"] == len(single) and m["n_skipped"] == m["n_multi_token"] == len(rows) - len(single)
    assert m["template"] == "The capital of {sub_label} is [P] ."
    logits = masked_predictions(lm, [f"The capital of {r['sub_label']} is [MASK] ." for r in single])
    gold = torch.tensor([lm.tokenizer.convert_tokens_to_ids(r["obj_label"].lower()) for r in single])
    assert m["p_at_1"] == pytest.approx(float((logits.argmax(-1) == gold).float().mean()))
    first = run_json(cli, "--model", tiny_folder("bert"), "--data", "demo:capitals:dev", "--multi-token", "first")
    assert first["n_scored"] == len(rows) and first["n_skipped"] == 0


def causal_log_prob(lm, prefix: str, continuation: str) -> float:
    """log p(continuation | prefix) from one plain forward pass of the whole text (no template machinery)."""
    tok = lm.tokenizer
    ids = tok(prefix).input_ids
    if tok.sep_token_id is not None and ids[-1] == tok.sep_token_id:
        ids = ids[:-1]  # a causal LM reads no end marker before [P]
    cont = tok(continuation, add_special_tokens=False).input_ids
    with torch.no_grad():
        lp = torch.log_softmax(lm.model(input_ids=torch.tensor([ids + cont])).logits[0].float(), -1)
    return float(sum(lp[len(ids) - 1 + j, t] for j, t in enumerate(cont)))


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_causal_models_and_lama_templates(cli, tiny, tiny_folder, kind):
    lm = tiny(kind)  # the same seed-0 weights as the saved folder
    facts = ["--model", tiny_folder(kind), "--template", "[X] has the capital [Y] .", "--data", "demo:capitals"]
    if kind == "gpt2":  # the tiny BPE splits every capital
        assert_user_error(cli("evaluate", *facts), "every answer is several tokens", "--multi-token first")
        facts += ["--multi-token", "first"]
    m = run_json(cli, *facts)
    rows = data_mod.load("demo:capitals").rows
    hits, scored = 0, 0
    for r in rows:  # P@1 by hand: the answer's first token is the model's top token after the text
        answer = lm.tokenizer(" " + r["obj_label"], add_special_tokens=False).input_ids
        if len(answer) > 1 and kind == "llama":
            continue  # skipped (--multi-token skip)
        first, scored = answer[0], scored + 1
        ids = lm.tokenizer(f"{r['sub_label']} has the capital").input_ids
        ids = ids[:-1] if lm.tokenizer.sep_token_id is not None and ids[-1] == lm.tokenizer.sep_token_id else ids
        with torch.no_grad():
            hits += int(lm.model(input_ids=torch.tensor([ids])).logits[0, -1].argmax()) == first
    assert m["n_scored"] + m["n_skipped"] == 103 and m["n_scored"] == scored > 0
    assert m["p_at_1"] == pytest.approx(hits / scored)
    m = run_json(cli, "--model", tiny_folder(kind), "--data", "demo:sentiment:dev", "--seed", "3")
    dev = data_mod.load("demo:sentiment:dev").rows
    right = [max((0, 1), key=lambda c: causal_log_prob(lm, f"{r['sentence']} It was", [" terrible", " great"][c]))
             == r["label"] for r in dev]
    assert m["n_scored"] == 32 and m["template"] == MANUAL and m["accuracy"] == pytest.approx(sum(right) / 32)
    assert run_json(cli, "--model", tiny_folder(kind), "--data", "demo:sentiment:dev", "--seed", "3") == m


def test_triggers_fill_the_slots(cli, tiny_folder):
    folder = tiny_folder("bert")
    with_slots = run_json(cli, "--model", folder, "--template", "{sentence} [T] [T] [P] .", "--trigger", "really very",
                          "--data", "demo:sentiment:dev")
    written = run_json(cli, "--model", folder, "--template", "{sentence} really very [P] .", "--data", "demo:sentiment:dev")
    assert with_slots["accuracy"] == written["accuracy"]
    base = ["evaluate", "--model", folder, "--data", "demo:sentiment:dev"]
    assert_user_error(cli(*base, "--template", "{sentence} [T] [T] [P] ."), "has 2 [T] slots; give --trigger")
    assert_user_error(cli(*base, "--template", "{sentence} [T] [T] [P] .", "--trigger", "very"), "is 1 tokens")
    assert_user_error(cli(*base, "--trigger", "very"), "no [T] slots")


def test_table_output(cli, tiny_folder):
    result = cli("evaluate", "--model", tiny_folder("llama"), "--data", "demo:sentiment:dev")
    assert result.exit_code == 0, result.output
    header, row = result.output.strip().splitlines()
    assert header.split()[:3] == ["accuracy", "n_scored", "n_skipped"] and "32" in row.split()


@pytest.mark.parametrize("args, fragment", [
    (["--batch-size", "0"], "--batch-size must be at least 1"),
    (["--data", "demo:nope"], "unknown demo task"),
    (["--data", "missing.jsonl", "--template", MANUAL], "does not exist"),
    (["--dtype", "float8"], "unknown dtype"),
])
def test_option_errors(cli, tiny_folder, args, fragment):
    assert_user_error(cli("evaluate", "--model", tiny_folder("llama"), *args), fragment)


def test_unknown_model_folder(cli, tmp_path):
    assert_user_error(cli("evaluate", "--model", tmp_path, "--data", "demo:sentiment:dev"), "holds no model")


# ------------------------------------------------------------------ models, version, help
def test_models_lists_aliases(cli, monkeypatch, tmp_path):
    monkeypatch.setenv("FROZEN_LM_CACHE", str(tmp_path))
    real = registry.package_folder
    monkeypatch.setattr(registry, "package_folder",
                        lambda alias: None if alias.name == "gemma3-270m" else real(alias))
    result = cli("models")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:3] == ["alias", "kind", "installed"]
    for name, alias in registry.ALIASES.items():
        row = next(line for line in lines if line.startswith(name))
        assert alias.pip in row
        assert ("yes" if registry.is_installed(name) else "no") in row.split()
    assert next(line for line in lines if line.startswith("gemma3-270m")).split()[2] == "no"
    assert "(default)" in next(line for line in lines if line.startswith(registry.DEFAULT_MODEL))


@pytest.mark.parametrize("name", list(registry.ALIASES))
def test_missing_alias_package(cli, monkeypatch, name):
    monkeypatch.setattr(registry, "package_folder", lambda alias: None)
    result = cli("evaluate", "--model", name, "--data", "demo:sentiment:dev")
    assert_user_error(result, f"model alias '{name}' is not installed", registry.ALIASES[name].pip)


def test_version(cli):
    from frozen_lm import __version__

    result = cli("--version")
    assert result.exit_code == 0 and result.output.strip() == f"autoprompt, version {__version__}"


def test_help_of_each_command(cli):
    from autoprompt_cli import main

    result = cli("--help")
    assert result.exit_code == 0 and "evaluate" in result.output and "models" in result.output
    ctx = click.Context(main)
    names = [n for n in main.list_commands(ctx) if main.get_command(ctx, n) is not None]
    assert {"evaluate", "models"} <= set(names)
    for name in names:
        result = cli(name, "--help")
        assert result.exit_code == 0, (name, result.output)
        assert "Usage: autoprompt " + name in result.output and "Traceback" not in result.output
    evaluate_help = cli("evaluate", "--help").output
    for option in ("--model", "--template", "--label-map", "--label-field", "--text-fields", "--data", "--json", "--seed"):
        assert option in evaluate_help


def test_facts_from_a_file_take_no_demo_label_words(cli, tiny_folder, tmp_path):
    rows = [{"sub_label": "France", "obj_label": "Paris"}, {"sub_label": "Japan", "obj_label": "Tokyo"}]
    path = write_jsonl(tmp_path / "facts.jsonl", rows)
    m = run_json(cli, "--model", tiny_folder("llama"), "--template", "The capital of [X] is [Y] .", "--data", path)
    assert "p_at_1" in m and m["n_scored"] == 2
    assert_user_error(cli("evaluate", "--model", tiny_folder("llama"), "--data", path), "no --template given")
