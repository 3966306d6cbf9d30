"""Issue 27, the second sweep of bad input: nothing is lost (--overwrite replaces a run only once the new
run saves, label-search never overwrites a file or its own data, a resume that would not continue the
saved run is refused before anything is written), no tracebacks for user mistakes, and messages
that say what is wrong."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time

import pytest

from frozen_lm.artifact import CARD, CONFIG, RESULTS, WEIGHTS
from tests.autoprompt_cli.conftest import SEARCH, files
from tests.conftest import SENTIMENT_ROWS, assert_user_error, write_jsonl

OWN_DATA = ("--template", "{sentence} [T] [P]", "--label-map", "0=terrible,1=great", "--dev", "demo:sentiment:dev")


# ---------------------------------------------------------------- data loss
def test_overwrite_keeps_the_old_run_when_the_new_one_fails_its_checks(cli, tiny_folder, run, tmp_path):
    before = files(run)
    result = cli(*SEARCH, "--model", tiny_folder("llama"), "--out", run, "--overwrite", *OWN_DATA,
                 "--train", tmp_path / "no.jsonl")
    assert_user_error(result, "no.jsonl does not exist")
    assert files(run) == before
    result = cli(*SEARCH, "--model", tiny_folder("llama"), "--out", run, "--overwrite", "--iters", "0")
    assert_user_error(result, "--iters must be at least 1")
    assert files(run) == before


def test_overwrite_replaces_the_run_and_keeps_the_usersfiles(cli, tiny_folder, run):
    (run / "notes.txt").write_text("my notes")
    (run / "d90.png").write_bytes(b"an old run's plot")  # a file of the old run the new one does not write
    old_config = (run / CONFIG).read_text()
    result = cli(*SEARCH, "--model", tiny_folder("llama"), "--out", run, "--overwrite", "--seed", "3")
    assert result.exit_code == 0, result.output
    assert (run / "notes.txt").read_text() == "my notes"
    assert not (run / "d90.png").exists()
    assert (run / CONFIG).read_text() != old_config and json.loads((run / CONFIG).read_text())["seed"] == 3
    assert sorted(p.name for p in run.iterdir()) == sorted([CONFIG, RESULTS, WEIGHTS, CARD, "notes.txt"])


def test_label_search_never_overwrites_a_file(cli, tiny_folder, tmp_path):
    train = write_jsonl(tmp_path / "mytrain.jsonl", SENTIMENT_ROWS * 3)
    data = train.read_bytes()
    args = ("label-search", "--model", tiny_folder("llama"), "--template", "{sentence} It was [P] .", "--k", "2")
    assert_user_error(cli(*args, "--train", train, "--out", train), "--out", "is the training data")
    assert_user_error(cli(*args, "--train", train, "--out", train, "--overwrite"), "is the training data")
    assert train.read_bytes() == data
    words = tmp_path / "words.json"
    words.write_text("{}")
    assert_user_error(cli(*args, "--train", train, "--out", words), "already exists", "--overwrite")
    assert words.read_text() == "{}"
    assert cli(*args, "--train", train, "--out", words, "--overwrite").exit_code == 0
    assert set(json.loads(words.read_text())) == {"0", "1"}


def test_resume_with_other_data_or_fewer_iterations_writes_nothing(cli, tiny_folder, tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", SENTIMENT_ROWS * 4)
    other = write_jsonl(tmp_path / "other.jsonl", SENTIMENT_ROWS[::-1] * 4)
    out = tmp_path / "r"
    args = ("--model", tiny_folder("llama"), "--template", "{sentence} [T] [P]", "--label-map", "0=terrible,1=great",
            "--dev", train, "--no-progress")
    assert cli("search", "--iters", "2", "--num-cand", "2", "--train", train, "--out", out, *args).exit_code == 0
    before = files(out)
    assert_user_error(cli("search", "--resume", out, "--train", other), "resume", "the train data")
    assert_user_error(cli("search", "--resume", out, "--iters", "1"), "already ran 2 iterations", "--iters 1")
    assert files(out) == before


def test_a_long_tune_keeps_its_best_so_far_on_disk(tiny, tmp_path):
    import softprompt
    from frozen_lm import PromptTask

    task = PromptTask(tiny("llama"), "{sentence} It was [P] .", {"0": "terrible", "1": "great"})
    seen = []

    def watch(event):
        if event.step == 6:
            seen.append(json.loads((tmp_path / "t" / RESULTS).read_text()))
            return True

    softprompt.tune(task, "demo:sentiment:train", "demo:sentiment:dev",
                    softprompt.PromptTuningConfig(num_virtual_tokens=2, steps=100_000, eval_every=2, lr=0.3),
                    out=tmp_path / "t", callback=watch, progress=False)
    assert seen and seen[0]["status"] == "running" and seen[0]["best_step"] >= 2


# ---------------------------------------------------------------- no tracebacks
@pytest.mark.parametrize("make", ["file", "empty"])
def test_a_folder_given_as_a_data_file(cli, tiny_folder, tmp_path, make):
    folder = tmp_path / "d.jsonl"
    folder.mkdir()
    if make == "file":
        write_jsonl(folder / "x.jsonl", SENTIMENT_ROWS)
    assert_user_error(cli("evaluate", "--model", tiny_folder("llama"), "--template", "{sentence} It was [P] .",
                          "--label-map", "0=bad,1=good", "--data", folder), "is a folder")
    assert_user_error(cli(*SEARCH, "--model", tiny_folder("llama"), *OWN_DATA, "--train", folder), "is a folder")


@pytest.mark.parametrize("label_map, fragment", [
    ('{"1": 5, "0": "bad"}', "maps to 5, not a word"),
    ('{"1": null, "0": "bad"}', "maps to null, not a word"),
    ('["bad", "good"]', "is a list; name each class too"),
])
def test_label_maps_that_are_not_words(cli, tiny_folder, label_map, fragment):
    assert_user_error(cli("evaluate", "--model", tiny_folder("llama"), "--template", "{sentence} It was [P] .",
                          "--label-map", label_map, "--data", "demo:sentiment:dev"), fragment)


def test_non_utf8_label_map_file(cli, tiny_folder, tmp_path):
    path = tmp_path / "labels.json"
    path.write_bytes(b'{"0": "mauvais", "1": "tr\xe8s bien"}')
    assert_user_error(cli("evaluate", "--model", tiny_folder("llama"), "--template", "{sentence} It was [P] .",
                          "--label-map", path, "--data", "demo:sentiment:dev"), "labels.json:1: not UTF-8")


def test_ctrl_c_while_the_libraries_import(tmp_path):
    """SIGINT at several moments of start-up: exit code 130 and one line, never a traceback."""
    for delay in (0.2, 0.6, 1.2):
        proc = subprocess.Popen([sys.executable, "-m", "autoprompt_cli", "search", "--model", str(tmp_path / "none")],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
        if proc.returncode == 2:  # it got to the (missing) model before the signal: nothing to test at this delay
            continue
        if proc.returncode == -signal.SIGINT and "Traceback" not in err and len(err.strip().splitlines()) <= 1:
            continue  # the interpreter's own exit on SIGINT (before its handler, or while shutting down): no traceback
        assert proc.returncode == 130, (delay, proc.returncode, err)
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, (delay, err)


# ---------------------------------------------------------------- messages that say what is wrong
def test_from_template_needs_no_template(cli, tiny_folder, tmp_path):
    result = cli("search", "--model", tiny_folder("llama"), "--train", "demo:capitals:train", "--dev",
                 "demo:capitals:dev", "--label-field", "obj_label", "--from-template", "The capital of {sub_label} is [P] .",
                 "--iters", "1", "--num-cand", "2", "--no-progress", "--out", tmp_path / "r")
    assert result.exit_code == 0, result.output


def test_csv_with_a_byte_order_mark(cli, tiny_folder, tmp_path):
    path = tmp_path / "bom.csv"
    path.write_text("\ufeffsentence,label\na great film,1\nan awful film,0\n", encoding="utf-8")
    result = cli("evaluate", "--model", tiny_folder("llama"), "--template", "{sentence} It was [P] .", "--label-map",
                 "0=terrible,1=great", "--data", path, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.strip().splitlines()[-1])["n_scored"] == 2


def test_facts_the_tokenizer_cannot_write_are_skipped_and_counted(tiny):
    from frozen_lm import PromptTask, evaluate

    task = PromptTask(tiny("llama"), "The capital of {sub_label} is [P] .")
    rows = [{"sub_label": "France", "obj_label": "paris"}, {"sub_label": "Moon", "obj_label": "\U0001F315"}]
    m = evaluate(task, rows)
    assert m["n_scored"] == 1 and m["n_skipped"] == 1


def test_a_folder_without_a_model_says_what_is_missing(cli, tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "notes.txt").write_text("x")
    assert_user_error(cli("evaluate", "--model", tmp_path / "m", "--data", "demo:sentiment:dev"),
                      "holds no model", "no config.json", "notes.txt")
    (tmp_path / "m" / "config.json").write_text("{}")
    assert_user_error(cli("evaluate", "--model", tmp_path / "m", "--data", "demo:sentiment:dev"), "no weights")


def test_a_deleted_weights_file_is_missing_and_a_newer_format_is_warned(cli, run, caplog):
    config = json.loads((run / CONFIG).read_text())
    (run / CONFIG).write_text(json.dumps({**config, "format": 99}))
    import logging

    from frozen_lm import load_result

    with caplog.at_level(logging.WARNING):
        load_result(run)
    assert "format 99" in caplog.text
    (run / WEIGHTS).unlink()
    assert_user_error(cli("evaluate", run, "--data", "demo:sentiment:dev"), "weights.safetensors is missing")


def test_every_artifact_file_has_the_same_mode(run):
    modes = {p.name: stat.S_IMODE(os.stat(p).st_mode) for p in run.iterdir()}
    assert len(set(modes.values())) == 1, modes
