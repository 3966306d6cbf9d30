"""prompt_icl: in-context demonstrations before the hand-written template, on causal and masked
LMs; which demonstrations each example gets (classes, seeds, sampled vs fixed, never the example
itself); the query as written; demonstrations left out whole when a row is too long; the
context-length check; save -> load -> evaluate; `autoprompt icl` end to end; the registry."""

from __future__ import annotations

import json

import pytest

import prompt_icl
from frozen_lm import PromptTask, evaluate, load_result
from frozen_lm import data as data_mod
from frozen_lm.errors import UserError
from frozen_lm.methods import methods
from prompt_icl import DEMOS_FIELD, Demonstrations, ICLConfig, icl
from prompt_icl.demos import select_pool
from tests.conftest import SENTIMENT_ROWS, assert_user_error, write_jsonl

LABELS = {"0": "terrible", "1": "great"}
TEMPLATE = "{sentence} It was [P] ."
TRAIN, DEV = "demo:sentiment:train", "demo:sentiment:dev"


def demos_for(task, config=None, train=TRAIN) -> Demonstrations:
    config = config or ICLConfig()
    return Demonstrations(task, select_pool(task, data_mod.load(train), config), config)


def classes(demos: Demonstrations, picks: list[int]) -> list[str]:
    return sorted(str(demos.pool[j]["label"]) for j in picks)


@pytest.mark.parametrize("kind", ["llama", "gpt2", "bert"])
def test_runs_on_causal_and_masked_models(tiny, kind):
    task = PromptTask(tiny(kind), TEMPLATE, LABELS)
    r = icl(task, TRAIN, DEV)
    assert r.method == "icl" and r.status == "done" and r.metrics["dev"]["n_scored"] == 32
    assert 0.0 <= r.metrics["dev"]["accuracy"] <= 1.0 and len(r.pool) == 64
    # two demonstrations (one per class), then the query as written; causal LMs: a newline between
    lines = r.example.split("\n") if kind != "bert" else [r.example]
    assert r.example.endswith("It was [P] .") and r.example.count(" It was ") == 3
    assert len(lines) == (1 if kind == "bert" else 3)
    assert sorted(w for w in ("terrible", "great") for _ in range(r.example.count(f"It was {w} ."))) == ["great", "terrible"]


def test_demonstrations_of_every_class_seeded_per_example(tiny):
    task = PromptTask(tiny("llama"), TEMPLATE, LABELS)
    demos = demos_for(task, ICLConfig(demos_per_class=2, seed=3))
    draws = [demos.picks(i) for i in range(20)]
    assert all(classes(demos, p) == ["0", "0", "1", "1"] for p in draws)  # k of each class
    assert len({tuple(p) for p in draws}) > 10  # a fresh set per example
    assert draws == [demos_for(task, ICLConfig(demos_per_class=2, seed=3)).picks(i) for i in range(20)]  # same seed
    assert draws != [demos_for(task, ICLConfig(demos_per_class=2, seed=4)).picks(i) for i in range(20)]
    fixed = demos_for(task, ICLConfig(demos_per_class=2, mode="fixed", seed=3))
    assert len({tuple(fixed.picks(i)) for i in range(20)}) == 1 and classes(fixed, fixed.picks(0)) == ["0", "0", "1", "1"]


def test_an_example_is_never_its_own_demonstration(tiny):
    task = PromptTask(tiny("llama"), TEMPLATE, LABELS)
    demos = demos_for(task, ICLConfig(demos_per_class=2), train=SENTIMENT_ROWS)  # two rows per class
    for i, row in enumerate(SENTIMENT_ROWS):
        picks = demos.picks(i, row)
        assert demos.pool.index(row) not in picks and len(picks) == 3  # the other row of its class only


def test_the_query_is_the_template_as_written(tiny):
    for kind in ("llama", "gpt2", "bert"):
        task = PromptTask(tiny(kind), TEMPLATE, LABELS)
        demos = demos_for(task)
        rows = demos.add_to(data_mod.load(DEV)).rows
        plain = task.encode(data_mod.load(DEV)).rows
        shown = demos.scoring_task.encode(data_mod.Dataset("dev", rows)).rows
        for b in range(3):
            base = plain.input_ids[b][plain.attention_mask[b].bool()].tolist()
            ours = shown.input_ids[b][shown.attention_mask[b].bool()].tolist()
            before = len(task.encoder.before)
            assert ours[:before] == base[:before] and ours[-(len(base) - before):] == base[before:], kind
            assert len(ours) > len(base) + 10
            # [P] is read at the same place relative to the end of the row (masked: the mask token)
            assert len(ours) - int(shown.predict_pos[b, 0]) == len(base) - int(plain.predict_pos[b, 0])
        assert rows[0][DEMOS_FIELD].count("It was") == 2 and "[P]" not in rows[0][DEMOS_FIELD]


def test_facts_and_target_strings_write_their_answer(tiny):
    lm = tiny("llama")
    facts = PromptTask(lm, "The capital of [X] is [Y] .")
    demos = demos_for(facts, ICLConfig(demos_per_class=3), train="demo:capitals:train")
    text = demos.joined([demos.texts[j] for j in demos.picks(0)])
    assert len(demos.picks(0)) == 3 and text.count("The capital of") == 3
    assert demos.texts[0] == f"The capital of {demos.pool[0]['sub_label']} is {demos.pool[0]['obj_label']} ."
    r = icl(facts, "demo:capitals:train", "demo:capitals:dev", ICLConfig(demos_per_class=2))
    assert "p_at_1" in r.metrics["dev"]
    target = PromptTask(lm, "{sentence} Answer:", target_field="answer")
    rows = [{"sentence": "a great movie", "answer": "yes"}, {"sentence": "a bad film", "answer": "no"}]
    demos = demos_for(target, train=rows)
    assert demos.texts == ["a great movie Answer:yes", "a bad film Answer:no"]  # the target follows directly
    assert icl(target, rows, rows).metrics["dev"]["n_scored"] == 2


def test_separator_with_a_special_token_keeps_the_models_specials(tiny):
    task = PromptTask(tiny("bert"), TEMPLATE, LABELS)
    demos = demos_for(task, ICLConfig(separator=" [SEP] "))
    rows = demos.scoring_task.encode(demos.add_to(data_mod.load(DEV))).rows
    ids = rows.input_ids[0][rows.attention_mask[0].bool()].tolist()
    tok = task.lm.tokenizer
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id and ids.count(tok.sep_token_id) == 3
    assert demos_for(task, ICLConfig(separator="\\n")).separator == "\n"


def test_too_long_examples_drop_whole_demonstrations(tiny):
    task = PromptTask(tiny("llama"), TEMPLATE, LABELS)  # 128 positions
    long = " ".join(["a very good and really nice film"] * 12)  # about 85 tokens with the template
    train = [{"sentence": "a great movie", "label": 1}, {"sentence": "a bad film", "label": 0}] * 4
    demos = demos_for(task, ICLConfig(demos_per_class=4), train=train)
    rows = demos.add_to(data_mod.Dataset("d", [{"sentence": long, "label": 1}, {"sentence": "very bad", "label": 0}]))
    kept = rows.rows[0][DEMOS_FIELD].split("\n")
    assert 1 <= len(kept) < 8 and all(t in demos.texts for t in kept)  # whole demonstrations only
    assert len(rows.rows[1][DEMOS_FIELD].split("\n")) == 8
    encoded = demos.scoring_task.encode(rows).rows
    assert int(encoded.attention_mask[0].sum()) <= 128
    ids = encoded.input_ids[0][encoded.attention_mask[0].bool()].tolist()
    query = task.lm.tokenizer(long + " It was", add_special_tokens=False).input_ids
    assert ids[-len(query):] == query  # the example itself is never cut


def test_context_length_error_names_the_field(tiny):
    task = PromptTask(tiny("llama"), TEMPLATE, LABELS)
    with pytest.raises(UserError) as e:
        icl(task, TRAIN, DEV, ICLConfig(demos_per_class=8))
    message = str(e.value)
    assert message.startswith("ICLConfig.demos_per_class 8 needs about ") and "\n" not in message
    assert "the model reads 128; lower it" in message
    with pytest.raises(UserError, match="ICLConfig.demos_per_class is 3, but class '0' has 2 training example"):
        icl(task, SENTIMENT_ROWS, SENTIMENT_ROWS, ICLConfig(demos_per_class=3))
    with pytest.raises(UserError, match=r"ICLConfig.pool_size is 3, fewer than the 4"):
        icl(task, TRAIN, DEV, ICLConfig(demos_per_class=2, pool_size=3))
    with pytest.raises(UserError, match=r"\[T\] slots"):
        icl(PromptTask(task.lm, "{sentence} [T] [P]", LABELS), TRAIN, DEV)


def test_config_errors_name_the_field():
    with pytest.raises(UserError, match="ICLConfig.demos_per_class must be at least 1, got 0"):
        ICLConfig(demos_per_class=0)
    with pytest.raises(UserError, match="ICLConfig.mode is 'random'; choose one of: sampled, fixed"):
        ICLConfig(mode="random")
    with pytest.raises(UserError, match="ICLConfig.separator must be text"):
        ICLConfig(separator="")


def test_pool_is_capped_evenly_and_saved(tiny, tmp_path):
    task = PromptTask(tiny("gpt2"), TEMPLATE, LABELS)
    r = icl(task, TRAIN, DEV, ICLConfig(pool_size=10, seed=1), test=DEV, out=tmp_path / "icl")
    assert len(r.pool) == 10 and sorted(str(p["label"]) for p in r.pool) == ["0"] * 5 + ["1"] * 5
    assert set(r.pool[0]) == {"sentence", "label"}
    saved = json.loads((tmp_path / "icl" / "results.json").read_text())
    assert saved["pool"] == r.pool and saved["example"] == r.example
    loaded = load_result(tmp_path / "icl")
    assert type(loaded) is prompt_icl.ICLResult and loaded.pool == r.pool and loaded.config == r.config
    assert evaluate(task, DEV, prompt=loaded) == r.metrics["dev"] == r.metrics["test"]
    for mode in ("sampled", "fixed"):
        r = icl(task, TRAIN, DEV, ICLConfig(mode=mode, seed=2), out=tmp_path / mode)
        again = evaluate(task, DEV, prompt=load_result(tmp_path / mode))
        assert again == r.metrics["dev"]


def test_registered_method():
    m = methods()["icl"]
    assert m.config is ICLConfig and m.trains == "nothing" and m.template == "manual" and m.resumable is None
    assert set(m.space) <= set(ICLConfig.__dataclass_fields__) and m.command.name == "icl" and m.command.default
    assert m.result is prompt_icl.ICLResult and not m.needs_dev


def test_cli_icl_then_evaluate(cli, tiny_folder, tmp_path):
    model = tiny_folder("gpt2")
    help_ = cli("icl", "--help")
    assert help_.exit_code == 0 and "--demos-per-class" in help_.output and "--mode" in help_.output
    out = cli("icl", "--model", model, "--out", tmp_path / "icl", "--mode", "fixed", "--json")
    assert out.exit_code == 0, out.output
    row = json.loads(out.output.strip().splitlines()[-1])
    assert row["mode"] == "fixed" and row["demos_per_class"] == 1 and row["n_scored"] == 32
    scored = cli("evaluate", tmp_path / "icl", "--json")
    assert scored.exit_code == 0, scored.output
    assert json.loads(scored.output)["accuracy"] == row["accuracy_dev"]
    assert_user_error(cli("icl", "--model", model, "--demos-per-class", "8", "--out", tmp_path / "x"),
                      "--demos-per-class 8 needs about", "lower it")
    assert_user_error(cli("icl", "--model", model, "--demos-per-class", "0", "--out", tmp_path / "y"),
                      "--demos-per-class must be at least 1")


def test_in_a_comparison(tiny_folder, tmp_path):
    from prompt_compare import compare

    test = write_jsonl(tmp_path / "test.jsonl", SENTIMENT_ROWS)
    task = {"name": "sent", "template": TEMPLATE, "label_map": LABELS, "train": TRAIN, "dev": DEV, "test": str(test)}
    methods = ["manual", "icl", {"name": "icl-fixed", "method": "icl", "config": {"demos_per_class": 2, "mode": "fixed"}}]
    r = compare(task, methods, [1], out=tmp_path / "g", model=tiny_folder("llama"), defaults={"batch_size": 4})
    rows = {row["method"]: row for row in r.rows}
    assert set(rows) == {"manual", "icl", "icl-fixed"} and all(row["status"] == "done" for row in rows.values())
    assert rows["icl"]["trains"] == "nothing" and rows["icl"]["dev_metrics"]["n_scored"] == 32
    saved = load_result(tmp_path / "g" / rows["icl-fixed"]["artifact"])
    assert saved.config.mode == "fixed" and saved.config.demos_per_class == 2 and saved.config.batch_size == 4
