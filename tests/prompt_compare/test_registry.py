"""prompt_compare on the method registry: the registry is the only method list (a method registered at
run time is named by a grid and runs), what a method trains, its template and its grid starting
values come from its Method, a measurement is refused; and issue 27's messages: a default's mistake
is named where it was written, a --set typo is the flag's with the valid options, a folder holding
another definition of a task is refused, a spec that is not UTF-8 names file:line, and library
messages name spec keys and API arguments, never flags."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from frozen_lm.errors import UserError
from frozen_lm.evaluate import evaluate
from frozen_lm.methods import Method, methods, register_method
from prompt_compare import comparable_methods, compare, load_spec
from prompt_compare.cells import grid_cells
from prompt_compare.spec import grid_from_dict
from prompt_compare.store import TABLE_MD
from tests.conftest import assert_user_error

LABELS = {"0": "terrible", "1": "great"}
TASK = {"name": "sent", "template": "{sentence} It was [P] .", "label_map": LABELS, "train": "demo:sentiment:train",
        "dev": "demo:sentiment:dev", "test": "demo:sentiment:dev"}
FAST = {"steps": 2, "eval_every": 1, "iters": 1, "num_cand": 2, "eval_size": 4, "batch_size": 4}


@pytest.fixture
def model(tiny_folder):
    return tiny_folder("llama")


@dataclass
class ConstantConfig:
    """A method registered by this test: the template as written, scored on dev."""

    batch_size: int = field(default=8, metadata={"help": "examples per forward pass"})
    seed: int = field(default=0, metadata={"help": "random seed"})


def fit_constant(run):
    """Score the template on dev; the result is the manual method's result class."""
    result_class = methods()["manual"].result
    return result_class(**run.fields(), metrics={"dev": evaluate(run.task, run.dev, batch_size=run.config.batch_size)},
                        timings={"total_seconds": run.elapsed()})


@pytest.fixture
def constant():
    """The method 'constant', registered at run time (and removed after the test)."""
    from frozen_lm.methods import _METHODS

    method = register_method(Method(name="constant", config=ConstantConfig, fit=fit_constant,
                                    result=methods()["manual"].result, trains="nothing", template="manual",
                                    needs_dev=True, summary="the template, registered by a test", module=__name__))
    yield method
    _METHODS.pop("constant", None)


def test_a_method_registered_at_run_time_is_named_by_a_grid_and_runs(tmp_path, model, constant, cli):
    assert "constant" in comparable_methods()
    r = compare(TASK, ["constant", {"name": "constant-b2", "method": "constant", "config": {"batch_size": 2}}], [1],
                out=tmp_path / "g", model=model)
    assert [(row["method"], row["preset"], row["status"], row["trains"]) for row in r.rows] == [
        ("constant", "constant", "done", "nothing"), ("constant-b2", "constant", "done", "nothing")]
    manual = compare(TASK, ["manual"], [1], out=tmp_path / "m", model=model).rows[0]
    assert r.rows[0]["dev"] == r.rows[1]["dev"] == manual["dev"] and r.rows[0]["test"] == manual["test"]
    assert r.rows[1]["config"] == {"batch_size": 2, "seed": 1} and r.rows[0]["trainable_params"] == 0
    help_ = cli("compare", "--help")
    assert help_.exit_code == 0 and "constant" in help_.output.replace("\n", " ")


def test_the_grid_takes_what_a_method_is_from_its_registration():
    grid = grid_from_dict({"tasks": [TASK], "methods": ["manual", "gcg", "prompt", "prefix", "pez"], "seeds": [3],
                           "defaults": {"steps": 2}})
    cells = {c.method: c for c in grid_cells(grid)}
    registry = methods()
    for name, cell in cells.items():
        kind = registry[name].template
        assert cell.template == (TASK["template"] if kind == "manual" else "{sentence} It was [T] [T] [T] [P] .")
        assert all(cell.config[k] == v for k, v in registry[name].grid_defaults.items())
    assert (cells["gcg"].config["search_width"], cells["gcg"].config["topk"]) == (64, 64)
    assert cells["prompt"].config["num_virtual_tokens"] == 20 and cells["prefix"].config["num_virtual_tokens"] == 10
    assert cells["prompt"].config["steps"] == cells["pez"].config["steps"] == 2 and "steps" not in cells["gcg"].config
    assert set(comparable_methods()) >= {"manual", "autoprompt", "gcg", "pez", "prompt", "prefix", "lora", "ia3",
                                         "adapter", "bitfit", "last_k", "full"}


def test_a_measurement_is_not_a_method_a_grid_compares(tmp_path):
    assert "intrinsic_dim" in methods() and "intrinsic_dim" not in comparable_methods()
    with pytest.raises(UserError, match=r"methods\[1\]: 'intrinsic_dim' is a measurement, not a method a grid "):
        compare(TASK, ["manual", "intrinsic_dim"], [1], out=tmp_path / "g")
    with pytest.raises(UserError, match=r"methods\[0\]\.method: 'intrinsic_dim' is a measurement"):
        compare(TASK, [{"name": "d90", "method": "intrinsic_dim"}], [1], out=tmp_path / "g")
    with pytest.raises(UserError, match=r"defaults\.dims: no method has this option"):  # intrinsic_dim's alone
        compare(TASK, ["manual"], [1], out=tmp_path / "g", defaults={"dims": [10]})


def test_preset_is_read_as_method_and_both_are_refused(tmp_path):
    new = grid_from_dict({"tasks": [TASK], "methods": [{"name": "a", "method": "lora", "config": {"r": 4}}], "seeds": [1]})
    old = grid_from_dict({"tasks": [TASK], "methods": [{"name": "a", "preset": "lora", "config": {"r": 4}}], "seeds": [1]})
    assert grid_cells(new)[0].id == grid_cells(old)[0].id and grid_cells(new)[0].preset == "lora"
    with pytest.raises(UserError, match=r"methods\[0\]: give 'method' \(or its old name 'preset'\), not both"):
        grid_from_dict({"tasks": [TASK], "methods": [{"method": "lora", "preset": "lora"}], "seeds": [1]})


def test_manual_cell_ids_are_those_of_0_2():
    """The id of a cell hashes its method name and full config; 'manual' kept both (the other methods'
    configs changed with the method layer, so their ids did too)."""
    grid = grid_from_dict({"tasks": [TASK], "methods": ["manual"], "seeds": [1], "defaults": {"steps": 2},
                           "model": "m"})
    assert grid_cells(grid)[0].id == "a8ce0625573bd110"  # 0.2's compare package, same grid


PINNED_IDS = {"adapter": "7da69e1a266599aa", "autoprompt": "3de680fcc018ccad", "bitfit": "fc91ba3b15ccce03",
              "full": "f1bd76b641e4cf61", "gcg": "4c6d50f3ffe7dae7", "ia3": "3cd9a89aa74bc383", "icl": "c9e7db5f3248287d",
              "instruct": "a7b60424c910c5b0", "last_k": "482f0068fa0c9100", "lora": "7a566f2b4842a093",
              "manual": "a8ce0625573bd110", "pez": "7e399431523c36e7", "prefix": "e18af17ad591032d",
              "prompt": "0ac629ffec8ece67"}


def test_an_option_added_at_its_default_keeps_every_cell_id():
    """A grid's finished cells are found by id, so an option added to a method's config must leave
    the ids of its default as they were: give the field metadata 'added' (frozen_lm.configs.keyed_dict).
    These ids are those of the grids run since 2026-12-07 (the tuned grid's committed progress)."""
    grid = grid_from_dict({"tasks": [TASK], "methods": sorted(PINNED_IDS), "seeds": [1], "model": "m"})
    assert {c.method: c.id for c in grid_cells(grid)} == PINNED_IDS, "a config option changed the cell ids: mark it 'added'"
    worst = grid_from_dict({"tasks": [TASK], "methods": [{"autoprompt": {"score_mix": "worst"}}], "seeds": [1], "model": "m"})
    cell = grid_cells(worst)[0]
    assert cell.id != PINNED_IDS["autoprompt"] and cell.config["score_mix"] == "worst"  # not the default: keyed


def test_keyed_dict_leaves_out_only_added_options_at_their_default():
    from frozen_lm.configs import keyed_dict

    @dataclass
    class Config:
        old: int = 1
        new: str = field(default="same", metadata={"added": "0.3.0"})

    @dataclass
    class Outer:
        group: Config = field(default_factory=Config)
        flag: bool = field(default=False, metadata={"added": "0.3.0"})

    assert keyed_dict(Config()) == {"old": 1}
    assert keyed_dict(Config(new="other")) == {"old": 1, "new": "other"}
    assert keyed_dict(Outer()) == {"group": {"old": 1}}  # nested option groups too
    assert keyed_dict(Outer(flag=True)) == {"group": {"old": 1}, "flag": True}


# ---------------------------------------------------------------- issue 27
def test_a_bad_default_is_named_where_it_was_written(tmp_path):
    spec = tmp_path / "grid.yaml"
    spec.write_text(f"seeds: [1]\nmethods: [manual, lora]\ndefaults: {{steps: abc}}\ntasks: [{json.dumps(TASK)}]\n")
    with pytest.raises(UserError) as e:
        grid_cells(load_spec(spec))
    assert str(e.value).startswith(f"{spec}: defaults.steps must be a number, got 'abc'"), str(e.value)
    spec.write_text(f"seeds: [1]\nmethods: [manual, {{lora: {{steps: 0}}}}]\ntasks: [{json.dumps(TASK)}]\n")
    with pytest.raises(UserError, match=r"grid\.yaml: methods\[1\]\.config\.steps must be at least 1, got 0"):
        grid_cells(load_spec(spec))
    spec.write_text(f"seeds: [1]\nmethods: [lora]\ndefaults: {{steps: 3}}\ntasks: [{json.dumps(TASK)}]\n")
    with pytest.raises(UserError) as e:  # a default given to compare(), not the file's: no file named
        compare(str(spec), out=tmp_path / "g", defaults={"steps": 0})
    assert str(e.value).startswith("defaults.steps must be at least 1, got 0"), str(e.value)
    with pytest.raises(UserError) as e:
        compare(str(spec), out=tmp_path / "g", defaults={"stpes": 3})
    assert str(e.value).startswith("defaults.stpes: no method has this option; valid: ") and "steps" in str(e.value)


def test_a_set_typo_is_the_flags_and_lists_the_options(tmp_path, cli, model):
    spec = tmp_path / "grid.yaml"
    spec.write_text(f"seeds: [1]\nmethods: [manual]\ntasks: [{json.dumps(TASK)}]\n")
    for args in (["--spec", spec], ["--template", TASK["template"], "--train", TASK["train"], "--dev", TASK["dev"],
                                    "--test", TASK["test"], "--methods", "manual"]):
        out = assert_user_error(cli("compare", *args, "--model", model, "--set", "stpes=3", "--out", tmp_path / "g"),
                                "--set stpes: no method has this option; valid: ", "eval_every", "steps")
        assert "grid.yaml" not in out
    for args, message in ((["--set", "steps=abc"], "--set steps must be a number, got 'abc'"),
                          (["--steps", "0"], "--steps must be at least 1, got 0")):
        out = assert_user_error(cli("compare", "--spec", spec, "--model", model, "--methods", "manual,lora", *args,
                                    "--out", tmp_path / "g"), message)
        assert "grid.yaml" not in out


def test_a_folder_holding_another_definition_of_a_task_is_refused(tmp_path, model, cli):
    first = compare(TASK, ["manual"], [1], out=tmp_path / "g", model=model)
    table = (tmp_path / "g" / TABLE_MD).read_text()
    other = {**TASK, "template": "{sentence} Overall it was [P] ."}
    with pytest.raises(UserError, match=r"out=\S+ holds a grid whose task 'sent' is defined otherwise \(template "
                                        r"'\{sentence\} It was \[P\] \.' there, '\{sentence\} Overall it was \[P\] \.' "
                                        r"here\).*give another out="):
        compare(other, ["manual"], [1], out=tmp_path / "g", model=model)
    assert (tmp_path / "g" / TABLE_MD).read_text() == table  # nothing rewritten
    assert first.rows[0]["task_spec"]["template"] == TASK["template"]
    out = cli("compare", "--model", model, "--template", other["template"], "--label-map", "0=terrible,1=great",
              "--train", TASK["train"], "--dev", TASK["dev"], "--test", TASK["test"], "--methods", "manual",
              "--seeds", "1", "--task-name", "sent", "--out", tmp_path / "g")
    assert_user_error(out, "is defined otherwise", "give another --out")
    renamed = compare({**other, "name": "sent-overall"}, ["manual"], [1], out=tmp_path / "g", model=model)
    assert renamed.ran == 1  # another task's name: both kept
    again = compare(TASK, ["manual"], [1], out=tmp_path / "g", model=model)
    assert (again.ran, again.skipped) == (0, 1)


def test_a_spec_that_is_not_utf8_names_file_and_line(tmp_path, cli):
    spec = tmp_path / "grid.yaml"
    spec.write_bytes(b"seeds: [1]\nmethods: [manual]\n# caf\xe9\ntasks: []\n")
    with pytest.raises(UserError, match=r"grid\.yaml:3: not UTF-8"):
        load_spec(spec)
    assert_user_error(cli("compare", "--spec", spec, "--out", tmp_path / "g"), "grid.yaml:3: not UTF-8")


def test_library_messages_name_arguments_and_keys_not_flags(tmp_path):
    (tmp_path / "file").write_text("x")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    calls = [
        (lambda: compare(TASK, ["manual"], [1], out=tmp_path / "g", workers=0), "workers must be at least 1"),
        (lambda: compare(TASK, ["manual"], [1], out=tmp_path / "file"), "is a file"),
        (lambda: compare(TASK, ["manual"], [1], out=tmp_path / "other"), "holds other files"),
        (lambda: load_spec(tmp_path / "missing.yaml"), "missing.yaml: no such file"),
        (lambda: load_spec(tmp_path / "file"), "use a .yaml, .yml, .toml or .json file"),
        (lambda: compare(TASK, ["manual"], [1], out=tmp_path / "g", defaults={"seed": 1}), "defaults.seed: seeds come"),
        (lambda: compare(TASK, ["manual", "nope"], [1], out=tmp_path / "g"), "methods[1]: unknown method 'nope'"),
    ]
    for call, fragment in calls:
        with pytest.raises(UserError) as e:
            call()
        assert fragment in str(e.value) and "--" not in str(e.value), str(e.value)
