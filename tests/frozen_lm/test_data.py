"""Data sources: JSONL/JSON, TSV and CSV with header, demo tasks, hf: errors, --text-fields; errors name
the file and line."""

from __future__ import annotations

import json
import sys
import types

import pytest

from frozen_lm import data
from frozen_lm.errors import UserError
from tests.conftest import assert_user_error, write_jsonl


def test_jsonl_rows_and_lines(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"sentence": "a", "label": 0}\n\n{"sentence": "b", "label": 1}\n')
    ds = data.load(str(path))
    assert ds.rows == [{"sentence": "a", "label": 0}, {"sentence": "b", "label": 1}]
    assert ds.lines == [1, 3] and ds.where(1) == f"{path}:3"
    assert ds.columns() == ["sentence", "label"] and len(ds) == 2


def test_json_list(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps([{"sentence": "a", "label": 0}, {"sentence": "b", "label": 1}]))
    assert [r["sentence"] for r in data.load(str(path)).rows] == ["a", "b"]
    path.write_text(json.dumps([{"sentence": "a"}, 3]))
    with pytest.raises(UserError, match="list of objects"):
        data.load(str(path))


def test_tsv_with_header(tmp_path):
    path = tmp_path / "d.tsv"
    path.write_text('sentence\tlabel\nit was "great"\t1\n\nbad, really\t0\n')
    ds = data.load(str(path))
    assert ds.rows == [{"sentence": 'it was "great"', "label": "1"}, {"sentence": "bad, really", "label": "0"}]
    assert ds.lines == [2, 4]


def test_csv_with_quotes(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('sentence,label\n"bad, really",0\nfine,1\n')
    assert data.load(str(path)).rows == [{"sentence": "bad, really", "label": "0"}, {"sentence": "fine", "label": "1"}]


@pytest.mark.parametrize("name, text, fragment", [
    ("d.jsonl", '{"sentence": "a", "label": 0}\n{"sentence": "b" "label": 1}\n', "d.jsonl:2: not valid JSON"),
    ("d.jsonl", '{"sentence": "a", "label": 0}\n[1, 2]\n', "d.jsonl:2: each line must be a JSON object"),
    ("d.tsv", "sentence\tlabel\na\t1\nb\t0\textra\n", "d.tsv:3: 3 columns, but the header has 2"),
    ("d.csv", "sentence,label\na,1\nb\n", "d.csv:3: 1 columns, but the header has 2"),
    ("d.csv", "", "d.csv: empty file"),
    ("d.jsonl", "\n\n", "has no rows"),
    ("d.txt", "hello\n", "unknown format '.txt'"),
])
def test_bad_files_name_file_and_line(tmp_path, name, text, fragment):
    (tmp_path / name).write_text(text)
    with pytest.raises(UserError) as e:
        data.load(str(tmp_path / name))
    assert fragment in str(e.value)


def test_missing_file():
    with pytest.raises(UserError, match="does not exist"):
        data.load("/nonexistent/d.jsonl")


def test_demo_tasks_and_splits():
    train, dev, every = data.load("demo:sentiment:train"), data.load("demo:sentiment:dev"), data.load("demo:sentiment")
    assert (len(train), len(dev), len(every)) == (64, 32, 96)
    assert not {r["sentence"] for r in train.rows} & {r["sentence"] for r in dev.rows}
    assert {r["label"] for r in dev.rows} == {0, 1}
    caps = data.load("demo:capitals:dev")
    assert {"sub_label", "obj_label"} <= set(caps.columns())
    assert dev.where(0).startswith("demo:sentiment:dev:")


@pytest.mark.parametrize("source, fragment", [("demo:nope", "unknown demo task"), ("demo:sentiment:test", "unknown split")])
def test_demo_errors(source, fragment):
    with pytest.raises(UserError, match=fragment):
        data.load(source)


def test_hf_without_datasets_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets -> ImportError
    with pytest.raises(UserError, match="pip install datasets"):
        data.load("hf:glue/sst2:validation")


def test_hf_unreachable_hub(monkeypatch):
    calls = []

    def load_dataset(name, config, split):
        calls.append((name, config, split))
        raise ConnectionError("Couldn't reach 'glue' on the Hub")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    with pytest.raises(UserError, match=r"hf:glue/sst2:validation: could not load .*ConnectionError"):
        data.load("hf:glue/sst2:validation")
    with pytest.raises(UserError, match="write hf:NAME"):
        data.load("hf:glue")
    with pytest.raises(UserError):
        data.load("hf:someone/imdb:test")
    assert calls == [("glue", "sst2", "validation"), ("someone/imdb", None, "test")]


def test_hf_rows(monkeypatch):
    fake = types.SimpleNamespace(load_dataset=lambda name, config, split: [{"sentence": "x", "label": 1}])
    monkeypatch.setitem(sys.modules, "datasets", fake)
    ds = data.load("hf:someone/data:train")
    assert ds.rows == [{"sentence": "x", "label": 1}] and ds.where(0) == "hf:someone/data:train:1"


def test_cli_hf_error_is_one_line(cli, tiny_folder, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)
    result = cli("evaluate", "--model", tiny_folder("llama"), "--template", "{sentence} It was [P] .",
                 "--label-map", "0=terrible,1=great", "--data", "hf:glue/sst2:validation")
    assert_user_error(result, "pip install datasets")


def test_parse_field_map():
    fields = ("sentence1", "sentence2")
    assert data.parse_field_map(None, fields) == {}
    assert data.parse_field_map("sentence1=q1, sentence2=q2", fields) == {"sentence1": "q1", "sentence2": "q2"}
    assert data.parse_field_map("q1,q2", fields) == {"sentence1": "q1", "sentence2": "q2"}
    assert data.parse_field_map("sentence2=b,a", fields) == {"sentence2": "b", "sentence1": "a"}
    with pytest.raises(UserError, match="'text' is not a template field"):
        data.parse_field_map("text=body", fields)
    with pytest.raises(UserError, match="names 3 columns"):
        data.parse_field_map("a,b,c", fields)


def test_check_rows_names_file_and_line(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"sentence": "a", "label": 0}, {"label": 1}, {"sentence": " ", "label": 0}])
    ds = data.load(str(path))
    with pytest.raises(UserError, match=rf"{path}:2: missing field 'sentence'"):
        data.check_rows(ds, ["sentence", "label"])
    ds.rows[1]["sentence"] = "b"
    with pytest.raises(UserError, match=rf"{path}:3: field 'sentence' is empty"):
        data.check_rows(ds, ["sentence"])


def test_sample_is_seeded():
    ds = data.load("demo:sentiment")
    a, b = ds.sample(10, seed=1), ds.sample(10, seed=1)
    assert a.rows == b.rows and len(a) == 10 and a.lines == sorted(a.lines)
    assert ds.sample(None, 0) is ds and ds.sample(1000, 0) is ds


# ------------------------------------------------------------------ through the command line
def _evaluate(cli, folder, path, *extra):
    return cli("evaluate", "--model", folder, "--template", "{sentence} It was [P] .", "--label-map",
               "0=terrible,1=great", "--data", path, *extra)


@pytest.mark.parametrize("name, text, fragment", [
    ("bad.jsonl", '{"sentence": "a", "label": 0}\n{"sentence": "b", label: 1}\n', "bad.jsonl:2"),
    ("bad.tsv", "sentence\tlabel\na\t0\nb\t1\t2\n", "bad.tsv:3"),
    ("missing.jsonl", '{"sentence": "a", "label": 0}\n{"text": "b", "label": 1}\n', "missing.jsonl:2: missing field 'sentence'"),
    ("empty.csv", "sentence,label\na,0\n,1\n", "empty.csv:3: field 'sentence' is empty"),
])
def test_cli_bad_rows(cli, tiny_folder, tmp_path, name, text, fragment):
    (tmp_path / name).write_text(text)
    assert_user_error(_evaluate(cli, tiny_folder("llama"), tmp_path / name), fragment)


@pytest.mark.parametrize("name, text", [
    ("d.tsv", "sentence\tlabel\na great movie\t1\na terrible film\t0\n"),
    ("d.csv", 'sentence,label\n"a great, fine movie",1\na terrible film,0\n'),
])
def test_cli_tables(cli, tiny_folder, tmp_path, name, text):
    (tmp_path / name).write_text(text)
    result = _evaluate(cli, tiny_folder("bert"), tmp_path / name, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["n_scored"] == 2


def test_cli_text_fields_and_label_field(cli, tiny_folder, tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "a great movie", "y": "pos"}, {"text": "awful", "y": "neg"}])
    args = ["evaluate", "--model", tiny_folder("gpt2"), "--template", "{sentence} It was [P] .",
            "--label-map", "neg=terrible,pos=great", "--data", path, "--json"]
    assert_user_error(cli(*args), "{sentence}", "--text-fields")
    assert_user_error(cli(*args, "--text-fields", "sentence=text"), "missing field 'label'")
    for mapping in ("sentence=text", "text"):
        result = cli(*args, "--text-fields", mapping, "--label-field", "y")
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["n_scored"] == 2
