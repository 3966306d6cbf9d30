"""Issue 28: hyperparameter selection on dev, per method and seed. tune=True tries every method's
default space (Method.space), sweep= / spec lists try spaces of one's own; each (method, seed) keeps
its best setting on dev (ties: the first in space order), the table shows the choice and counts the
whole sweep in the costs, warns at the edge of a space, and only the chosen weights are kept unless
asked; a cell cut short resumes at its next setting; bad sweep input is one line."""

from __future__ import annotations

import json

import pytest

from frozen_lm.artifact import WEIGHTS
from frozen_lm.errors import Interrupted, UserError
from frozen_lm.methods import methods
from prompt_compare import compare
from prompt_compare.cells import grid_cells
from prompt_compare.spec import grid_from_dict
from prompt_compare.sweep import MAX_SETTINGS, choose, edges
from prompt_compare.trials import PROGRESS
from tests.conftest import assert_user_error
from tests.prompt_compare.conftest import FAST, LEVELS, RIGHT

SUMMED = ("forward_tokens", "backward_tokens", "wall_s")


@pytest.fixture
def model(tiny_folder):
    return tiny_folder("llama")


def test_tune_picks_each_seeds_best_setting_per_method(tmp_path, model, words_task, dials):
    """The issue's 'Done when': per-seed settings that differ between methods, chosen on dev, shown in
    the table with the edge warning, and the whole sweep in the costs."""
    r = compare(words_task, ["manual", "dial_a", "dial_b"], [1, 2], out=tmp_path / "g", model=model, tune=True)
    rows = {(row["method"], row["seed"]): row for row in r.rows}
    for name in RIGHT:
        for seed in (1, 2):
            row = rows[(name, seed)]
            assert row["chosen"] == {"level": RIGHT[name][seed]} and row["dev"] == row["test"] == 1.0
            assert row["config"]["level"] == RIGHT[name][seed] and row["settings"] == len(LEVELS)
            assert [s["setting"] for s in row["sweep"]] == [{"level": v} for v in LEVELS]
            assert row["artifact"] == f"cells/{row['id']}/setting-{LEVELS.index(RIGHT[name][seed])}"
            for key in SUMMED:  # tuning is part of the price
                assert row[key] == pytest.approx(sum(s[key] for s in row["sweep"]))
            assert row["forward_tokens"] > 0 and row["peak_mb"] == max(s["peak_mb"] for s in row["sweep"])
    assert rows[("dial_a", 1)]["edge"] == ["level=0 is the smallest of 4"] and rows[("dial_a", 2)]["edge"] == []
    assert rows[("dial_b", 1)]["edge"] == ["level=3 is the largest of 4"] and rows[("dial_b", 2)]["edge"] == []
    assert "space" not in rows[("manual", 1)] and "chosen" not in rows[("manual", 1)]  # no space: an ordinary cell
    table = (tmp_path / "g" / "table.md").read_text()
    assert "| chosen |" in table and "level=0 ×1; level=2 ×1 ⚠" in table and "level=3 ×1; level=1 ×1 ⚠" in table
    assert "⚠ words / dial_a: the chosen level=0 is the smallest of 4 (seeds 1): a wider space may do better" in table
    assert "⚠ words / dial_b: the chosen level=3 is the largest of 4 (seeds 1)" in table
    csv_rows = (tmp_path / "g" / "table.csv").read_text().splitlines()
    assert csv_rows[0].endswith(",chosen,settings,edge") and "level=0 ×1; level=2 ×1" in csv_rows[2]


def test_tune_on_real_methods_keeps_only_the_chosen_weights(tmp_path, model, words_task):
    r = compare(words_task, ["manual", "bitfit", "prompt"], [1, 2], out=tmp_path / "g", model=model, defaults=FAST,
                tune=True)
    registry = methods()
    for row in (row for row in r.rows if row["method"] != "manual"):
        space = registry[row["method"]].space
        assert row["space"] == space and row["settings"] == len(space["lr"]) and row["chosen"]["lr"] in space["lr"]
        devs = [s["dev"] for s in row["sweep"]]
        assert row["chosen"] == row["sweep"][devs.index(max(devs))]["setting"]  # the best; ties: the first
        assert row["dev"] == max(devs) and row["config"]["lr"] == row["chosen"]["lr"]
        folder = tmp_path / "g" / "cells" / row["id"]
        kept = [k for k in range(row["settings"]) if (folder / f"setting-{k}" / WEIGHTS).exists()]
        assert kept == [devs.index(max(devs))] and (tmp_path / "g" / row["artifact"] / WEIGHTS).exists()
        assert (folder / f"setting-{(kept[0] + 1) % row['settings']}" / "config.json").exists()  # the rest's records stay
    again = compare(words_task, ["manual", "bitfit", "prompt"], [1, 2], out=tmp_path / "g", model=model,
                    defaults=FAST, tune=True)
    assert (again.ran, again.skipped) == (0, 6)
    plain = compare(words_task, ["manual"], [1, 2], out=tmp_path / "g", model=model, defaults=FAST)
    assert (plain.ran, plain.skipped) == (0, 2)  # the manual cells of the tuned grid are the plain grid's


def test_keep_weights_and_a_cut_sweep_resumes_at_its_next_setting(tmp_path, model, words_task, dials, monkeypatch):
    import prompt_compare.trials as trials

    real, calls = trials.run_setting, []

    def counting(c, method, task, config, art, selecting=False):
        calls.append(config.level)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(c, method, task, config, art, selecting)

    monkeypatch.setattr(trials, "run_setting", counting)
    with pytest.raises(Interrupted):
        compare(words_task, ["dial_b"], [1], out=tmp_path / "g", model=model, tune=True, keep_weights=True)
    row_id = grid_cells(grid_from_dict({"tasks": [words_task], "methods": ["dial_b"], "seeds": [1], "model": model,
                                        "tune": True}))[0].id
    progress = (tmp_path / "g" / "cells" / row_id / PROGRESS).read_text().splitlines()
    assert [json.loads(line)["setting"] for line in progress] == [{"level": 0}, {"level": 1}]
    r = compare(words_task, ["dial_b"], [1], out=tmp_path / "g", model=model, tune=True, keep_weights=True)
    assert calls == [0, 1, 2, 2, 3] and r.rows[0]["chosen"] == {"level": 3} and r.rows[0]["weights_kept"] == "all"
    assert len(r.rows[0]["sweep"]) == 4 and r.rows[0]["id"] == row_id
    assert all((tmp_path / "g" / "cells" / row_id / f"setting-{k}" / "config.json").exists() for k in range(4))


def test_a_larger_budget_continues_the_smaller_settings_run(tmp_path, model, words_task):
    """AutoPrompt's iters are resumable: the 3-iteration setting goes on from the 1-iteration one's
    artifact (its costs are the increment), and ends where a 3-iteration run alone ends."""
    fast = {**FAST, "num_cand": 3}
    r = compare(words_task, ["autoprompt"], [1], out=tmp_path / "g", model=model, defaults=fast,
                sweep={"autoprompt": {"num_cand": [2, 3], "iters": [1, 3]}})
    sweep = r.rows[0]["sweep"]
    assert [s.get("resumed_from") for s in sweep] == [None, 0, None, 2]  # num_cand differs: not a continuation
    alone = compare(words_task, [{"autoprompt": {"iters": 3, "num_cand": 3}}], [1], out=tmp_path / "alone", model=model,
                    defaults=fast)
    cell = tmp_path / "g" / "cells" / r.rows[0]["id"]
    swept = json.loads((cell / "setting-3" / "results.json").read_text())
    single = json.loads((tmp_path / "alone" / alone.rows[0]["artifact"] / "results.json").read_text())
    assert swept["trigger_ids"] == single["trigger_ids"] and untimed(swept["history"]) == untimed(single["history"])
    assert sweep[3]["dev"] == alone.rows[0]["dev"] and sweep[3]["forward_tokens"] < alone.rows[0]["forward_tokens"]
    assert r.rows[0]["forward_tokens"] == sum(s["forward_tokens"] for s in sweep)


def test_a_setting_cut_mid_run_continues_its_own_run(tmp_path, model, words_task, monkeypatch):
    """A search setting stopped after an iteration continues from its saved state on the grid's next
    run (resumed_from: itself): it ends where the uncut run ends, and its costs add what the cut run spent."""
    from autoprompt.search import Searcher

    grid = dict(model=model, defaults={**FAST, "iters": 3}, sweep={"autoprompt": {"num_cand": [2, 3]}})
    whole = compare(words_task, ["autoprompt"], [1], out=tmp_path / "whole", **grid)
    real, calls = Searcher.step, {"n": 0}

    def step(self, state):
        calls["n"] += 1
        if calls["n"] == 5:  # the second setting's second iteration
            raise KeyboardInterrupt
        return real(self, state)

    monkeypatch.setattr(Searcher, "step", step)
    with pytest.raises(Interrupted):
        compare(words_task, ["autoprompt"], [1], out=tmp_path / "cut", **grid)
    cell = tmp_path / "cut" / "cells" / whole.rows[0]["id"]
    assert json.loads((cell / "setting-1.spent.json").read_text())["forward_tokens"] > 0
    monkeypatch.setattr(Searcher, "step", real)
    again = compare(words_task, ["autoprompt"], [1], out=tmp_path / "cut", **grid)
    sweep, uncut = again.rows[0]["sweep"], whole.rows[0]["sweep"]
    assert [s.get("resumed_from") for s in sweep] == [None, 1] and not (cell / "setting-1.spent.json").exists()
    swept = json.loads((cell / "setting-1" / "results.json").read_text())
    single = json.loads((tmp_path / "whole" / "cells" / whole.rows[0]["id"] / "setting-1" / "results.json").read_text())
    assert swept["trigger_ids"] == single["trigger_ids"] and untimed(swept["history"]) == untimed(single["history"])
    assert [s["dev"] for s in sweep] == [s["dev"] for s in uncut]
    assert sweep[1]["forward_tokens"] == uncut[1]["forward_tokens"]


def untimed(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in h.items() if k != "seconds" and not k.endswith("_s")} for h in history]


def test_what_a_setting_may_continue():
    from prompt_compare.trials import resume_source

    done = [{"k": 0, "status": "done", "setting": {"n": 2, "iters": 10}},
            {"k": 1, "status": "done", "setting": {"n": 2, "iters": 20}},
            {"k": 2, "status": "failed", "setting": {"n": 2, "iters": 30}},
            {"k": 3, "status": "done", "setting": {"n": 4, "iters": 10}}]
    assert resume_source(("iters",), done, {"n": 2, "iters": 40}) == 1  # the furthest along, not the failed
    assert resume_source(("iters",), done, {"n": 2, "iters": 5}) is None  # never fewer iterations
    assert resume_source(("iters",), done, {"n": 3, "iters": 40}) is None  # another field differs
    assert resume_source(None, done, {"n": 2, "iters": 40}) is None  # the method cannot resume
    assert resume_source(("iters",), done, {"n": 2, "iters": 40}, usable=lambda k: k != 1) == 0  # its artifact is gone


def test_where_a_space_comes_from():
    """grid_defaults < Method.space (tune) < defaults < the entry's config < sweep; a list where the
    option is not a list is a space; a space of one setting is no sweep (the same id as the value)."""
    base = {"tasks": [{"name": "t", "template": "{sentence} It was [P] .", "label_map": {"0": "bad", "1": "good"},
                       "train": "demo:sentiment:train", "dev": "demo:sentiment:dev", "test": "demo:sentiment:dev"}],
            "seeds": [1], "model": "m"}
    cells = {c.method: c for c in grid_cells(grid_from_dict({**base, "tune": True, "defaults": {"iters": 3},
                                                             "methods": ["autoprompt", {"lora": {"lr": 1e-3}}, "manual",
                                                                         {"prompt": {"lr": [0.1, "3e-1"]}}]}))}
    assert cells["autoprompt"].space == {"num_cand": [10, 50]} and cells["autoprompt"].config["iters"] == 3
    assert cells["lora"].space is None and cells["lora"].config["lr"] == 1e-3  # the entry's value is not swept
    assert cells["manual"].space is None and cells["prompt"].space == {"lr": [0.1, 0.3]}
    swept = grid_cells(grid_from_dict({**base, "methods": [{"name": "a", "method": "lora"}, {"name": "b", "method": "lora"}],
                                       "sweep": {"lora": {"lr": [1e-4, 1e-3], "r": [2, 4, 8]}}}))
    assert [c.space for c in swept] == [{"lr": [1e-4, 1e-3], "r": [2, 4, 8]}] * 2
    assert swept[0].settings()[:3] == [{"lr": 1e-4, "r": 2}, {"lr": 1e-4, "r": 4}, {"lr": 1e-4, "r": 8}]
    one = grid_cells(grid_from_dict({**base, "methods": ["lora"], "sweep": {"lora": {"lr": [2e-4]}}}))[0]
    fixed = grid_cells(grid_from_dict({**base, "methods": [{"lora": {"lr": 2e-4}}]}))[0]
    assert one.space is None and one.id == fixed.id
    untuned = grid_cells(grid_from_dict({**base, "methods": ["lora"]}))[0]
    assert untuned.space is None and "space" not in json.dumps(untuned.config)


def test_the_choice_and_the_edges():
    assert choose([0.5, 0.7, 0.7, None]) == 1 and choose([None, float("nan"), 0.2]) == 2 and choose([None]) is None
    assert edges({"lr": [1, 2, 3]}, {"lr": 3}) == ["lr=3 is the largest of 3"]
    assert edges({"lr": [1, 2]}, {"lr": 2}) == [] and edges({"mode": ["a", "b", "c"]}, {"mode": "a"}) == []


BAD = [
    ({"lora": {"lrr": [1e-3]}}, "sweep.lora.lrr: LoRAFinetuneConfig has no option 'lrr'; lora's options: "),
    ({"lora": {"lr": []}}, "sweep.lora.lr: an empty space; give at least one value"),
    ({"lora": {"lr": [1e-3, "abc"]}}, "sweep.lora.lr must be a number, got 'abc'"),
    ({"lorra": {"lr": [1e-3]}}, "sweep.lorra: no method of the grid is called 'lorra' (the grid's: manual, lora)"),
    ({"lora": [1e-3]}, "sweep.lora: give a mapping of options to lists of values"),
    ({"lora": {"seed": [1, 2]}}, "sweep.lora.seed: seeds come from the grid's 'seeds'"),
    ({"lora": {"lr": list(range(1, 9)), "r": list(range(1, 10))}}, f"= 72 settings, more than {MAX_SETTINGS}"),
]


@pytest.mark.parametrize("sweep,message", BAD, ids=[b[1][:24] for b in BAD])
def test_bad_sweeps_are_one_line_naming_the_key(tmp_path, words_task, sweep, message):
    with pytest.raises(UserError) as e:
        compare(words_task, ["manual", "lora"], [1], out=tmp_path / "g", sweep=sweep)
    assert message in str(e.value) and "\n" not in str(e.value) and "--" not in str(e.value), str(e.value)
    assert not (tmp_path / "g").exists()  # before any work


def test_cli_sweep_tune_and_their_mistakes(tmp_path, model, words_task, cli, dials):
    flags = ["compare", "--model", model, "--template", words_task["template"], "--label-map", "0=terrible,1=great",
             "--train", words_task["train"], "--dev", words_task["dev"], "--test", words_task["test"], "--seeds", "1"]
    out = cli(*flags, "--methods", "manual,dial_a,dial_b", "--sweep", "dial_a.level=1,0", "--tune", "--out",
              tmp_path / "g", "--json")
    assert out.exit_code == 0, out.output
    table = {row["method"]: row for row in json.loads(out.output.strip().splitlines()[-1])["table"]}
    assert table["dial_a"]["chosen"] == "level=0" and table["dial_a"]["settings"] == 2 and table["dial_a"]["edge"] == ""
    assert table["dial_b"]["chosen"] == "level=3" and table["dial_b"]["settings"] == 4  # tune: its default space
    for args, fragments in ((["--sweep", "dial_a.levl=1,2"], ["--sweep dial_a.levl: DialConfig has no option 'levl'",
                                                              "dial_a's options: batch_size, level"]),
                            (["--sweep", "dial_a.level="], ["--sweep dial_a.level: an empty space"]),
                            (["--sweep", "dial_a.level=1,x"], ["--sweep dial_a.level must be a number, got 'x'"]),
                            (["--sweep", "lora.lr=1e-3"], ["--sweep lora: no method of the grid is called 'lora'"]),
                            (["--sweep", "level=1,2"], ["--sweep 'level=1,2': write METHOD.KEY=V1,V2,..."])):
        assert_user_error(cli(*flags, "--methods", "manual,dial_a", *args, "--out", tmp_path / "bad"), *fragments)
    spec = tmp_path / "grid.yaml"
    spec.write_text(f"seeds: [1]\nmethods: [manual, {{dial_a: {{level: []}}}}]\ntasks: [{json.dumps(words_task)}]\n")
    assert_user_error(cli("compare", "--spec", spec, "--out", tmp_path / "bad"),
                      "grid.yaml: methods[1].config.level: an empty space")
    spec.write_text(f"seeds: [1]\nmethods: [manual]\nsweep: {{dial_a: {{level: [1]}}}}\ntasks: [{json.dumps(words_task)}]\n")
    assert_user_error(cli("compare", "--spec", spec, "--out", tmp_path / "bad"),
                      "grid.yaml: sweep.dial_a: no method of the grid is called 'dial_a' (the grid's: manual)")


def test_every_discrete_search_tunes_its_budget():
    """A discrete method's iterations or steps are part of its default space (issue 28: a default that
    leaves a search below the manual template for want of budget is no comparison)."""
    searches = [m for m in methods().values() if m.trains == "tokens" and m.comparable]
    assert {m.name for m in searches} >= {"autoprompt", "gcg", "pez"}
    for m in searches:
        assert {"iters", "steps", "rounds"} & set(m.space), m.name  # instruct: its OPRO rounds
