"""Intrinsic dimension in prompt and prefix space and CMA-ES (tiny models, planted problems; the honest
d90: test_intrinsic_dim_honest.py)."""

from __future__ import annotations

import json
import math
import sys

import pytest
import torch

from frozen_lm import data as data_mod
from frozen_lm.errors import UserError
from frozen_lm.evaluate import evaluate
from frozen_lm.results import load_result
from frozen_lm.task import PromptTask
from frozen_lm.train import TrainSettings, batches
from intrinsic_dim import D90Result, IntrinsicDimConfig, measure
from intrinsic_dim.cma import CMASettings, default_popsize, run_cma, sigma_in_z, theta_std, train_cma
from intrinsic_dim.config import BASELINE_LR, CMA_MAX_DIM
from intrinsic_dim.plot import plot_curves
from intrinsic_dim.projections import make_projection
from intrinsic_dim.spaces import PromptObjective, make_objective
from intrinsic_dim.subspace import Subspace
from intrinsic_dim.sweep import run_sweep
from intrinsic_dim.train import examples_seen, steps_within, train_subspace
from tests.conftest import assert_user_error, need_cmaes

TEMPLATE, LABELS = "{sentence} It was [P] .", "0=terrible,1=great"
TRAIN, DEV = "demo:sentiment:train", "demo:sentiment:dev"


def _config(**changes) -> IntrinsicDimConfig:
    values = dict(space="prompt", num_virtual_tokens=4, dims=[5, 40], steps=3, baseline_steps=3, batch_size=4,
                  max_train=12, max_dev=12, plot=False)
    return IntrinsicDimConfig(**{**values, **changes})


def _rows(task, n=8, source=TRAIN):
    return task.encode(data_mod.load(source).sample(n, 0)).rows


# ----------------------------------------------------------------- options
@pytest.mark.parametrize("options,fragment", [
    ({"space": "weights"}, "IntrinsicDimConfig.space is 'weights'"),
    ({"space": "prompt", "params": "attention"}, "IntrinsicDimConfig.params picks model weights"),
    ({"space": "prompt", "said": True}, "IntrinsicDimConfig.said"),
    ({"space": "prefix", "said": True}, "does not apply"),
    ({"space": "prefix", "head": "linear"}, "IntrinsicDimConfig.head linear"),
    ({"num_virtual_tokens": 4}, "IntrinsicDimConfig.num_virtual_tokens is for IntrinsicDimConfig.space prompt or prefix"),
    ({"space": "prompt", "num_virtual_tokens": 0}, "at least 1"),
    ({"optimizer": "cma", "said": True}, "SAID scales train by gradient"),
    ({"optimizer": "cma", "dims": [10, CMA_MAX_DIM + 1]}, "d x d covariance"),
    ({"popsize": 1}, "IntrinsicDimConfig.popsize"), ({"min_gain": -0.1}, "IntrinsicDimConfig.min_gain"),
    ({"sigma": 0}, "IntrinsicDimConfig.sigma"), ({"max_forward_passes": 0}, "IntrinsicDimConfig.max_forward_passes"),
    ({"space": "prompt", "init": "words"}, "IntrinsicDimConfig.init"),
])
def test_config_refuses_bad_combinations(options, fragment):
    with pytest.raises(UserError, match=fragment) as err:
        IntrinsicDimConfig(**options)
    assert "\n" not in str(err.value)


def test_config_defaults_by_space():
    for space, lr in BASELINE_LR.items():
        cfg = IntrinsicDimConfig(space=space)
        assert cfg.baseline_lr == lr and cfg.space == space and cfg.min_gain == 0.05
    assert IntrinsicDimConfig(space="prompt").sigma_relative == 1.0
    assert IntrinsicDimConfig(sigma=0.3).sigma_relative == 0.3
    assert IntrinsicDimConfig(baseline_lr=1e-2, space="prompt").baseline_lr == 1e-2


def test_forward_pass_counting_follows_the_batch_stream():
    n, size = 10, 4  # epochs of batches 4, 4, 2
    stream = batches(n, size, seed=3)
    seen = [len(next(stream)) for _ in range(7)]
    assert [examples_seen(n, size, s) for s in range(8)] == [0, *[sum(seen[:i]) for i in range(1, 8)]]
    assert steps_within(None, 50, n, size) == 50
    assert steps_within(20, 50, n, size) == 6 and steps_within(19, 50, n, size) == 5 and examples_seen(n, size, 5) == 18
    assert steps_within(20, 50, n, size, per_example=10) == 0 and steps_within(40, 50, n, size, per_example=10) == 1


# ----------------------------------------------------------------- a planted prompt-space problem
class _OneRow:
    """Stands in for encoded rows: the planted loss reads no data."""

    def __len__(self):
        return 1

    def subset(self, index):
        return self


class PlantedPrompt:
    """A prompt theta (K, H) whose loss ||Q (theta - theta*)||^2 depends only on a known k-dim subspace
    (Q (k, D) orthonormal rows); its score is the share of the starting loss removed."""

    def __init__(self, K: int, H: int, k: int, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.q = torch.linalg.qr(torch.randn(K * H, k, generator=g))[0].T
        self.theta_0, self.target = torch.randn(K, H, generator=g), torch.randn(K, H, generator=g)
        self.loss_0 = float(self.loss({"prompt": self.theta_0}))
        self.lm = type("CPU", (), {"device": torch.device("cpu")})()

    def base(self):
        return {"prompt": self.theta_0}

    def loss(self, params, rows=None):
        return (self.q @ (params["prompt"] - self.target).reshape(-1)).square().sum()

    def metrics(self, params, rows, batch_size):
        return {"score": 1 - float(self.loss(params)) / self.loss_0}

    def population_loss(self, space, thetas, rows, rows_per_pass=32):
        return torch.stack([self.loss(space.params(t)) for t in thetas])


def test_planted_prompt_space_problem_measures_d90_near_k():
    """A random d-dim subspace of the prompt removes about min(d, k) / k of the planted loss, so d90 lies
    near k: the same training path (train_subspace on the shared Trainer) and sweep as measure's."""
    K, H, k = 8, 64, 40
    planted, one = PlantedPrompt(K, H, k), _OneRow()

    def score(d: int, seed: int) -> float:
        settings = TrainSettings(steps=300, batch_size=1, lr=0.1, seed=seed, optimizer="adam")
        return train_subspace(planted, planted.base(), "fastfood", d, seed, settings, one, one).score

    sweep = run_sweep(score, baseline=1.0, seeds=2, max_dim=K * H, bisect_steps=4)
    assert 0.75 * k <= sweep.d90() <= 1.25 * k, sweep.summary()


def test_cma_es_solves_a_planted_quadratic_in_a_few_generations():
    need_cmaes("cma")
    target = torch.tensor([0.8, -0.5, 0.3, 0.6, -0.9])
    calls = []

    def population_loss(thetas, index):
        calls.append((thetas.shape, len(index)))
        return (thetas - target).square().sum(1)

    s = CMASettings(generations=40, batch_size=3, sigma=0.5, popsize=8, seed=1)
    res = run_cma(population_loss, 5, n_examples=3, s=s)
    assert float((res.mean - target).square().sum()) < 1e-3 * float(target.square().sum())
    assert res.generations == 40 and res.forward_passes == 40 * 8 * 3 and calls[0] == (torch.Size([8, 5]), 3)
    assert res.history[-1]["best_loss"] < res.history[0]["best_loss"] / 100
    again = run_cma(population_loss, 5, n_examples=3, s=s)
    assert torch.equal(again.mean, res.mean)  # seeded
    stopped = run_cma(population_loss, 5, 3, s, callback=lambda e: e.step == 2)
    assert stopped.generations == 2 and stopped.stopped == "callback"


def test_cma_run_on_the_planted_prompt_beats_its_start():
    need_cmaes("cma")
    planted, one = PlantedPrompt(4, 16, 8), _OneRow()
    D, d = 64, 16
    sigma = sigma_in_z(0.2, theta_std(planted.base()), D, d)
    run = train_cma(planted, planted.base(), "dense", d, 0, CMASettings(60, 1, sigma, default_popsize(d), 0), one, one)
    assert run.score > 0.2 and run.optimizer == "cma" and run.forward_passes == 60 * default_popsize(d)
    assert run.tensors["theta_d"].shape == (d,) and len(run.losses) == 60


# ----------------------------------------------------------------- prompt and prefix space on tiny models
@pytest.mark.parametrize("kind,space", [("llama", "prompt"), ("gpt2", "prefix"), ("bert", "prompt"), ("llama", "prefix"),
                                        ("bert", "prefix")])
def test_population_loss_equals_each_candidates_loss(tiny, kind, space):
    task = PromptTask(tiny(kind), TEMPLATE, LABELS)
    objective, base = make_objective(task, _config(space=space))
    rows = _rows(objective.task, 6)
    D = sum(t.numel() for t in base.values())
    sub = Subspace(base, make_projection("fastfood", D, 7, seed=0))
    thetas = torch.randn(5, 7) * 3
    with torch.no_grad():
        single = torch.stack([objective.loss(sub.params(t), rows) for t in thetas])
        together = objective.population_loss(sub, thetas, rows, rows_per_pass=12)  # 2 candidates per pass
    assert torch.allclose(together, single, atol=1e-5), (together, single)


def test_model_space_population_loss(tiny):
    task = PromptTask(tiny("llama"), TEMPLATE, LABELS)
    objective, base = make_objective(task, IntrinsicDimConfig(params="mlp"))
    rows = _rows(task, 4)
    sub = Subspace(base, make_projection("sparse", sum(t.numel() for t in base.values()), 6, seed=0))
    thetas = torch.randn(3, 6)
    with torch.no_grad():
        assert torch.allclose(objective.population_loss(sub, thetas, rows),
                              torch.stack([objective.loss(sub.params(t), rows) for t in thetas]))


def test_theta_0_is_tunes_init(tiny):
    from frozen_lm.methods import methods
    from frozen_lm.runner import run

    task = PromptTask(tiny("llama"), TEMPLATE, LABELS)
    prompt_tuning = methods()["prompt"]  # (through the registry: no method package imports another)
    tuned = run(prompt_tuning, task, TRAIN, DEV, prompt_tuning.config(num_virtual_tokens=4, steps=1, seed=7),
                progress=False)
    objective, base = make_objective(task, _config(seed=7))
    assert torch.equal(base["prompt"], tuned.tensors["init_embeddings"]) and objective.init_ids == tuned.init_ids
    assert objective.task.spec.template == "[T]" * 4 + TEMPLATE


@pytest.mark.parametrize("space,optimizer", [("prompt", "adam"), ("prompt", "cma"), ("prefix", "cma")])
def test_prompt_space_training_leaves_the_weights_bit_identical(tiny, space, optimizer):
    need_cmaes(optimizer)
    lm = tiny("llama")
    before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    r = measure(PromptTask(lm, TEMPLATE, LABELS), TRAIN, DEV, _config(space=space, optimizer=optimizer), progress=False)
    assert r.baseline_run["optimizer"] == "adam" and all(x["optimizer"] == optimizer for x in r.runs)
    after = lm.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(p.requires_grad for p in lm.model.parameters())


@pytest.mark.parametrize("kind,space,optimizer", [("llama", "prompt", "adam"), ("gpt2", "prefix", "adam"),
                                                  ("bert", "prompt", "cma"), ("llama", "prefix", "cma")])
def test_save_load_and_evaluate_equal_the_saved_run(tiny, tmp_path, kind, space, optimizer):
    need_cmaes(optimizer)
    task = PromptTask(tiny(kind), TEMPLATE, LABELS)
    cfg = _config(space=space, optimizer=optimizer, dims=[30], baseline_score=0.5, projection="sparse")
    r = measure(task, TRAIN, DEV, cfg, out=tmp_path / "run", progress=False)
    assert r.D == r.tensors["theta_0"].numel() and r.n_tensors == 1
    assert r.template == ("[T]" * 4 + TEMPLATE if space == "prompt" else TEMPLATE)  # a prefix reserves positions
    loaded = load_result(tmp_path / "run")
    assert type(loaded) is D90Result and loaded.config == cfg and loaded.space == space
    assert torch.equal(loaded.tensors["theta_0"], r.tensors["theta_0"].cpu()) and loaded.template == r.template
    sample = data_mod.load(DEV).sample(cfg.max_dev, cfg.seed)
    assert evaluate(task, sample, prompt=loaded)["accuracy"] == r.saved_run["score"]
    assert evaluate(task, sample, prompt=r)["accuracy"] == r.saved_run["score"]
    eff = task.derive(template=r.template, reserved_positions=4 if space == "prefix" else 0)
    assert evaluate(eff, sample, prompt=loaded)["accuracy"] == r.saved_run["score"]  # the effective task too


def test_same_seed_same_run_and_forward_passes_are_counted(tiny):
    need_cmaes("cma")
    task = PromptTask(tiny("llama"), TEMPLATE, LABELS)
    cfg = _config(optimizer="cma", dims=[10], baseline_score=0.5, popsize=6, steps=4)
    runs = [measure(task, TRAIN, DEV, cfg, progress=False) for _ in range(2)]
    assert torch.equal(runs[0].tensors["theta_d"], runs[1].tensors["theta_d"])
    assert runs[0].runs[0]["score"] == runs[1].runs[0]["score"]
    assert runs[0].forward_passes == runs[0].runs[0]["forward_passes"] == 6 * examples_seen(12, 4, 4)
    budget = measure(task, TRAIN, DEV, _config(optimizer="cma", dims=[10], baseline_score=0.5, popsize=6, steps=50,
                                               max_forward_passes=100), progress=False)
    assert budget.runs[0]["steps"] == 4 and budget.forward_passes == 96  # cut to fit: 4 generations x 6 x 4
    grad = measure(task, TRAIN, DEV, _config(dims=[10], baseline_score=0.5, steps=50, max_forward_passes=30),
                   progress=False)
    assert grad.runs[0]["steps"] == 7 and grad.forward_passes == 28
    with pytest.raises(UserError, match="less than one step"):
        measure(task, TRAIN, DEV, _config(optimizer="cma", dims=[10], popsize=6, max_forward_passes=10))


def test_callback_gets_cma_generations_and_stops(tiny):
    need_cmaes("cma")
    task = PromptTask(tiny("llama"), TEMPLATE, LABELS)
    events = []

    def stop_in_first_run(event):
        events.append(event)
        return event.kind == "step" and event.stage == "d=5 seed=0" and event.step == 2

    r = measure(task, TRAIN, DEV, _config(optimizer="cma", steps=5), callback=stop_in_first_run, progress=False)
    steps = [e for e in events if e.kind == "step" and e.stage == "d=5 seed=0"]
    assert [e.step for e in steps] == [1, 2] and steps[0].total == 5
    assert {"loss", "best_loss", "sigma", "forward_passes"} <= set(steps[0].metrics)
    assert r.status == "stopped" and r.runs[0]["stopped"] and r.runs[0]["steps"] == 2 and r.per_dim == []


def test_space_needs_its_task(tiny):
    lm = tiny("llama")
    with pytest.raises(UserError, match="no \\[T\\] slots"):
        measure(PromptTask(lm, TEMPLATE, LABELS), TRAIN, DEV, _config(num_virtual_tokens=None))
    with pytest.raises(UserError, match="trains the prompt itself"):
        measure(PromptTask(lm, "{sentence} [T] [P]", LABELS), TRAIN, DEV, _config(num_virtual_tokens=None),
                prompt="great")
    with pytest.raises(UserError, match="more than the 128 numbers"):
        measure(PromptTask(lm, TEMPLATE, LABELS), TRAIN, DEV, _config(dims=[500]))
    r = measure(PromptTask(lm, "{sentence} [T] [T] [P]", LABELS), TRAIN, DEV,
                _config(num_virtual_tokens=None, dims=[3], baseline_score=0.5), progress=False)
    assert r.D == 2 * lm.hidden_size and r.template == "{sentence} [T] [T] [P]"


def test_a_saved_theta_0_must_fit_the_model_and_template(tiny):
    lm = tiny("llama")
    task = PromptTask(lm, "{sentence} [T] [T] [P]", LABELS)
    assert PromptObjective(task, "prompt", theta_0=torch.zeros(2, lm.hidden_size)).base()["prompt"].shape == (2, 32)
    with pytest.raises(UserError, match="does not fit 2 \\[T\\] slots"):
        PromptObjective(task, "prompt", theta_0=torch.zeros(3, lm.hidden_size))
    with pytest.raises(UserError, match="does not fit 2 layers"):
        PromptObjective(task, "prefix", theta_0=torch.zeros(2, 2, 2, 3, 8))


def test_missing_cmaes_is_one_line(tiny, monkeypatch):
    monkeypatch.setitem(sys.modules, "cmaes", None)  # import cmaes -> ImportError
    with pytest.raises(UserError, match="pip install cmaes") as err:
        measure(PromptTask(tiny("llama"), TEMPLATE, LABELS), TRAIN, DEV, _config(optimizer="cma"))
    assert "\n" not in str(err.value)


def test_plot_draws_chance_and_theta_0_lines_and_curves_per_space(tmp_path):
    r = D90Result(method="intrinsic_dim", config=_config(), task=None, model={"name": "tiny"}, per_dim=[
        {"d": 5, "mean": 0.5, "min": 0.4, "max": 0.6}, {"d": 40, "mean": 0.7, "min": 0.7, "max": 0.7}],
        baseline=0.6, target=0.54, majority=0.5, manual=0.55, d90_refused={"reason": "x"})
    assert r.plot(tmp_path / "one.png").stat().st_size > 1000
    curves = [{"label": s, "per_dim": r.per_dim, "baseline": 0.8, "d90": 40} for s in ("prompt", "prefix", "model")]
    assert plot_curves(curves, tmp_path / "all.png", majority=0.5).stat().st_size > 1000


# ----------------------------------------------------------------- command line
def test_cli_prompt_space_end_to_end_and_evaluate(cli, tiny_folder, tmp_path):
    need_cmaes("cma")
    out = tmp_path / "p"
    result = cli("intrinsic-dim", "--model", tiny_folder("llama"), "--space", "prompt", "--num-virtual-tokens", "3",
                 "--dims", "5,20", "--steps", "3", "--baseline-steps", "3", "--optimizer", "cma", "--popsize", "5",
                 "--no-progress", "--out", out, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    results = json.loads((out / "results.json").read_text())
    assert summary["space"] == "prompt" and summary["optimizer"] == "cma" and summary["D"] == 3 * 32
    assert summary["chance"] == results["majority"] and summary["manual"] == results["manual"]
    assert summary["forward_passes"] == results["forward_passes"] > 0
    assert results["template"] == "[T][T][T]{sentence} It was [P] ." and (out / "d90.png").exists()
    scored = cli("evaluate", out, "--json")
    assert scored.exit_code == 0, scored.output
    assert json.loads(scored.output.strip().splitlines()[-1])["accuracy"] == results["saved_run"]["score"]


@pytest.mark.parametrize("args,fragments", [
    (["--space", "prompt", "--params", "mlp"], ["--params picks model weights"]),
    (["--space", "prompt", "--said"], ["--said", "does not apply"]),
    (["--optimizer", "cma", "--dims", "5000"], ["d x d covariance", f"{CMA_MAX_DIM:,}"]),
    (["--space", "prompt", "--template", TEMPLATE], ["no [T] slots", "--num-virtual-tokens"]),
    (["--num-virtual-tokens", "3"], ["--space prompt or prefix"]),
])
def test_cli_bad_combinations(cli, tiny_folder, tmp_path, args, fragments):
    assert_user_error(cli("intrinsic-dim", "--model", tiny_folder("llama"), "--out", tmp_path / "x", *args), *fragments)


def test_cli_help_explains_the_new_options(cli):
    text = " ".join(cli("intrinsic-dim", "--help").output.split())
    for option in ("--space [model|prompt|prefix]", "--optimizer [adam|sgd|cma]", "--popsize", "--sigma",
                   "--max-forward-passes", "--min-gain", "--num-virtual-tokens", "--init", "pip install cmaes"):
        assert option in text, option


def test_benchmark_spaces_helpers():
    from benchmarks.bench_intrinsic_dim import aggregate, cut_plan

    runs = [{"per_dim": [{"d": 10, "mean": 0.5}, {"d": 100, "mean": 0.8}], "baseline": 0.8, "d90": 100,
             "majority": 0.5},
            {"per_dim": [{"d": 10, "mean": 0.7}, {"d": 100, "mean": 0.9}], "baseline": 0.9, "d90": 10, "majority": 0.5}]
    curve = aggregate("prompt", runs)
    assert curve["label"] == "prompt" and [r["d"] for r in curve["per_dim"]] == [10, 100]
    assert curve["per_dim"][0]["mean"] == pytest.approx(0.6) and curve["per_dim"][0]["min"] == 0.5
    assert curve["baseline"] == pytest.approx(0.85) and curve["d90"] == 100  # d90 of the mean curve
    plan = cut_plan()
    assert set(plan) == {"prompt", "prefix", "model", "cma"} and all(math.isfinite(p["minutes"]) for p in plan.values())
    assert 60 <= sum(p["minutes"] for p in plan.values()) <= 95
