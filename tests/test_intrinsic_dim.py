"""Intrinsic dimension: projections, subspace maths, training, the d90 sweep and the CLI (tiny models)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import assert_user_error

from frozen_lm import data as data_mod
from frozen_lm.errors import UserError
from frozen_lm.task import PromptTask
from intrinsic_dim.config import IntrinsicDimConfig
from intrinsic_dim.memory import check_projection
from intrinsic_dim.objective import Objective
from intrinsic_dim.params import select_names
from intrinsic_dim.projections import PROJECTIONS, make_projection
from intrinsic_dim.projections.fastfood import fwht, hadamard
from intrinsic_dim.subspace import Subspace
from intrinsic_dim.sweep import log_grid, run_sweep
from intrinsic_dim.train import Settings, optimize, train_full, train_subspace

KINDS = list(PROJECTIONS)


# ----------------------------------------------------------------- projections
@pytest.mark.parametrize("n", [1, 2, 8, 64, 1024])
def test_fwht_is_the_hadamard_matrix(n):
    x = torch.randn(3, n, dtype=torch.float64)
    assert torch.allclose(fwht(x), x @ hadamard(n, torch.float64), atol=1e-9)


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_same_projection(kind):
    a, b = make_projection(kind, 300, 20, seed=5).matrix(), make_projection(kind, 300, 20, seed=5).matrix()
    assert torch.equal(a, b)
    assert not torch.equal(a, make_projection(kind, 300, 20, seed=6).matrix())


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("D,d", [(1000, 10), (37, 37), (600, 130)])
def test_forward_transpose_and_autograd_agree_with_the_matrix(kind, D, d):
    proj = make_projection(kind, D, d, seed=1)
    m = proj.matrix().double()
    x, g = torch.randn(d), torch.randn(D)
    assert torch.allclose(proj.forward(x).double(), m @ x.double(), atol=1e-5)
    assert torch.allclose(proj.transpose(g).double(), m.T @ g.double(), atol=1e-4)
    x.requires_grad_(True)
    proj(x).backward(g)
    assert torch.allclose(x.grad.double(), m.T @ g.double(), atol=1e-4)


@pytest.mark.parametrize("kind", KINDS)
def test_norms_are_kept_in_expectation(kind):
    D, d, x = 2000, 50, torch.randn(50)
    ratios = [(make_projection(kind, D, d, seed=s).forward(x).norm() / x.norm()).item() ** 2 for s in range(40)]
    assert abs(sum(ratios) / len(ratios) - 1) < 0.05


def test_fastfood_memory_is_linear_in_D_not_D_times_d():
    from intrinsic_dim.projections import memory_bytes

    assert memory_bytes("fastfood", 10**8, 10**4) < 20 * 1.1 * 10**8  # a few floats per parameter
    assert memory_bytes("dense", 10**8, 10**4) == 4 * 10**12
    proj = make_projection("fastfood", 5000, 100, seed=0)
    held = sum(t.numel() for t in (proj.signs, proj.perm, proj.gauss))
    assert held < 2 * 5000  # no D x d matrix


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
    task = PromptTask(lm, "{sentence} It was [P] .", "0=terrible,1=great")
    encoded = task.encode(data_mod.load("demo:sentiment:train").sample(rows, 0)).rows
    return task, encoded


def test_at_d_equal_D_an_orthogonal_projection_matches_full_training(tiny):
    lm = tiny("llama")
    task, rows = _tiny_task(lm)
    objective = Objective(task)
    base = objective.base(select_names(list(lm.named_parameters()), r"layers\.0\.(self_attn\.v_proj|input_layernorm)"))
    D = sum(t.numel() for t in base.values())
    settings = Settings(steps=5, batch_size=4, lr=0.5, optimizer="sgd", seed=0)
    full = train_full(objective, base, settings, rows, rows)
    sub = train_subspace(objective, base, "dense", D, 0, settings, rows, rows, orthogonal=True)
    flat = make_projection("dense", D, D, 0, orthogonal=True).forward(sub.tensors["theta_d"])
    moved = torch.cat([(full.tensors[k] - base[k]).reshape(-1) for k in base])
    assert moved.abs().max() > 1e-3  # training did move the weights
    assert torch.allclose(flat, moved, atol=1e-5)
    assert sub.score == full.score and math.isclose(sub.loss, full.loss, rel_tol=1e-5)


@pytest.mark.parametrize("head,said", [("none", True), ("linear", False)])
def test_frozen_weights_are_bit_identical_after_training(tiny, head, said):
    lm = tiny("bert")
    before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    task, rows = _tiny_task(lm, 8)
    objective = Objective(task, head=head)
    base = objective.base(select_names(list(lm.named_parameters()), "all"))
    settings = Settings(steps=3, batch_size=4, lr=0.1, seed=0)
    d = len(base) + 20 if said else 20
    train_subspace(objective, base, "fastfood", d, 0, settings, rows, rows, said=said)
    train_full(objective, base, Settings(steps=2, batch_size=4, lr=1e-2), rows, rows)
    after = lm.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(p.requires_grad for p in lm.model.parameters())


def test_same_seed_same_run(tiny):
    lm = tiny("llama")
    task, rows = _tiny_task(lm, 8)
    objective = Objective(task, head="linear", seed=3)
    base = objective.base(select_names(list(lm.named_parameters()), "mlp"))
    runs = [train_subspace(objective, base, "fastfood", 30, 1, Settings(steps=4, batch_size=4, lr=0.05), rows, rows)
            for _ in range(2)]
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

        def loss_fn(v, _):
            return (q @ (space.params(**v)["w"] - target)).square().sum()

        optimize(values, loss_fn, 1, Settings(steps=300, batch_size=1, lr=0.1, seed=seed))
        with torch.no_grad():
            return 1 - float(loss_fn(values, None)) / loss0

    sweep = run_sweep(score, baseline=1.0, seeds=2, max_dim=D, bisect_steps=4)
    assert 0.75 * k <= sweep.d90() <= 1.25 * k, sweep.summary()
    assert all(0.6 * k <= d <= 1.4 * k for d in sweep.d90_per_seed())


def test_sweep_grid_bisection_and_report():
    assert log_grid(5000) == [10, 30, 100, 300, 1000, 3000, 5000]
    assert log_grid(1000, min_dim=50) == [100, 300, 1000]
    sweep = run_sweep(lambda d, s: min(1.0, d / 200), baseline=1.0, max_dim=10_000, bisect_steps=8)
    assert sweep.d90() == 180 and max(sweep.dims) == 300
    explicit = run_sweep(lambda d, s: [0.5, 0.9][s] * (d >= 30), baseline=1.0, dims=[10, 30, 100], seeds=2,
                         threshold=0.8)
    report = explicit.report()
    assert report["d90"] is None and report["d90_per_seed"] == [None, 30]
    assert [r["d"] for r in report["per_dim"]] == [10, 30, 100]


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
    ({"dims": "0,10"}, "at least 1"), ({"dims": " , "}, "empty"), ({"projection": "gaussian"}, "unknown projection"),
    ({"threshold": 1.5}, "threshold"), ({"dims": "10,abc"}, "whole number")])
def test_config_validation(options, fragment):
    with pytest.raises(UserError, match=fragment):
        IntrinsicDimConfig(**options)


# ----------------------------------------------------------------- command line
@pytest.mark.parametrize("args,fragments", [
    (["--dims", "0,10"], ["d must be at least 1"]),
    (["--dims", ","], ["--dims is empty"]),
    (["--projection", "gaussian"], ["unknown projection", "fastfood"]),
])
def test_cli_bad_options(cli, tiny_folder, args, fragments):
    assert_user_error(cli("intrinsic-dim", "--model", tiny_folder("llama"), *args), *fragments)


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
            "--seeds", "2", "--baseline-lr", "1e-2", "--out", out, "--json"]
    first = cli(*args)
    assert first.exit_code == 0, first.output
    summary = json.loads(first.output.strip().splitlines()[-1])
    assert [r["d"] for r in summary["per_dim"]] == [5, 40] and summary["per_dim"][0]["n_seeds"] == 2
    results = json.loads((out / "results.json").read_text())
    assert {"d90", "baseline", "runs", "per_dim", "d90_per_seed"} <= set(results) and len(results["runs"]) == 4
    assert (out / "d90.png").stat().st_size > 1000
    config = json.loads((out / "config.json").read_text())
    assert config["method"] == "intrinsic_dim" and config["config"]["projection"] == "fastfood"
    again = cli(*args[:-3], "--out", tmp_path / "again", "--json")
    assert json.loads(again.output.strip().splitlines()[-1])["per_dim"] == summary["per_dim"]  # same seed
    scored = cli("evaluate", out, "--json")
    assert scored.exit_code == 0, scored.output
    assert json.loads(scored.output.strip().splitlines()[-1])["accuracy"] == results["saved_run"]["score"]


def test_cli_linear_head_with_said_evaluates_the_same(cli, tiny_folder, tmp_path):
    out = tmp_path / "head"
    result = cli("intrinsic-dim", "--model", tiny_folder("bert"), "--head", "linear", "--said", "--params", "attention",
                 "--dims", "60", "--steps", "5", "--baseline-score", "0.5", "--no-plot", "--out", out)
    assert result.exit_code == 0, result.output
    assert "d90" in result.output
    results = json.loads((out / "results.json").read_text())
    scored = cli("evaluate", out, "--json")
    assert json.loads(scored.output.strip().splitlines()[-1])["accuracy"] == results["saved_run"]["score"]
