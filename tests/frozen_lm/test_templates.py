"""The template language: {field}, [T], [P], LAMA [X]/[Y]; clear one-line errors for bad templates."""

from __future__ import annotations

import logging

import pytest

from frozen_lm.errors import UserError
from frozen_lm.templates import Segment, Template, check_fields, check_for_model
from tests.conftest import SENTIMENT_ROWS, assert_user_error, write_jsonl


def kinds(t: Template) -> list[str]:
    return [s.kind for s in t.segments]


def test_parse_fields_text_and_predict():
    t = Template.parse("{sentence} It was [P] .")
    assert kinds(t) == ["field", "text", "predict", "text"]
    assert t.fields == ("sentence",)
    assert t.n_triggers == 0
    assert t.predict_space is True
    assert t.segments[1] == Segment("text", " It was")
    assert [s.value for s in t.after_predict()] == [" ."]


def test_parse_triggers_and_two_fields():
    t = Template.parse("{sentence1} [T] [T]{sentence2} [T] [P]")
    assert kinds(t) == ["field", "trigger", "trigger", "field", "trigger", "predict"]
    assert t.fields == ("sentence1", "sentence2")
    assert t.n_triggers == 3
    assert t.segments[1].space and t.segments[2].space and not t.segments[3].space
    assert t.after_predict() == ()


def test_repeated_field_listed_once():
    assert Template.parse("{a} and {b} and {a} [P]").fields == ("a", "b")


@pytest.mark.parametrize("text, space", [("{sentence} It was [P]", True), ("{sentence} It was[P]", False),
                                         ("{sentence} [T] [P]", True), ("{sentence} [T][P]", False)])
def test_predict_space(text, space):
    assert Template.parse(text).predict_space is space


def test_lama_template_is_converted():
    t = Template.parse("[X] is the capital of [Y] .")
    assert t.fields == ("sub_label",)
    assert kinds(t) == ["field", "text", "predict", "text"]
    assert t.predict_space
    assert Template.parse("The capital of [X] is [Y] .").segments[1] == Segment("field", "sub_label", space=True)


def test_other_brackets_are_text():
    t = Template.parse("[CLS] {sentence} [SEP] [P]")
    assert kinds(t) == ["text", "field", "text", "predict"]
    assert t.segments[0].value == "[CLS]"


def test_with_triggers():
    t = Template.parse("{sentence} [T] [T] [P] .")
    assert t.with_triggers(["very", "much"]) == "{sentence} very much [P] ."


@pytest.mark.parametrize("text, fragment", [
    ("{sentence} It was great .", "has no [P]"),
    ("{sentence} [P] or [P]", "2 [P] slots"),
    ("", "has no [P]"),
    ("{sen tence} [P]", "is not a field name"),
    ("{} [P]", "is not a field name"),
    ("{1st} [P]", "is not a field name"),
    ("[X] is [Y] or [P]", "mixes LAMA"),
])
def test_malformed_templates(text, fragment):
    with pytest.raises(UserError, match=None) as e:
        Template.parse(text)
    assert fragment in str(e.value)
    assert "\n" not in str(e.value)


def test_causal_refuses_slots_after_predict():
    with pytest.raises(UserError, match=r"\[P\] must be the last slot.*\[T\] follows"):
        check_for_model(Template.parse("{sentence} [P] [T] ."), is_masked=False)
    with pytest.raises(UserError, match=r"\{sentence\} follows"):
        check_for_model(Template.parse("[P] : {sentence}"), is_masked=False)
    check_for_model(Template.parse("{sentence} [P] [T] ."), is_masked=True)  # fine for a masked LM


def test_causal_text_after_predict_is_noted(caplog):
    with caplog.at_level(logging.INFO, logger="frozen_lm.templates"):
        check_for_model(Template.parse("{sentence} It was [P] ."), is_masked=False)
    assert "ignored" in caplog.text


def test_check_fields_names_the_missing_column():
    t = Template.parse("{sentence} [P]")
    check_fields(t, ["sentence", "label"], "x.jsonl")
    with pytest.raises(UserError, match=r"\{sentence\} is not in x.jsonl.*PromptTask.text_fields"):
        check_fields(t, ["text", "label"], "x.jsonl")
    with pytest.raises(UserError, match="mapped to column 'body'"):
        check_fields(t, ["text"], "x.jsonl", column=lambda f: "body")


# ------------------------------------------------------------------ through the command line
@pytest.fixture
def sentiment_file(tmp_path):
    return write_jsonl(tmp_path / "s.jsonl", SENTIMENT_ROWS)


@pytest.mark.parametrize("template, fragments", [
    ("{sentence} It was great .", ["no [P]"]),
    ("{sentence} [P] [P]", ["2 [P] slots"]),
    ("{sentense} It was [P]", ["{sentense}", "--text-fields"]),
    ("{sentence} [P] [T] .", ["[P] must be the last slot", "[T] follows"]),
    ("{sentence} It was [P]", ["class '1' has an empty label word"]),
])
def test_cli_template_errors(cli, tiny_folder, sentiment_file, template, fragments):
    label_map = "0=terrible,1= " if "empty" in fragments[0] else "0=terrible,1=great"
    result = cli("evaluate", "--model", tiny_folder("llama"), "--template", template, "--label-map", label_map,
                 "--data", sentiment_file)
    assert_user_error(result, *fragments)


def test_cli_masked_lm_accepts_slot_after_predict(cli, tiny_folder, sentiment_file):
    result = cli("evaluate", "--model", tiny_folder("bert"), "--template", "[P] : {sentence}",
                 "--label-map", "0=terrible,1=great", "--data", sentiment_file, "--json")
    assert result.exit_code == 0, result.output
