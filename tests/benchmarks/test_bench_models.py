"""benchmarks/bench_models.py: which saved searches the joint part reuses (a tiny model, no data), and
how a transfer's drift record becomes the table's tokens_kept."""

from __future__ import annotations

import autoprompt
from autoprompt.config import AutoPromptConfig
from benchmarks.bench_models import finished
from benchmarks.models_tables import kept, proposer_suffix, seeds_table
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
