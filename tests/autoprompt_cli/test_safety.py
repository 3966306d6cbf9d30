"""Nothing lost, no tracebacks: --out protection, unique folders, interrupts, absolute data paths,
damaged artifacts, and bad input that is one line with exit code 2."""

from __future__ import annotations

import json
import os
import signal

import pytest

from autoprompt.search import Searcher
from autoprompt_cli.output import default_out
from frozen_lm.artifact import CONFIG, RESULTS, WEIGHTS
from tests.autoprompt_cli.conftest import SEARCH, files
from tests.conftest import assert_user_error, write_jsonl


def test_out_holding_a_run_is_refused_and_left_byte_identical(cli, tiny_folder, run):
    before = files(run)
    result = cli(*SEARCH, "--model", tiny_folder("gpt2"), "--out", run)
    assert_user_error(result, "already holds a run", "--resume", "--overwrite")
    assert files(run) == before
    result = cli(*SEARCH, "--model", tiny_folder("gpt2"), "--out", run, "--overwrite")
    assert result.exit_code == 0, result.output
    assert json.loads((run / CONFIG).read_text())["model"]["architecture"] == "GPT2LMHeadModel"


def test_folder_with_other_files_is_refused(cli, tiny_folder, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    for extra in ((), ("--overwrite",)):
        assert_user_error(cli(*SEARCH, "--model", tiny_folder("llama"), "--out", tmp_path, *extra), "not empty")
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_unwritable_out_is_refused_before_any_work(cli, tiny_folder, tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setattr(Searcher, "step", lambda *a: pytest.fail("the search ran"))
    assert_user_error(cli(*SEARCH, "--model", tiny_folder("llama"), "--out", blocker / "sub"), "cannot be written")
    result = cli(*SEARCH, "--model", tiny_folder("llama"), "--out", blocker)  # click's own check of the option
    assert result.exit_code == 2 and "is a file" in result.output and "Traceback" not in result.output


def test_default_out_is_unique_within_a_second(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    names = {default_out("search") for _ in range(3)}
    assert len(names) == 3 and all(os.path.isdir(n) for n in names)


def test_sigterm_saves_the_run_as_interrupted(cli, tiny_folder, tmp_path, monkeypatch):
    real, calls = Searcher.step, {"n": 0}

    def step(self, state):
        calls["n"] += 1
        if calls["n"] == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(self, state)

    monkeypatch.setattr(Searcher, "step", step)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        result = cli("search", "--iters", "4", "--num-cand", "2", "--no-progress", "--model", tiny_folder("llama"),
                     "--out", tmp_path / "r")
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert result.exit_code == 130 and "interrupted after iteration" in result.output
    assert json.loads((tmp_path / "r" / RESULTS).read_text())["status"] == "interrupted"


def test_data_paths_are_absolute_and_splits_can_be_replaced_on_resume(cli, tiny_folder, tmp_path, monkeypatch):
    from tests.conftest import SENTIMENT_ROWS

    work = tmp_path / "work"
    work.mkdir()
    write_jsonl(work / "train.jsonl", SENTIMENT_ROWS * 4)
    write_jsonl(work / "dev.jsonl", SENTIMENT_ROWS)
    monkeypatch.chdir(work)
    args = ("--template", "{sentence} [T] [P]", "--label-map", "0=terrible,1=great", "--train", "train.jsonl",
            "--dev", "dev.jsonl", "--model", tiny_folder("llama"))
    assert cli("search", "--iters", "1", "--num-cand", "2", "--no-progress", *args, "--out", tmp_path / "a").exit_code == 0
    config = json.loads((tmp_path / "a" / CONFIG).read_text())
    assert config["data"]["train"]["source"] == str(work / "train.jsonl") and len(config["data"]["dev"]["sha256"]) == 64
    monkeypatch.chdir(tmp_path)  # elsewhere: evaluate and resume still find the data
    assert cli("evaluate", tmp_path / "a", "--json").exit_code == 0
    result = cli("search", "--resume", tmp_path / "a", "--iters", "2", "--no-progress", "--dev", work / "dev.jsonl")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("device", ["cuda", "cuda:1", "tpu", "nonsense"])
def test_devices_this_machine_lacks(cli, tiny_folder, device):
    if device.startswith("cuda"):
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
    assert_user_error(cli("evaluate", "--model", tiny_folder("llama"), "--device", device), "device")


def test_non_utf8_data_names_file_and_line(cli, tiny_folder, tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"sentence": "fine", "label": 1}\n{"sentence": "caf\xe9", "label": 0}\n')
    task = ("--template", "{sentence} It was [P] .", "--label-map", "0=terrible,1=great")
    assert_user_error(cli("evaluate", "--model", tiny_folder("llama"), *task, "--data", path), f"{path}:2: not UTF-8")
    tsv = tmp_path / "latin1.tsv"
    tsv.write_bytes(b"sentence\tlabel\ncaf\xe9\t1\n")
    assert_user_error(cli("evaluate", "--model", tiny_folder("llama"), *task, "--data", tsv), f"{tsv}:2: not UTF-8")


@pytest.mark.parametrize("damage", ["empty", "truncated", "random", "missing_tensor", "short_trigger", "config_shape"])
def test_damaged_artifacts_are_one_line(cli, run, damage):
    from safetensors.torch import load_file, save_file

    weights = run / WEIGHTS
    if damage == "empty":
        weights.write_bytes(b"")
    elif damage == "truncated":
        weights.write_bytes(weights.read_bytes()[:30])
    elif damage == "random":
        weights.write_bytes(os.urandom(200))
    elif damage in ("missing_tensor", "short_trigger"):
        tensors = load_file(str(weights))
        if damage == "missing_tensor":
            tensors.pop("trigger_ids")
        else:
            tensors["trigger_ids"] = tensors["trigger_ids"][:1]
        save_file(tensors, str(weights))
    else:
        config = json.loads((run / CONFIG).read_text())
        config["config"] = {"iters": "many"}
        (run / CONFIG).write_text(json.dumps(config))
    for args in (("evaluate", run), ("search", "--resume", run, "--no-progress")):
        out = assert_user_error(cli(*args))
        assert "Traceback" not in out


@pytest.mark.parametrize("label_map, fragment", [
    ("0=terrible,0=awful,1=great", "given twice"), ("", "label map is empty"), ("=great", "no label before")])
def test_bad_label_maps(cli, tiny_folder, label_map, fragment):
    assert_user_error(cli("evaluate", "--model", tiny_folder("llama"), "--label-map", label_map), fragment)


def test_too_many_candidates_are_capped_with_a_notice(cli, tiny_folder, tmp_path, caplog):
    result = cli("search", "--iters", "1", "--num-cand", "100000", "--no-progress", "--model", tiny_folder("llama"),
                 "--out", tmp_path / "r")
    assert result.exit_code == 0, result.output
    assert "--num-cand 100000 is more than the" in caplog.text


def test_ctrl_c_during_tune_saves_the_best_checkpoint(cli, tiny_folder, tmp_path, monkeypatch):
    import softprompt.train as train_mod
    from frozen_lm import load_result

    real, calls = train_mod.batch_loss, {"n": 0}

    def loss(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(train_mod, "batch_loss", loss)
    out = tmp_path / "tune"
    result = cli("tune", "--model", tiny_folder("llama"), "--steps", "10", "--eval-every", "1", "--no-progress",
                 "--out", out)
    assert result.exit_code == 130 and "interrupted after step 3" in result.output, result.output
    saved = load_result(out)
    assert saved.status == "interrupted" and saved.steps_done == 3 and "prompt_embeddings" in saved.tensors
    assert saved.best_step in (0, 1, 2, 3)


def test_intrinsic_dim_refuses_dims_above_d(cli, tiny_folder):
    assert_user_error(cli("intrinsic-dim", "--model", tiny_folder("bert"), "--params", "attention.self.query.bias",
                          "--dims", "10,100000", "--baseline-score", "0.5", "--no-plot"), "more than the")


def test_prefix_longer_than_the_model_is_one_line(cli, tiny_folder):
    out = assert_user_error(cli("tune", "--model", tiny_folder("llama"), "--method", "prefix",
                                "--num-virtual-tokens", "100000"))
    assert "-9" not in out  # no negative token counts
