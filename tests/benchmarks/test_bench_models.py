"""benchmarks/bench_models.py: which saved searches the joint part reuses (a tiny model, no data), and
how a transfer's drift record becomes the table's tokens_kept; the joint prompt paired with each
model's own prompt (paired_gaps) and the committed rows that stand in for prompts not run now."""

from __future__ import annotations

import json

import pytest

import autoprompt
from autoprompt.config import AutoPromptConfig
from benchmarks.models_runs import finished, read_against, stand_ins
from benchmarks.models_tables import kept, paired_gaps, proposer_suffix, seeds_table
from frozen_lm import PromptTask

LABELS = {"0": "terrible", "1": "great"}
TRIG = "{sentence} [T] [T] [P]"
TRAIN, DEV = "demo:sentiment:train", "demo:sentiment:dev"


def test_a_finished_search_is_reused_only_with_the_same_config_and_models(tiny, tmp_path):
    task = PromptTask(tiny("llama"), TRIG, LABELS)
    cfg = AutoPromptConfig(iters=1, num_cand=2, eval_size=4, seed=3)
    one = autoprompt.search(task, TRAIN, DEV, cfg, progress=False, out=tmp_path / "one")
    both = autoprompt.search(task, TRAIN, DEV, cfg, progress=False, out=tmp_path / "both", models=[tiny("gpt2")])
    assert finished(tmp_path / "one", cfg, None).trigger_ids == one.trigger_ids
    assert finished(tmp_path / "both", cfg, [tiny("gpt2")]).trigger_ids == both.trigger_ids
    assert finished(tmp_path / "both", cfg, None) is None  # other models
    assert finished(tmp_path / "one", AutoPromptConfig(iters=2, num_cand=2, eval_size=4, seed=3), None) is None
    off = AutoPromptConfig(iters=1, num_cand=2, eval_size=4, seed=3, cross_gradients=False)
    assert finished(tmp_path / "both", off, [tiny("gpt2")]) is None  # a joint search of another config reruns
    assert finished(tmp_path / "one", off, None) is not None  # ... a one-model search is the same without it
    assert finished(tmp_path / "missing", cfg, None) is None
    equal = AutoPromptConfig(iters=1, num_cand=2, eval_size=4, seed=3, gradient_mix="turns")
    assert finished(tmp_path / "both", equal, [tiny("gpt2")]) is None and finished(tmp_path / "one", equal, None)


def test_a_run_saved_before_an_option_existed_counts_as_its_default(tiny, tmp_path):
    task = PromptTask(tiny("llama"), TRIG, LABELS)
    cfg = AutoPromptConfig(iters=1, num_cand=2, eval_size=4, seed=3)
    autoprompt.search(task, TRAIN, DEV, cfg, progress=False, out=tmp_path / "both", models=[tiny("gpt2")])
    saved = json.loads((tmp_path / "both" / "config.json").read_text())
    del saved["config"]["gradient_mix"]  # as a run of an older version wrote it
    (tmp_path / "both" / "config.json").write_text(json.dumps(saved))
    assert finished(tmp_path / "both", cfg, [tiny("gpt2")]) is not None  # the default is what it ran with
    equal = AutoPromptConfig(iters=1, num_cand=2, eval_size=4, seed=3, gradient_mix="turns")
    assert finished(tmp_path / "both", equal, [tiny("gpt2")]) is None


def test_kept_reads_a_transfer_drift_record():
    drift = {"how": "slots", "n_tokens_before": 5, "n_tokens_after": 7, "n_one_token": 3}
    assert kept(drift) == {"tokens": "5->7", "tokens_kept": 0.6}
    assert kept(None) == {} and kept({"how": "text", "n_tokens_before": 0}) == {}


def test_seeds_table_gives_each_split_and_prompt_its_spread_over_seeds():
    rows = [{"prompt": "joint", "split": 13, "seed": s, "a": acc, "b": 0.5} for s, acc in ((13, 0.70), (1, 0.80), (2, 0.75))]
    rows.append({"prompt": "b", "split": 13, "seed": 13, "a": 0.6, "b": 0.9})
    table = seeds_table(rows, ["a", "b"])
    assert [(r["split"], r["prompt"], r["seeds"]) for r in table] == [(13, "joint", 3), (13, "b", 1)]
    joint = table[0]
    assert (joint["a mean"], joint["a min"], joint["a max"], joint["a sd"]) == (75.0, 70.0, 80.0, 5.0)
    assert joint["b sd"] == 0.0 and table[1]["a sd"] is None  # one seed: no spread


def test_the_other_model_proposing_names_its_own_files():
    default = ["smollm2-135m", "gemma3-270m"]
    assert proposer_suffix(default, default) == ("", "")
    assert proposer_suffix(["/models/smollm2-135m", "gemma3-270m"], default) == ("", "")  # a folder: its last part
    assert proposer_suffix(["gemma3-270m", "smollm2-135m"], default) == ("_gemma3-270m_proposes",
                                                                        ", gemma3-270m proposing")


def run(prompt, split, seed, a, b):
    return {"prompt": prompt, "split": split, "seed": seed, "a": a, "b": b}


def test_paired_gaps_compare_the_joint_prompt_with_each_own_prompt_by_split_and_seed():
    rows = [run("a", 13, 13, 0.80, 0.50), run("joint", 13, 13, 0.75, 0.60),
            run("a", 13, 1, 0.70, 0.50), run("joint", 13, 1, 0.69, 0.55), run("joint", 21, 21, 0.1, 0.1)]
    lines = paired_gaps(rows, ["a", "b"])
    assert len(lines) == 1  # no prompt searched on b alone
    assert "2 paired searches: on a 72.0 vs 75.0, gap 3.0 +- 2.0 (se; sd 2.8) (more than 2 points below)" in lines[0]
    assert "on b 57.5 vs 50.0 (beats it)" in lines[0]
    close = paired_gaps(rows[2:4], ["a", "b"])[0]
    assert "gap 1.0 (within 2 points)" in close


def test_stand_ins_fill_the_prompts_not_run_now_from_a_committed_file(tmp_path):
    path = tmp_path / "models_joint_seeds.json"
    per_run = [run("a", 13, 13, 0.8, 0.5), run("joint", 13, 13, 0.7, 0.6), run("a", 13, 1, 0.7, 0.5),
               run("a", 21, 21, 0.9, 0.5)]
    path.write_text(json.dumps({"tables": {"per run": per_run}}))
    now = [run("joint", 13, 13, 0.75, 0.6)]
    got = stand_ins(*read_against(str(path), ["a", "b"]), now, [13], ["split", "1"])
    assert [(r["prompt"], r["split"], r["seed"]) for r in got] == [("a", 13, 13), ("a", 13, 1)]  # not split 21, not joint
    assert {r["from"] for r in got} == {"models_joint_seeds.json"}
    with pytest.raises(SystemExit, match="no columns for a, c"):
        read_against(str(path), ["a", "c"])
    with pytest.raises(SystemExit, match="--against: .* 'per run' table"):
        read_against(str(tmp_path / "missing.json"), ["a", "b"])


def test_the_estimate_counts_only_the_searches_asked_for():
    from benchmarks.bench_models import minutes

    names = ["smollm2-135m", "gemma3-270m", "joint"]
    assert minutes("joint", names, ["split"], names) == 45  # all three searches: the measured 45 per split
    assert minutes("joint", ["joint"], ["split", "1"], names) == 48  # the joint search alone, two seeds
    assert minutes("d90", ["joint"], ["split"], names) == 13


def test_the_joint_search_starts_from_a_models_own_prompt_of_the_same_split_and_seed():
    from benchmarks.models_runs import start_text

    rows = [{"prompt": "a", "split": 13, "seed": 13, "text": "x y {sentence} It was [P] ."}]
    lent = ("seeds.json", [{"prompt": "a", "split": 21, "seed": 1, "text": "z {sentence} It was [P] ."},
                           {"prompt": "a", "split": 13, "seed": 13, "text": "not this one"}])
    assert start_text(rows, lent, "a", 13, 13) == "x y {sentence} It was [P] ."  # this run's own first
    assert start_text(rows, lent, "a", 21, 1) == "z {sentence} It was [P] ."  # else the committed file's
    with pytest.raises(SystemExit, match="--start-from a: no a search on split 42 with seed 42"):
        start_text(rows, lent, "a", 42, 42)


def test_the_joint_options_name_the_folders_and_files():
    from types import SimpleNamespace

    from benchmarks.models_runs import joint_variant

    assert joint_variant(SimpleNamespace(gradient_mix="sum", score_mix="mean", start_from=None)) == ("", "", "")
    both = joint_variant(SimpleNamespace(gradient_mix="turns", score_mix="worst", start_from="gemma3-270m"))
    assert both[:2] == ("-turns-worst-from-gemma3-270m", "_turns_mix_worst_score_from_gemma3-270m")
    assert both[2] == ", gradient_mix turns, score_mix worst, the joint search starting from gemma3-270m's prompt"
