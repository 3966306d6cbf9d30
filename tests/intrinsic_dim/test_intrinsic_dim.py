"""Intrinsic dimension: subspace maths, training, the d90 sweep, `intrinsic_dim.measure`
and its result, and the CLI (tiny models; projections: test_projections.py)."""

from __future__ import annotations

import json
import math
import statistics

import pytest
import torch

from frozen_lm import data as data_mod
from frozen_lm.errors import UserError
from frozen_lm.evaluate import DiscretePrompt, evaluate
from frozen_lm.results import load_result
from frozen_lm.task import PromptTask
from frozen_lm.train import Trainer, TrainSettings
from intrinsic_dim import D90Result, IntrinsicDimConfig, measure
from intrinsic_dim.memory import check_projection
from intrinsic_dim.objective import Objective
from intrinsic_dim.params import select_names
from intrinsic_dim.projections import PROJECTIONS, make_projection
from intrinsic_dim.subspace import Subspace
from intrinsic_dim.sweep import StopSweep, log_grid, run_sweep
from intrinsic_dim.train import train_full, train_subspace
from tests.conftest import assert_user_error

KINDS = list(PROJECTIONS)
TEMPLATE, LABELS = "{sentence} It was [P] .", "0=terrible,1=great"
TRAIN, DEV = "demo:sentiment:train", "demo:sentiment:dev"


# ----------------------------------------------------------------- subspace
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("said", [False, True])
def test_subspace_overrides_and_gradients_match_the_explicit_matrix(kind, said):
    base = {"a": torch.randn(7, 5), "b": torch.randn(13), "c": torch.randn(2, 3, 4)}
    proj = make_projection(kind, 72, 9, seed=2)
    space, m = Subspace(base, proj, said), proj.matrix()
    theta, scale = torch.randn(9, requires_grad=True), (torch.rand(3) + 0.5).requires_grad_(True)
    weights = {k: torch.randn_like(v) for k, v in base.items()}
    out = space.params(theta, scale if said else None)
    sum((out[k] ** 2 * weights[k]).sum() for k in base).backward()
    theta2, scale2 = theta.detach().clone().requires_grad_(True), scale.detach().clone().requires_grad_(True)
    ref = {k: base[k] + p.view(base[k].shape) * (scale2[i] if said else 1)
           for i, (k, p) in enumerate(zip(base, (m @ theta2).split([35, 13, 24])))}
    sum((ref[k] ** 2 * weights[k]).sum() for k in base).backward()
    for k in base:
        assert torch.allclose(out[k], ref[k], atol=1e-5)
    assert torch.allclose(theta.grad, theta2.grad, atol=1e-4)
    if said:
        assert torch.allclose(scale.grad, scale2.grad, atol=1e-4)


def _tiny_task(lm, rows=16):
    task = PromptTask(lm, TEMPLATE, LABELS)
    encoded = task.encode(data_mod.load(TRAIN).sample(rows, 0)).rows
    return task, encoded


def test_at_d_equal_D_an_orthogonal_projection_matches_full_training(tiny):
    lm = tiny("llama")
    task, rows = _tiny_task(lm)
    objective = Objective(task)
    base = objective.base(select_names(list(lm.named_parameters()), r"layers\.0\.(self_attn\.v_proj|input_layernorm)"))
    D = sum(t.numel() for t in base.values())
    settings = TrainSettings(steps=5, batch_size=4, lr=0.5, optimizer="sgd", seed=0)
    full = train_full(objective, base, settings, rows, rows)
    sub = train_subspace(objective, base, "dense", D, 0, settings, rows, rows, orthogonal=True)
    flat = make_projection("dense", D, D, 0, orthogonal=True).forward(sub.tensors["theta_d"])
    moved = torch.cat([(full.tensors[k] - base[k]).reshape(-1) for k in base])
    assert moved.abs().max() > 1e-3  # training did move the weights
    assert torch.allclose(flat, moved, atol=1e-5)
    assert sub.score == full.score and math.isclose(sub.loss, full.loss, rel_tol=1e-5)
    assert full.steps == sub.steps == 5 and len(sub.losses) == 5


@pytest.mark.parametrize("head,said", [("none", True), ("linear", False)])
def test_frozen_weights_are_bit_identical_after_training(tiny, head, said):
    lm = tiny("bert")
    before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    task, rows = _tiny_task(lm, 8)
    objective = Objective(task, head=head)
    base = objective.base(select_names(list(lm.named_parameters()), "all"))
    d = len(base) + 20 if said else 20
    train_subspace(objective, base, "fastfood", d, 0, TrainSettings(steps=3, batch_size=4, lr=0.1, optimizer="adam"),
                   rows, rows, said=said)
    train_full(objective, base, TrainSettings(steps=2, batch_size=4, lr=1e-2, optimizer="adam"), rows, rows)
    after = lm.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(p.requires_grad for p in lm.model.parameters())


def test_same_seed_same_run(tiny):
    lm = tiny("llama")
    task, rows = _tiny_task(lm, 8)
    objective = Objective(task, head="linear", seed=3)
    base = objective.base(select_names(list(lm.named_parameters()), "mlp"))
    settings = TrainSettings(steps=4, batch_size=4, lr=0.05, optimizer="adam")
    runs = [train_subspace(objective, base, "fastfood", 30, 1, settings, rows, rows) for _ in range(2)]
    assert torch.equal(runs[0].tensors["theta_d"], runs[1].tensors["theta_d"]) and runs[0].loss == runs[1].loss


# ----------------------------------------------------------------- d90
def test_planted_subspace_problem_measures_d90_near_k():
    """loss = ||Q (theta - theta*)||^2 with Q (k, D) orthonormal: only k directions matter, and a random
    d-dim subspace removes about min(d, k) / k of the loss, so d90 lies between 0.9 k and k."""
    D, k = 512, 40
    g = torch.Generator().manual_seed(0)
    q = torch.linalg.qr(torch.randn(D, k, generator=g))[0].T  # (k, D)
    theta0, target = torch.randn(D, generator=g), torch.randn(D, generator=g)
    loss0 = float((q @ (theta0 - target)).square().sum())

    def score(d: int, seed: int) -> float:
        space = Subspace({"w": theta0}, make_projection("fastfood", D, d, seed))
        values = space.init()

        def loss_fn(_=None):
            return (q @ (space.params(**values)["w"] - target)).square().sum()

        settings = TrainSettings(steps=300, batch_size=1, lr=0.1, seed=seed, optimizer="adam", keep_best=False)
        Trainer(values, loss_fn, 1, settings).run()
        with torch.no_grad():
            return 1 - float(loss_fn()) / loss0

    sweep = run_sweep(score, baseline=1.0, seeds=2, max_dim=D, bisect_steps=4)
    assert 0.75 * k <= sweep.d90() <= 1.25 * k, sweep.summary()
    assert all(0.6 * k <= d <= 1.4 * k for d in sweep.d90_per_seed())


def test_sweep_grid_bisection_report_and_stop():
    assert log_grid(5000) == [10, 30, 100, 300, 1000, 3000, 5000]
    assert log_grid(1000, min_dim=50) == [100, 300, 1000]
    sweep = run_sweep(lambda d, s: min(1.0, d / 200), baseline=1.0, max_dim=10_000, bisect_steps=8)
    assert sweep.d90() == 180 and max(sweep.dims) == 300 and not sweep.stopped
    explicit = run_sweep(lambda d, s: [0.5, 0.9][s] * (d >= 30), baseline=1.0, dims=[10, 30, 100], seeds=2,
                         threshold=0.8)
    report = explicit.report()
    assert report["d90"] is None and report["d90_per_seed"] == [None, 30]
    assert [r["d"] for r in report["per_dim"]] == [10, 30, 100]

    def stopping(d, s):
        if d == 30:
            raise StopSweep(0.7)  # a finished run, then stop
        return 0.1

    stopped = run_sweep(stopping, baseline=1.0, dims=[10, 30, 100], seeds=1)
    assert stopped.stopped and stopped.scores == {10: [0.1], 30: [0.7]}


# ----------------------------------------------------------------- options
@pytest.mark.parametrize("kind", ["llama", "gpt2", "bert"])
def test_param_presets_split_attention_and_mlp(tiny, kind):
    names = list(tiny(kind).named_parameters())
    attention, mlp = select_names(names, "attention"), select_names(names, "mlp")
    assert attention and mlp and not set(attention) & set(mlp)
    assert select_names(names, "all") == names
    with pytest.raises(UserError, match="matches no parameter"):
        select_names(names, "no_such_tensor")
    with pytest.raises(UserError, match="regular expression"):
        select_names(names, "(")


def test_memory_refusal_suggests_fastfood():
    with pytest.raises(UserError, match="fastfood"):
        check_projection("dense", 10**6, 10**4, limit=2**20)
    assert check_projection("fastfood", 10**6, 10**4, limit=2**30) < 2**30


@pytest.mark.parametrize("options,fragment", [
    ({"dims": "0,10"}, "at least 1"), ({"dims": " , "}, "empty"), ({"dims": []}, "empty"),
    ({"projection": "gaussian"}, "IntrinsicDimConfig.projection is 'gaussian'"),
    ({"threshold": 1.5}, "IntrinsicDimConfig.threshold"), ({"dims": "10,abc"}, "whole number"),
    ({"dims": [10, 2.5]}, "whole number"), ({"optimizer": "lion"}, "IntrinsicDimConfig.optimizer")])
def test_config_validation(options, fragment):
    with pytest.raises(UserError, match=fragment):
        IntrinsicDimConfig(**options)


def test_config_dims_accepts_lists_and_old_comma_strings():
    assert IntrinsicDimConfig(dims=[100, 10, 10]).dims == [10, 100]
    assert IntrinsicDimConfig(dims="100, 10").dims == [10, 100]  # as package 0.1 saved it
    assert IntrinsicDimConfig().dims is None and IntrinsicDimConfig().seed == 0


# ----------------------------------------------------------------- the public API
def _config(**changes) -> IntrinsicDimConfig:
    values = dict(dims=[5, 40], steps=3, baseline_steps=3, baseline_lr=1e-2, batch_size=4, max_train=12, max_dev=12,
                  plot=False)
    return IntrinsicDimConfig(**{**values, **changes})


def test_measure_writes_nothing_without_out_and_reports_its_runs(tiny, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    task = PromptTask(tiny("llama"), TEMPLATE, LABELS)
    r = measure(task, TRAIN, DEV, _config(seeds=2, plot=True), progress=False)
    assert list(tmp_path.iterdir()) == [] and r.plot_path is None
    assert isinstance(r, D90Result) and r.status == "done" and r.metric == "accuracy"
    assert [(x["d"], x["seed"]) for x in r.runs] == [(5, 0), (5, 1), (40, 0), (40, 1)]
    for row in r.per_dim:
        scores = [x["score"] for x in r.runs if x["d"] == row["d"]]
        assert row["mean"] == statistics.fmean(scores) and row["n_seeds"] == 2
    assert r.baseline == r.baseline_run["score"] and r.target == pytest.approx(0.9 * r.baseline)
    assert r.D == sum(p.numel() for p in task.lm.model.parameters()) and r.n_tensors > 1
    assert r.saved_run in r.runs and r.tensors["theta_d"].shape == (r.saved_run["d"],)
    assert r.timings["baseline_seconds_per_step"] > 0 and r.timings["subspace_seconds_per_step"] > 0
    path = r.plot(tmp_path / "p.png")
    assert path.stat().st_size > 1000


@pytest.mark.parametrize("kind,head,said", [("llama", "none", False), ("bert", "linear", True)])
def test_save_load_and_evaluate_equal_the_saved_run(tiny, tmp_path, kind, head, said):
    task = PromptTask(tiny(kind), TEMPLATE, LABELS)
    cfg = _config(head=head, said=said, dims=[60], params="attention", baseline_score=0.5, steps=4)
    r = measure(task, TRAIN, DEV, cfg, out=tmp_path / "run", progress=False)
    assert r.baseline_run is None and r.timings["baseline_seconds_per_step"] is None
    loaded = load_result(tmp_path / "run")
    assert type(loaded) is D90Result and loaded.config == cfg and loaded.per_dim == r.per_dim
    assert loaded.saved_run == r.saved_run and torch.equal(loaded.tensors["theta_d"], r.tensors["theta_d"])
    assert ("said_scale" in loaded.tensors) == said
    sample = data_mod.load(DEV).sample(cfg.max_dev, cfg.seed)
    assert evaluate(task, sample, prompt=loaded)["accuracy"] == r.saved_run["score"]
    assert evaluate(task, sample, prompt=r)["accuracy"] == r.saved_run["score"]


def test_same_seed_same_theta_d_and_another_seed_differs(tiny):
    task = PromptTask(tiny("gpt2"), TEMPLATE, LABELS)
    runs = [measure(task, TRAIN, DEV, _config(dims=[20], baseline_score=0.5, seed=s), progress=False) for s in (3, 3, 4)]
    assert torch.equal(runs[0].tensors["theta_d"], runs[1].tensors["theta_d"])
    assert [(x["seed"], x["score"], x["train_loss"]) for x in runs[0].runs] == [
        (x["seed"], x["score"], x["train_loss"]) for x in runs[1].runs]
    assert not torch.equal(runs[0].tensors["theta_d"], runs[2].tensors["theta_d"])


def test_callback_gets_events_and_stops_the_sweep(tiny, tmp_path):
    task = PromptTask(tiny("llama"), TEMPLATE, LABELS)
    events = []

    def after_first_subspace_run(event):
        events.append(event)
        return event.kind == "run" and event.stage != "baseline"

    r = measure(task, TRAIN, DEV, _config(seeds=2), callback=after_first_subspace_run, progress=False)
    runs = [e for e in events if e.kind == "run"]
    assert [e.stage for e in runs] == ["baseline", "d=5 seed=0"] and runs[0].total == 5
    assert runs[1].metrics["score"] == r.runs[0]["score"] and runs[0].metrics["score"] == r.baseline
    assert [e.step for e in events if e.kind == "step" and e.stage == "baseline"] == [1, 2, 3]
    assert r.status == "stopped" and len(r.runs) == 1 and r.per_dim[0]["n_seeds"] == 1

    mid = measure(task, TRAIN, DEV, _config(plot=True), callback=lambda e: e.kind == "step" and e.stage == "d=5 seed=0",
                  out=tmp_path / "mid", progress=False)  # stops inside a run: the cut run is recorded, not counted
    assert mid.status == "stopped" and mid.runs[0]["stopped"] and mid.runs[0]["steps"] == 1
    assert mid.per_dim == [] and mid.saved_run is None and "theta_d" not in mid.tensors
    assert not (tmp_path / "mid" / "d90.png").exists()
    loaded = load_result(tmp_path / "mid")
    assert loaded.status == "stopped" and loaded.runs == mid.runs
    with pytest.raises(UserError, match="no finished subspace run"):
        evaluate(task, DEV, prompt=loaded)


def test_template_slots_need_a_prompt(tiny, tmp_path):
    lm = tiny("llama")
    task = PromptTask(lm, "{sentence} [T] [T] [P]", LABELS)
    with pytest.raises(UserError, match=r"2 \[T\] slots") as err:
        measure(task, TRAIN, DEV, _config())
    assert "\n" not in str(err.value) and "prompt=" in str(err.value)
    prompt = DiscretePrompt.from_ids(lm.tokenizer, [5, 6])
    r = measure(task, TRAIN, DEV, _config(dims=[10], baseline_score=0.5), prompt=prompt, out=tmp_path / "t",
                progress=False)
    assert r.trigger_ids == [5, 6] and torch.equal(r.tensors["trigger_ids"], torch.tensor([5, 6]))
    sample = data_mod.load(DEV).sample(12, 0)
    assert evaluate(task, sample, prompt=load_result(tmp_path / "t"))["accuracy"] == r.saved_run["score"]
    with pytest.raises(UserError, match="trigger tokens"):
        measure(task, TRAIN, DEV, _config(), prompt=DiscretePrompt.from_ids(lm.tokenizer, [5]))
    with pytest.raises(UserError, match="no \\[T\\] slots"):
        measure(PromptTask(lm, TEMPLATE, LABELS), TRAIN, DEV, _config(), prompt=prompt)


def test_package_0_1_artifact_loads_and_evaluates(tiny, tmp_path):
    """Format 1 kept the config as IntrinsicDimConfig fields + d, projection_seed, head_seed, D, n_tensors,
    with dims as a string and the model and data paths inside "task"."""
    task = PromptTask(tiny("llama"), TEMPLATE, LABELS)
    r = measure(task, TRAIN, DEV, _config(dims=[10, 20], baseline_score=0.5, seed=2), out=tmp_path / "new",
                progress=False)
    meta = json.loads((tmp_path / "new" / "config.json").read_text())
    cfg = {**meta["config"], "dims": "10,20", "d": r.saved_run["d"], "projection_seed": r.saved_run["seed"],
           "head_seed": 2, "D": r.D, "n_tensors": r.n_tensors}
    del cfg["seed"]
    old = {"method": "intrinsic_dim", "config": cfg, "seed": 2, "model": meta["model"],
           "task": {**meta["task"], "model": "tiny", "train": TRAIN, "dev": DEV}}
    (tmp_path / "new" / "config.json").write_text(json.dumps(old))
    results = json.loads((tmp_path / "new" / "results.json").read_text())
    for key in ("saved_run", "D", "n_tensors", "plot_path", "trigger_ids"):
        results.pop(key)
    (tmp_path / "new" / "results.json").write_text(json.dumps(results))
    loaded = load_result(tmp_path / "new")
    assert loaded.config.dims == [10, 20] and loaded.config.seed == 2 and loaded.D == r.D
    assert loaded.saved_run["seed"] == r.saved_run["seed"] and loaded.data["dev"]["source"] == DEV
    sample = data_mod.load(DEV).sample(12, 2)
    assert evaluate(task, sample, prompt=loaded)["accuracy"] == r.saved_run["score"]


# ----------------------------------------------------------------- command line
@pytest.mark.parametrize("args,fragments", [
    (["--dims", "0,10"], ["d must be at least 1"]),
    (["--dims", ","], ["--dims is empty"]),
    (["--projection", "gaussian"], ["--projection is 'gaussian'", "fastfood"]),
    (["--template", "{sentence} [T] [P]"], ["[T] slots", "remove [T]"]),
])
def test_cli_bad_options(cli, tiny_folder, tmp_path, args, fragments):
    assert_user_error(cli("intrinsic-dim", "--model", tiny_folder("llama"), "--out", tmp_path / "x", *args), *fragments)


def test_cli_params_matching_nothing_and_dense_refusal(cli, tiny_folder, tmp_path):
    model = tiny_folder("llama")
    assert_user_error(cli("intrinsic-dim", "--model", model, "--params", "no_such_tensor", "--out", tmp_path / "a"),
                      "--params", "matches no parameter")
    result = cli("intrinsic-dim", "--model", model, "--projection", "dense", "--dims", "1000",
                 "--max-projection-gib", "0.0001", "--baseline-score", "0.9", "--out", tmp_path / "b")
    assert_user_error(result, "dense projection", "--projection fastfood")


def test_cli_end_to_end_artifact_plot_and_evaluate(cli, tiny_folder, tmp_path):
    model, out = tiny_folder("llama"), tmp_path / "run"
    args = ["intrinsic-dim", "--model", model, "--dims", "5,40", "--steps", "4", "--baseline-steps", "4",
            "--seeds", "2", "--baseline-lr", "1e-2", "--no-progress", "--out", out, "--json"]
    first = cli(*args)
    assert first.exit_code == 0, first.output
    summary = json.loads(first.output.strip().splitlines()[-1])
    results = json.loads((out / "results.json").read_text())
    assert {"d90", "baseline", "runs", "per_dim", "d90_per_seed"} <= set(results) and len(results["runs"]) == 4
    assert summary["per_dim"] == results["per_dim"] and [r["d"] for r in summary["per_dim"]] == [5, 40]
    assert summary["d90"] == results["d90"] and summary["baseline"] == results["baseline_run"]["score"]
    assert summary["target"] == results["target"] and summary["D"] == results["D"] > 0
    assert summary["d90_range"] == f"{results['d90_min']}-{results['d90_max']}" and summary["projection"] == "fastfood"
    for row in summary["per_dim"]:
        scores = [r["score"] for r in results["runs"] if r["d"] == row["d"]]
        assert row["n_seeds"] == 2 and row["mean"] == statistics.fmean(scores) and row["max"] == max(scores)
    assert (out / "d90.png").stat().st_size > 1000 and results["plot_path"] == str(out / "d90.png")
    config = json.loads((out / "config.json").read_text())
    assert config["method"] == "intrinsic_dim" and config["config"]["projection"] == "fastfood"
    assert config["config"]["dims"] == [5, 40] and config["seed"] == 0
    again = cli(*args[:-3], "--out", tmp_path / "again", "--json")
    assert json.loads(again.output.strip().splitlines()[-1])["per_dim"] == summary["per_dim"]  # same seed
    scored = cli("evaluate", out, "--json")
    assert scored.exit_code == 0, scored.output
    assert json.loads(scored.output.strip().splitlines()[-1])["accuracy"] == results["saved_run"]["score"]


def test_cli_linear_head_with_said_prints_the_table_and_evaluates_the_same(cli, tiny_folder, tmp_path):
    out = tmp_path / "head"
    result = cli("intrinsic-dim", "--model", tiny_folder("bert"), "--head", "linear", "--said", "--params", "attention",
                 "--dims", "60", "--steps", "5", "--baseline-score", "0.01", "--no-plot", "--no-progress", "--out", out)
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    lines = result.output.strip().splitlines()
    header, row = lines[-2].split(), lines[-1].split()
    assert header[:6] == ["d90", "d90_range", "baseline", "target", "D", "projection"]
    summary = dict(zip(header, row))
    assert summary["D"] == str(results["D"]) and summary["baseline"] == "0.0100" and summary["target"] == "0.0090"
    assert summary["d90"] == str(results["d90"]) == "60" and summary["d90_range"] == "60-60"
    per_dim = lines[lines.index("accuracy per d (1 seed(s) each)") + 2].split()
    assert per_dim[0] == "60" and per_dim[1] == f"{results['per_dim'][0]['mean']:.4f}"
    assert not (out / "d90.png").exists()
    scored = cli("evaluate", out, "--json")
    assert json.loads(scored.output.strip().splitlines()[-1])["accuracy"] == results["saved_run"]["score"]


def test_registered_method():
    from frozen_lm.methods import methods
    from intrinsic_dim import fit

    method = methods()["intrinsic_dim"]
    assert method.fit is fit.fit and method.prepare is fit.prepare and method.config is IntrinsicDimConfig
    assert method.result is D90Result and method.command.name == "intrinsic-dim" and method.command.default
    assert method.trains == "weights" and method.resumable == ("plot", "max_projection_gib") and method.needs_dev
