"""benchmarks/grid_carry.py: a tuned grid cut short, carried to a committed folder and put back on a
machine without its runs/, goes on with the settings it had not finished and ends where the uncut
grid ends; a setting with a big file is not carried (it runs again)."""

from __future__ import annotations

import json

import pytest

from benchmarks import grid_carry
from frozen_lm.errors import Interrupted
from prompt_compare import compare
from tests.prompt_compare.conftest import FAST, words_task  # noqa: F401 - the fixture

SWEEP = {"autoprompt": {"num_cand": [2, 3], "iters": [1, 2]}}
SAME = ("dev", "test", "chosen", "test_examples", "forward_tokens")


def test_a_cut_grid_carried_to_another_machine_ends_as_the_uncut_one(tmp_path, tiny_folder, words_task, monkeypatch):  # noqa: F811
    import prompt_compare.trials as trials

    model = tiny_folder("llama")
    grid = dict(model=model, defaults=FAST, sweep=SWEEP)
    whole = compare(words_task, ["manual", "autoprompt"], [1], out=tmp_path / "whole", **grid)

    real, calls = trials.run_setting, []

    def cut(c, method, task, config, art, selecting=False, resume=None):
        calls.append((config.num_cand, config.iters))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(c, method, task, config, art, selecting, resume)

    monkeypatch.setattr(trials, "run_setting", cut)
    with pytest.raises(Interrupted):
        compare(words_task, ["manual", "autoprompt"], [1], out=tmp_path / "first", **grid)
    kept = grid_carry.save(tmp_path / "first", tmp_path / "keep")
    assert kept == {"cells": 1, "progress": 1, "settings": 2}  # manual done; autoprompt's first two settings
    assert not grid_carry.restore(tmp_path / "keep", tmp_path / "first")  # a grid with its own results is left alone

    assert grid_carry.restore(tmp_path / "keep", tmp_path / "second")
    again = compare(words_task, ["manual", "autoprompt"], [1], out=tmp_path / "second", **grid)
    assert calls[3:] == [(3, 1), (3, 2)] and (again.ran, again.skipped) == (1, 1)
    rows = {r["method"]: r for r in again.rows}
    for r in whole.rows:
        assert {k: r.get(k) for k in SAME} == {k: rows[r["method"]].get(k) for k in SAME}


def test_a_setting_with_a_big_file_is_not_carried(tmp_path, monkeypatch):
    grid = tmp_path / "grid"
    (grid / "cells" / "a" / "setting-0").mkdir(parents=True)
    (grid / "cells" / "a" / "setting-1").mkdir()
    (grid / "cells" / "b").mkdir()
    (grid / "results.jsonl").write_text(json.dumps({"id": "b", "status": "done"}) + "\n"
                                        + json.dumps({"id": "a", "status": "failed"}) + "\n")
    (grid / "cells" / "a" / "sweep.jsonl").write_text("{}\n")
    (grid / "cells" / "b" / "sweep.jsonl").write_text("{}\n")
    (grid / "cells" / "a" / "setting-0" / "config.json").write_text("{}")
    (grid / "cells" / "a" / "setting-1" / "weights.safetensors").write_bytes(b"0" * 100)
    monkeypatch.setattr(grid_carry, "MAX_FILE", 50)
    assert grid_carry.save(grid, tmp_path / "keep") == {"cells": 1, "progress": 1, "settings": 1}
    assert sorted(p.relative_to(tmp_path / "keep").as_posix() for p in (tmp_path / "keep").rglob("*") if p.is_file()) \
        == ["cells/a/setting-0/config.json", "cells/a/sweep.jsonl", "results.jsonl"]
    with pytest.raises(SystemExit, match="no results.jsonl"):
        grid_carry.save(tmp_path / "empty", tmp_path / "keep")
