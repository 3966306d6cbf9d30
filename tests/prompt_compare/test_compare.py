"""prompt_compare: a grid of tasks x methods x seeds on tiny models: local Ray with 2 workers equals
the sequential run, resume skips finished cells, a failing cell does not stop the grid, and bad spec
files or unknown methods get one-line errors naming the key. The grid's methods are the registry's
(tests/prompt_compare/test_registry.py: a method registered at run time, issue 27's messages)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from frozen_lm.artifact import WEIGHTS
from frozen_lm.errors import Interrupted, UserError
from prompt_compare import compare
from prompt_compare.execute import TIMING_FIELDS
from prompt_compare.store import RESULTS, read_records
from tests.conftest import assert_user_error, write_jsonl

LABELS = {"0": "terrible", "1": "great"}
TASK = {"name": "sent", "template": "{sentence} It was [P] .", "label_map": LABELS, "train": "demo:sentiment:train",
        "dev": "demo:sentiment:dev", "test": "demo:sentiment:dev"}
FAST = {"steps": 2, "eval_every": 1, "iters": 1, "num_cand": 2, "eval_size": 4, "batch_size": 4}


@pytest.fixture
def model(tiny_folder):
    return tiny_folder("llama")


@pytest.fixture
def bad_task(tmp_path):
    """A task whose test split has a label the label map lacks: every cell of it fails."""
    test = write_jsonl(tmp_path / "bad-test.jsonl", [{"sentence": "a fine film", "label": "7"}])
    return {**TASK, "name": "broken", "test": str(test)}


def comparable(rows: list[dict]) -> list[dict]:
    """Records without what depends on timing or the worker (wall time, memory, pid, attempts), and without
    the weights' byte hash: a Ray worker runs with its share of the torch threads, and a different thread
    count may change the last bits of a float sum (the tensors are compared with a tolerance instead)."""
    out = []
    for r in rows:
        r = {k: v for k, v in r.items() if k not in TIMING_FIELDS and k != "weights_sha256"}
        r["derived"] = [{k: v for k, v in d.items() if k not in TIMING_FIELDS} for d in r.get("derived", [])]
        out.append(r)
    return out


def test_ray_two_workers_equal_sequential_and_failures_are_recorded(tmp_path, model, bad_task):
    pytest.importorskip("ray")
    from frozen_lm.errors import UserError

    methods = ["manual", "bitfit", "prompt", {"lora": {"r": 2}}]
    one = compare([TASK, bad_task], methods, [1, 2], out=tmp_path / "one", model=model, defaults=FAST)
    try:
        two = compare([TASK, bad_task], methods, [1, 2], out=tmp_path / "two", model=model, defaults=FAST, workers=2)
    except UserError as e:
        if "Ray could not start" not in str(e):
            raise
        pytest.skip(f"local Ray cannot start on this machine: {e}")
    assert one.ran == two.ran == 16 and one.failed == two.failed == 8
    assert comparable(one.rows) == comparable(two.rows)
    for a, b in zip(one.rows, two.rows):
        if a["status"] == "done" and a["preset"] != "manual":
            wa, wb = load_file(tmp_path / "one" / a["artifact"] / WEIGHTS), load_file(tmp_path / "two" / b["artifact"] / WEIGHTS)
            assert wa.keys() == wb.keys() and all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)
    assert {r["worker"] for r in two.rows if r["status"] == "done"} != {r["worker"] for r in one.rows
                                                                          if r["status"] == "done"}
    done = [r for r in one.rows if r["status"] == "done"]
    assert {r["task"] for r in done} == {"sent"} and all(r["weights_sha256"] for r in done if r["preset"] != "manual")
    failed = [r for r in one.rows if r["status"] == "failed"]
    assert {r["task"] for r in failed} == {"broken"} and all(r["attempts"] == 2 for r in failed)
    assert all("UserError" in r["error"] and "'7'" in r["error"] for r in failed)
    table = (tmp_path / "one" / "table.md").read_text()
    assert "prompt (nearest tokens)" in table and "broken / bitfit: UserError" in table
    assert sorted(p.name for p in one.plots) == ["accuracy_vs_compute.png", "accuracy_vs_params.png", "peak_memory.png"]


def test_accounting_and_artifacts(tmp_path, model, cli):
    r = compare(TASK, ["manual", "autoprompt", "prompt", "bitfit", "full"], [3], out=tmp_path / "g", model=model,
                defaults=FAST)
    rows = {row["method"]: row for row in r.rows}
    assert rows["manual"]["trainable_params"] == 0 and rows["manual"]["bytes_stored"] == 0
    assert rows["manual"]["backward_tokens"] == 0 and rows["manual"]["forward_tokens"] > 0
    assert rows["autoprompt"]["trainable_params"] == 3  # its token slots
    assert rows["prompt"]["trainable_params"] == 20 * 32  # 20 virtual tokens of the tiny model's width
    assert rows["full"]["trainable_params"] > rows["bitfit"]["trainable_params"] > 0
    # stored: what applies the result (the prompt's float32 vectors, not their initial values; the
    # trigger's int64 ids, not the search's beam; BitFit's float32 biases, one per trained value)
    assert rows["prompt"]["bytes_stored"] == 20 * 32 * 4 and rows["autoprompt"]["bytes_stored"] == 3 * 8
    assert rows["bitfit"]["bytes_stored"] == 4 * rows["bitfit"]["trainable_params"]
    for name in ("prompt", "bitfit", "full"):
        assert rows[name]["backward_tokens"] > 0 and rows[name]["forward_tokens"] >= rows[name]["backward_tokens"]
        assert rows[name]["bytes_stored"] > 0 and rows[name]["peak_mb"] >= 0
    from frozen_lm import FrozenLM, PromptTask

    task = PromptTask(FrozenLM.load(model), TASK["template"], LABELS)
    padded = sum(b.input_ids.numel() for b in task.encode(TASK["dev"]).rows.batches(FAST["batch_size"]))
    assert rows["manual"]["forward_tokens"] == padded  # its run scores dev once, in length-sorted batches
    lines = (tmp_path / "g" / "table.csv").read_text().splitlines()
    assert lines[0].startswith("task,method,metric,seeds,failed,test_mean") and len(lines) == 1 + 6
    art = tmp_path / "g" / rows["bitfit"]["artifact"]
    out = cli("evaluate", art, "--data", "demo:sentiment:dev", "--json")
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["accuracy"] == rows["bitfit"]["dev"]


def test_resume_skips_finished_cells(tmp_path, model):
    first = compare(TASK, ["manual", "bitfit"], [1, 2], out=tmp_path / "g", model=model, defaults=FAST)
    assert (first.ran, first.skipped) == (4, 0)
    with (tmp_path / "g" / RESULTS).open("a") as f:
        f.write('{"id": "cut sh')  # a line cut short by a crash is skipped
    again = compare(TASK, ["manual", "bitfit", "ia3"], [1, 2], out=tmp_path / "g", model=model, defaults=FAST)
    assert (again.ran, again.skipped, again.failed) == (2, 4, 0)
    before = {r["id"]: r["finished_at"] for r in first.rows}
    assert all(r["finished_at"] == before[r["id"]] for r in again.rows if r["id"] in before)
    assert len(read_records(tmp_path / "g")) == 6



def test_a_cell_whose_data_changed_runs_again(tmp_path, model, caplog):
    """Cell ids name the data by its source; the record keeps each file's digest, and a rerun runs a
    cell again when a file changed under the same path (a table never mixes old and new data)."""
    rows = lambda word: [{"sentence": f"a {word} film", "label": 1}, {"sentence": f"an awful {word} film", "label": 0}]  # noqa: E731
    test = write_jsonl(tmp_path / "test.jsonl", rows("fine"))
    task = {**TASK, "test": str(test)}
    first = compare(task, ["manual"], [1, 2], out=tmp_path / "g", model=model, defaults=FAST)
    assert first.ran == 2 and all(r["data_sha256"]["test"] and r["data_sha256"]["train"] is None for r in first.rows)
    same = compare(task, ["manual"], [1, 2], out=tmp_path / "g", model=model, defaults=FAST)
    assert (same.ran, same.skipped) == (0, 2)
    write_jsonl(test, rows("great"))
    changed = compare(task, ["manual"], [1, 2], out=tmp_path / "g", model=model, defaults=FAST)
    assert (changed.ran, changed.skipped) == (2, 0) and "its test data changed since it ran" in caplog.text


def test_the_test_split_must_be_held_out(tmp_path, model, caplog):
    """Test = train (the same source, the same file content, or a demo task's whole data) is refused;
    test = dev (which every method selects on) runs with a warning naming the task."""
    train = write_jsonl(tmp_path / "train.jsonl", [{"sentence": "a fine film", "label": 1}])
    copy = write_jsonl(tmp_path / "copy.jsonl", [{"sentence": "a fine film", "label": 1}])
    for test in (str(train), str(copy)):
        with pytest.raises(UserError, match=r"tasks\[0\]\.test: the test split is the training data"):
            compare({**TASK, "train": str(train), "test": test}, ["manual"], [1], out=tmp_path / "x", model=model)
    with pytest.raises(UserError, match="the test split is the training data"):
        compare({**TASK, "test": "demo:sentiment"}, ["manual"], [1], out=tmp_path / "x", model=model)
    compare(TASK, ["manual"], [1], out=tmp_path / "g", model=model)
    assert "the test split is the dev split (demo:sentiment:dev)" in caplog.text and "'sent'" in caplog.text

def test_ctrl_c_keeps_finished_cells_and_a_rerun_continues(tmp_path, model):
    def stop(event):
        if event.step == 1:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted, match="1 of 4 cells are finished"):
        compare(TASK, ["manual", "bitfit"], [1, 2], out=tmp_path / "g", model=model, defaults=FAST, callback=stop)
    assert len(read_records(tmp_path / "g")) == 1
    rest = compare(TASK, ["manual", "bitfit"], [1, 2], out=tmp_path / "g", model=model, defaults=FAST)
    assert (rest.ran, rest.skipped) == (3, 1)


def test_a_cell_that_fails_once_is_retried(tmp_path, model, monkeypatch):
    import prompt_compare.engine as engine

    real, calls = engine.run_cell, []

    def flaky(cell, out, threads=None, tracking=None):
        calls.append(cell["method"])
        if len(calls) == 1:
            raise RuntimeError("transient")
        return real(cell, out, threads, tracking)

    monkeypatch.setattr(engine, "run_cell", flaky)
    r = compare(TASK, ["manual"], [1], out=tmp_path / "g", model=model)
    assert r.rows[0]["status"] == "done" and r.rows[0]["attempts"] == 2 and calls == ["manual", "manual"]


def test_cli_flag_form_and_spec_file(tmp_path, model, cli):
    base = ["compare", "--model", model, "--template", TASK["template"], "--label-map", "0=terrible,1=great",
            "--train", TASK["train"], "--dev", TASK["dev"], "--test", TASK["test"], "--seeds", "1", "--steps", "2",
            "--set", "eval_every=1"]
    out = cli(*base, "--methods", "manual,bitfit", "--out", tmp_path / "flags")
    assert out.exit_code == 0, out.output
    assert "| task | bitfit |" in out.output and "2 cells run" in out.output
    for split in ("train", "dev", "test"):
        write_jsonl(tmp_path / f"{split}-5.jsonl", [{"sentence": f"a great {split} film", "label": 1},
                                                     {"sentence": f"an awful {split} film", "label": 0}])
    (tmp_path / "grid.yaml").write_text(f"""
model: {model}
seeds: [5]
defaults: {{steps: 2, lr: 1e-2}}
tasks:
  - name: files
    template: "{{sentence}} It was [P] ."
    label_map: {{"0": terrible, "1": great}}
    train: train-{{seed}}.jsonl
    dev: dev-{{seed}}.jsonl
    test: test-{{seed}}.jsonl
methods: [manual, {{name: tiny-lora, method: lora, config: {{r: 2}}}}]
""")
    out = cli("compare", "--spec", tmp_path / "grid.yaml", "--out", tmp_path / "spec", "--json")
    assert out.exit_code == 0, out.output
    table = json.loads(out.output.strip().splitlines()[-1])["table"]
    assert [(t["task"], t["method"], t["seeds"]) for t in table] == [("files", "manual", 1), ("files", "tiny-lora", 1)]


BAD_SPECS = [
    ("bad.yaml", "tasks: [\n", ["bad.yaml is not valid YAML"]),
    ("top.yaml", "seeds: [1]\nmethods: [manual]\ntasks: []\nworkerz: 2\n", ["top.yaml: workerz: unknown key"]),
    ("seeds.yaml", "seeds: [one]\nmethods: [manual]\ntasks: []\n", ["seeds.yaml: seeds: give whole numbers"]),
    ("method.yaml", "seeds: [1]\nmethods: [manual, lorra]\ntasks: []\n", ["methods[1]: unknown method 'lorra'"]),
    ("option.yaml", "seeds: [1]\nmethods: [manual, {lora: {rr: 4}}]\ntasks: [TASK]\n",
     ["option.yaml: methods[1].config.rr is not an option; valid: ", "lora_alpha"]),
    ("value.yaml", "seeds: [1]\nmethods: [{lora: {r: 0}}]\ntasks: [TASK]\n", ["methods[0].config.r must be at least 1"]),
    ("default.yaml", "seeds: [1]\nmethods: [manual]\ndefaults: {stepz: 3}\ntasks: [TASK]\n",
     ["default.yaml: defaults.stepz: no method has this option"]),
    ("slots.yaml", "seeds: [1]\nmethods: [manual]\ntasks: [{template: '{sentence} [T] [P]', train: a, dev: a, test: a}]\n",
     ["tasks[0].template: has [T] slots"]),
    ("missing.yaml", "seeds: [1]\nmethods: [manual]\ntasks: [{template: '{sentence} [P]', train: a, dev: a}]\n",
     ["tasks[0].test: missing"]),
    ("nofile.yaml", "seeds: [7]\nmethods: [manual]\ntasks: [{template: '{sentence} [P]', train: 'x-{seed}.jsonl', "
                    "dev: demo:sentiment:dev, test: demo:sentiment:dev}]\n", ["tasks[0].train:", "x-7.jsonl not found (seed 7)"]),
    ("labels.yaml", "seeds: [1]\nmethods: [manual]\ntasks: [{template: '{sentence} [P]', label_map: '0=', train: "
                    "demo:sentiment:train, dev: demo:sentiment:dev, test: demo:sentiment:dev}]\n", ["tasks[0].label_map:"]),
    ("grid.toml", "seeds = [1\n", ["grid.toml is not valid TOML"]),
    ("grid.txt", "seeds: [1]\n", ["use a .yaml, .yml, .toml or .json file"]),
]


@pytest.mark.parametrize("name,text,fragments", BAD_SPECS, ids=[b[0] for b in BAD_SPECS])
def test_bad_spec_files_give_one_line_naming_the_key(tmp_path, cli, name, text, fragments):
    task = json.dumps(TASK)
    (tmp_path / name).write_text(text.replace("TASK", task))
    assert_user_error(cli("compare", "--spec", tmp_path / name, "--out", tmp_path / "g"), *fragments)


def test_cli_mistakes_are_one_line(tmp_path, cli, model):
    help_ = cli("compare", "--help")
    assert help_.exit_code == 0 and "Usage: autoprompt compare" in help_.output
    for option in ("--spec", "--methods", "--seeds", "--workers", "--ray-address", "--out", "--test", "--set"):
        assert option in help_.output
    assert_user_error(cli("compare", "--out", tmp_path / "g"), "give --spec FILE, or --template")
    flags = ["compare", "--model", model, "--template", TASK["template"], "--train", TASK["train"], "--dev",
             TASK["dev"], "--test", TASK["test"], "--out", tmp_path / "g"]
    assert_user_error(cli(*flags, "--methods", "manual,nope"), "methods[1]: unknown method 'nope'")
    assert_user_error(cli(*flags, "--methods", "manual", "--set", "bogus=1"), "--set bogus: no method has this option")
    assert_user_error(cli(*flags, "--methods", "manual", "--workers", "0"), "--workers must be at least 1")
    (tmp_path / "spec.yaml").write_text("seeds: [1]\nmethods: [manual]\ntasks: []\n")
    assert_user_error(cli("compare", "--spec", tmp_path / "spec.yaml", "--template", "x [P]", "--out", tmp_path / "g"),
                      "--template describes a task")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    assert_user_error(cli(*flags, "--methods", "manual", "--out", tmp_path / "other"), "holds other files")


def test_toml_and_json_specs(tmp_path):
    from prompt_compare import load_spec

    (tmp_path / "g.toml").write_text('''seeds = [1, 2]
methods = ["manual", {name = "lora-r4", preset = "lora", config = {r = 4, lr = "1e-3"}}]
[[tasks]]
name = "t"
template = "{sentence} It was [P] ."
label_map = "0=terrible,1=great"
train = "demo:sentiment:train"
dev = "demo:sentiment:dev"
test = "demo:sentiment:dev"
''')
    grid = load_spec(tmp_path / "g.toml")
    assert [m.name for m in grid.methods] == ["manual", "lora-r4"] and grid.seeds == [1, 2]
    assert grid.tasks[0].template_for("trigger") == "{sentence} It was [T] [T] [T] [P] ."
    (tmp_path / "g.json").write_text(json.dumps({"seeds": [3], "methods": ["prompt"], "tasks": [TASK]}))
    from prompt_compare.cells import grid_cells

    cells = grid_cells(load_spec(tmp_path / "g.json"))
    assert len(cells) == 1 and cells[0].config["num_virtual_tokens"] == 20 and cells[0].config["seed"] == 3
    assert grid_cells(load_spec(tmp_path / "g.json"))[0].id == cells[0].id  # same grid, same ids


def test_example_grid_is_valid():
    from pathlib import Path

    from prompt_compare import load_spec
    from prompt_compare.cells import grid_cells
    from tests.conftest import shared_data_dir

    if not (shared_data_dir() / "k-shot" / "sst2").exists():
        pytest.skip("../shared/data/k-shot is not here")
    grid = load_spec(Path(__file__).resolve().parents[2] / "examples" / "compare_grid.yaml")
    cells = grid_cells(grid)
    assert len(cells) == 8 * 3 and {c.method for c in cells} >= {"lora", "lora-r32", "manual"}
    assert all(Path(c.train).exists() for c in cells)


def test_api_refuses_tasks_without_methods(tmp_path):
    with pytest.raises(UserError, match="give methods and seeds"):
        compare(TASK, out=tmp_path / "g")
