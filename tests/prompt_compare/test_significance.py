"""Issue 28: per-example test predictions with every cell (the shared evaluator's loop,
`evaluate(..., examples=True)`), and significance: a paired sign-flip test over the test examples
pooled across seeds (`prompt_compare.significance`), and the table's marks (not significantly worse
than the best; p against the manual template)."""

from __future__ import annotations

import pytest

from frozen_lm.errors import UserError
from prompt_compare import compare, significance
from prompt_compare.significance import annotate, sign_flip_p
from prompt_compare.table import aggregate, to_csv, to_markdown
from tests.prompt_compare.conftest import FAST


@pytest.fixture
def model(tiny_folder):
    return tiny_folder("llama")


def record(method: str, seed: int, correct: str, task: str = "t", preset: str = "x") -> dict:
    """A finished record with these test outcomes (labels alternate 0/1)."""
    labels = [i % 2 for i in range(len(correct))]
    predicted = [lab if c == "1" else 1 - lab for lab, c in zip(labels, correct)]
    return {"id": f"{method}-{seed}-{task}", "task": task, "model": "m", "method": method, "preset": preset,
            "seed": seed, "status": "done", "metric": "accuracy", "test": correct.count("1") / len(correct),
            "dev": 0.5, "test_examples": {"correct": correct, "predicted": predicted, "label": labels}}


def test_known_answers():
    right, wrong = "1" * 40, "0" * 40
    mixed = "1101001110" * 4
    same = significance([record("a", 1, mixed), record("a", 2, mixed)], [record("b", 1, mixed), record("b", 2, mixed)])
    assert same.p == 1.0 and same.diff == 0 and same.n == 80 and same.seeds == [1, 2]
    always = significance([record("a", 1, right)], [record("b", 1, wrong)])
    assert always.p == pytest.approx(2 / 2**40) and always.p < 1e-10 and always.diff == 1.0 and always.a_only == 40
    assert significance([record("b", 1, wrong)], [record("a", 1, right)]).diff == -1.0
    assert sign_flip_p(8, 2) == pytest.approx(2 * (1 + 10 + 45) / 1024)  # exact binomial tail
    assert sign_flip_p(0, 0) == 1.0 and sign_flip_p(5, 5) == 1.0
    # pooled across seeds: 6 vs 1 discordant pairs over two seeds
    a = [record("a", 1, "1110" + "1" * 6), record("a", 2, "11110" + "0" * 5)]
    b = [record("b", 1, "0000" + "1" * 6), record("b", 2, "00001" + "0" * 5)]
    pooled = significance(a, b)
    assert (pooled.a_only, pooled.b_only, pooled.n) == (7, 1, 20) and pooled.p == pytest.approx(sign_flip_p(7, 1))


def test_names_in_a_grids_records_and_mistakes():
    records = [record("a", s, "1" * 30, task) for s in (1, 2) for task in ("t", "u")]
    records += [record("manual", s, "0" * 30, task, "manual") for s in (1, 2) for task in ("t", "u")]
    assert significance("a", "manual", records, task="t").p < 1e-10
    with pytest.raises(UserError, match=r"'a' ran on several tasks \(t, u\); give task="):
        significance("a", "manual", records)
    with pytest.raises(UserError, match="no method called 'nope' in the grid"):
        significance("nope", "manual", records, task="t")
    with pytest.raises(UserError, match="give the grid"):
        significance("a", "manual")
    with pytest.raises(UserError, match="scored different test examples"):
        significance([record("a", 1, "11")], [record("b", 1, "111")])
    with pytest.raises(UserError, match="share no finished"):
        significance([record("a", 1, "11")], [record("b", 2, "11")])


def test_the_tables_marks():
    """✓ on each method not significantly worse than the best; p against the manual template."""
    records = [record("manual", 1, "0" * 30 + "1" * 10, preset="manual"), record("best", 1, "1" * 40),
               record("close", 1, "1" * 38 + "00"), record("far", 1, "1" * 10 + "0" * 30)]
    rows = annotate(aggregate(records, [("t", "m", name) for name in ("manual", "best", "close", "far")]), records)
    by = {row["method"]: row for row in rows}
    assert by["best"]["best"] and by["best"]["not_worse"] and by["best"]["p_vs_best"] is None
    assert by["close"]["not_worse"] and by["close"]["p_vs_best"] == pytest.approx(sign_flip_p(0, 2)) == 0.5
    assert not by["far"]["not_worse"] and by["far"]["p_vs_best"] < 0.05
    assert by["manual"]["p_vs_manual"] is None and by["best"]["p_vs_manual"] == pytest.approx(sign_flip_p(30, 0))
    table = to_markdown(rows)
    assert "| t | close | 95.0 | ✓ p=0.5 | p<0.001 |" in table and "| t | best | 100.0 | best | p<0.001 |" in table
    assert "| t | far | 25.0 | p<0.001 | p=1 |" in table and "sign-flip permutation test" in table
    assert to_csv(rows).splitlines()[0].split(",")[-6:-3] == ["p_vs_best", "not_worse", "p_vs_manual"]


def test_every_cell_keeps_its_test_examples(tmp_path, model, words_task):
    r = compare(words_task, ["manual", "autoprompt", "prompt"], [1, 2], out=tmp_path / "g", model=model, defaults=FAST)
    for row in r.rows:
        ex = row["test_examples"]
        n = row["test_metrics"]["n_scored"]
        assert len(ex["correct"]) == len(ex["predicted"]) == len(ex["label"]) == n == 32
        assert ex["correct"].count("1") / n == row["test"] and "examples" not in row["test_metrics"]
        assert ex["label"] == [1] * 16 + [0] * 16  # the split's order
        assert [p == lab for p, lab in zip(ex["predicted"], ex["label"])] == [c == "1" for c in ex["correct"]]
        for d in row.get("derived", []):
            assert len(d["test_examples"]["correct"]) == 32 and d["test_examples"]["correct"].count("1") / 32 == d["test"]
    same = significance("manual", "manual", r)
    assert same.p == 1.0 and same.n == 64
    assert 0 <= significance("prompt (nearest tokens)", "manual", tmp_path / "g").p <= 1
    table = (tmp_path / "g" / "table.md").read_text()
    assert "| vs best | vs manual |" in table


def test_evaluate_examples_match_its_scores(tiny):
    from frozen_lm import PromptTask
    from frozen_lm.evaluate import evaluate

    task = PromptTask(tiny("llama"), "{sentence} It was [P] .", {"0": "terrible", "1": "great"})
    plain = evaluate(task, "demo:sentiment:dev", batch_size=5)
    full = evaluate(task, "demo:sentiment:dev", batch_size=5, examples=True)
    ex = full.pop("examples")
    assert full == plain and sum(ex["correct"]) / len(ex["correct"]) == plain["accuracy"]
    facts = PromptTask(tiny("bert"), "The capital of {sub_label} is [P] .", None)
    out = evaluate(facts, "demo:capitals", examples=True)
    assert len(out["examples"]["predicted"]) == out["n_scored"] and out["examples"]["label"][0] is not None
