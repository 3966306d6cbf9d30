"""`--config FILE` (YAML, TOML, JSON; flags override it; a run's own config.json repeats the run to the
same tensors) and `--report-to` on the command line."""

from __future__ import annotations

import importlib.util
import json

import pytest

from frozen_lm.artifact import CARD, CONFIG, WEIGHTS
from tests.conftest import SENTIMENT_ROWS, assert_user_error, write_jsonl

FAST = ("--no-progress",)


@pytest.fixture
def data(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", SENTIMENT_ROWS * 3)
    dev = write_jsonl(tmp_path / "dev.jsonl", SENTIMENT_ROWS[::-1] * 2)
    return ("--template", "{sentence} [T] [T] [P]", "--label-map", "0=terrible,1=great", "--train", train, "--dev", dev)


def _saved(folder):
    meta = json.loads((folder / CONFIG).read_text())
    return {k: meta[k] for k in ("method", "config", "seed", "task", "model", "data")}


def _ok(result):
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def test_a_runs_config_json_repeats_the_search(cli, tiny_folder, tmp_path, data):
    x, y, z = tmp_path / "x", tmp_path / "y", tmp_path / "z"
    _ok(cli("search", "--method", "gcg", "--model", tiny_folder("llama"), *data, "--iters", "2", "--search-width", "4",
            "--topk", "16", "--seed", "5", *FAST, "--out", x))
    _ok(cli("search", "--config", x / CONFIG, "--out", y, *FAST))
    assert (y / WEIGHTS).read_bytes() == (x / WEIGHTS).read_bytes()
    assert _saved(y) == _saved(x)
    _ok(cli("search", "--config", x / CONFIG, "--iters", "3", "--out", z, *FAST))  # a flag changes just that
    assert _saved(z)["config"] == {**_saved(x)["config"], "iters": 3}


def test_a_runs_config_json_repeats_the_tuning(cli, tiny_folder, tmp_path, data):
    x, y = tmp_path / "x", tmp_path / "y"
    _ok(cli("tune", "--model", tiny_folder("llama"), *data, "--steps", "3", "--lr", "0.1", "--batch-size", "4",
            "--seed", "4", *FAST, "--out", x))
    _ok(cli("tune", "--config", x / CONFIG, "--out", y, *FAST))
    assert (y / WEIGHTS).read_bytes() == (x / WEIGHTS).read_bytes()
    assert _saved(y) == _saved(x) and _saved(x)["config"]["lr"] == 0.1
    assert (y / CARD).read_text() == (x / CARD).read_text().replace('"x"', '"y"').replace("evaluate x ", "evaluate y ")


@pytest.mark.parametrize("suffix", [".yaml", ".toml", ".json"])
def test_option_files_in_three_formats(cli, tiny_folder, tmp_path, data, suffix):
    values = {"method": "gcg", "model": tiny_folder("llama"), "template": "{sentence} [T] [T] [P]", "iters": 1, "search-width": 3, "topk": 16,
              "label_map": {"0": "terrible", "1": "great"}, "seed": 2,
              "probe_sampling": {"draft_model": tiny_folder("llama"), "probe_ratio": 2}}
    path = tmp_path / f"options{suffix}"
    if suffix == ".yaml":
        import yaml

        path.write_text(yaml.safe_dump(values))
    elif suffix == ".toml":
        folder = json.dumps(tiny_folder("llama"))
        path.write_text(f'method = "gcg"\nmodel = {folder}\ntemplate = "{{sentence}} [T] [T] [P]"\niters = 1\nsearch-width = 3\ntopk = 16\nseed = 2\n'
                        'label_map = {0 = "terrible", 1 = "great"}\n'
                        f'[probe_sampling]\ndraft_model = {folder}\nprobe_ratio = 2\n')
    else:
        path.write_text(json.dumps(values))
    out = tmp_path / "run"
    _ok(cli("search", "--config", path, *data[4:], "--iters", "2", "--out", out, *FAST))  # the flag wins
    saved = _saved(out)
    assert saved["method"] == "gcg" and saved["seed"] == 2
    assert {k: saved["config"][k] for k in ("iters", "search_width", "topk")} == {"iters": 2, "search_width": 3, "topk": 16}
    assert saved["config"]["probe_sampling"]["probe_ratio"] == 2
    assert saved["task"]["label_map"] == {"0": ["terrible"], "1": ["great"]}


def test_unknown_keys_and_wrong_files(cli, tiny_folder, tmp_path, data):
    path = tmp_path / "x.yaml"
    path.write_text("method: gcg\nstpes: 3\n")
    out = assert_user_error(cli("search", "--config", path), f"--config {path}: 'stpes' is not an option of "
                            "`autoprompt search --method gcg`; valid: ")
    assert "search_width" in out and "probe_sampling" in out and "json" in out and "as_json" not in out
    path.write_text("- a list\n")
    assert_user_error(cli("tune", "--config", path), "must be a mapping of option names to values")
    path.write_text("steps: [1\n")
    assert_user_error(cli("tune", "--config", path), f"--config {path} is not valid YAML")
    (tmp_path / "x.ini").write_text("")
    assert_user_error(cli("tune", "--config", tmp_path / "x.ini"), "use a .yaml, .yml, .toml or .json file")

    run = tmp_path / "run"
    _ok(cli("tune", "--model", tiny_folder("llama"), *data, "--steps", "1", *FAST, "--out", run))
    assert_user_error(cli("search", "--config", run / CONFIG), "holds a 'prompt' run, not a 'autoprompt' run; "
                      "repeat it with `autoprompt tune`")
    assert_user_error(cli("tune", "--method", "prefix", "--config", run / CONFIG), "holds a 'prompt' run, not a "
                      "'prefix' run; leave out --method")
    assert_user_error(cli("evaluate", "--config", run / CONFIG), "is a run's config.json: repeat the run with "
                      f"`autoprompt tune --config {run / CONFIG}`, or score it with `autoprompt evaluate {run}`")


def test_a_run_on_data_in_memory_asks_for_the_split(cli, tiny, tiny_folder, tmp_path):
    from frozen_lm import FrozenLM, PromptTask, run
    from softprompt import PromptTuningConfig

    lm = FrozenLM.load(tiny_folder("llama"))
    task = PromptTask(lm, "{sentence} [T] [P]", {"0": "terrible", "1": "great"})
    run("prompt", task, SENTIMENT_ROWS, SENTIMENT_ROWS, PromptTuningConfig(steps=1), out=tmp_path / "x", progress=False)
    assert_user_error(cli("tune", "--config", tmp_path / "x" / CONFIG, "--out", tmp_path / "y"),
                      "the run's train split was in memory (<list of 4 rows>); give --train")
    train = write_jsonl(tmp_path / "t.jsonl", SENTIMENT_ROWS)
    _ok(cli("tune", "--config", tmp_path / "x" / CONFIG, "--train", train, "--dev", train, "--out", tmp_path / "y", *FAST))
    assert (tmp_path / "y" / WEIGHTS).read_bytes() == (tmp_path / "x" / WEIGHTS).read_bytes()


def test_evaluate_and_label_search_take_option_files(cli, tiny_folder, tmp_path):
    path = tmp_path / "eval.json"
    path.write_text(json.dumps({"model": tiny_folder("bert"), "template": "{sentence} It was [P] .",
                                "label-map": "0=terrible,1=great", "data": "demo:sentiment:dev", "json": True}))
    result = _ok(cli("evaluate", "--config", path))
    assert json.loads(result.output)["template"] == "{sentence} It was [P] ."
    path.write_text(json.dumps({"model": tiny_folder("bert"), "k": 2, "json": True}))
    assert json.loads(_ok(cli("label-search", "--config", path)).output)


# ---------------------------------------------------------------- --report-to
def test_report_to_on_the_command_line(cli, tiny_folder, tmp_path, data, monkeypatch):
    pytest.importorskip("tensorboard", reason="--report-to tensorboard needs the optional tensorboard package")
    out = tmp_path / "run"
    _ok(cli("tune", "--model", tiny_folder("llama"), *data, "--steps", "2", *FAST, "--out", out,
            "--report-to", "tensorboard"))
    assert len(list((out / "tensorboard").glob("events.out.tfevents.*"))) == 1
    assert_user_error(cli("tune", "--report-to", "tensorboard,mlfow", "--out", tmp_path / "no"),
                      "--report-to 'mlfow' is not a tracker; choose from: tensorboard, mlflow, wandb")

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "mlflow" else real(name))
    assert_user_error(cli("search", "--report-to", "mlflow", "--out", tmp_path / "no"),
                      "--report-to 'mlflow' needs the mlflow package: pip install 'autoprompt-suite[mlflow]'")
    assert not (tmp_path / "no").exists()
