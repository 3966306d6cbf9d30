"""Several processes (torch.distributed, gloo on CPU) give the one-process run: search, tune and
intrinsic-dim on tiny models, through the API and the command line, with process 0 alone writing.
Also the one-process helpers, the loading options (device map, dtype, quantization) and fp32
trainable tensors over bf16 weights."""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

import pytest
import torch

from frozen_lm import distributed
from frozen_lm.errors import UserError
from frozen_lm.model import FrozenLM
from frozen_lm.placement import make_placement, parse_max_memory
from frozen_lm.task import PromptTask

LABELS = {"0": "terrible", "1": "great"}
TRAIN, DEV = "demo:sentiment:train", "demo:sentiment:dev"
WORLD = 2


# ------------------------------------------------------------------ the jobs every process runs
def run_jobs(out: Path, folder: str) -> dict:
    """Search, prompt tuning (2 micro-batches a step), prefix tuning and an intrinsic-dim sweep on the
    tiny Llama; odd batch sizes give the processes unequal shares."""
    import autoprompt
    import intrinsic_dim
    import softprompt
    from frozen_lm.testing import tiny_lm

    lm = tiny_lm("llama")
    slots = PromptTask(lm, "{sentence} [T] [T] [P]", LABELS)
    manual = PromptTask(lm, "{sentence} it was [P] .", LABELS)
    found = autoprompt.search(slots, TRAIN, DEV, autoprompt.AutoPromptConfig(
        iters=3, batch_size=5, eval_size=7, num_cand=6, dev_size=11, seed=3), out=out / "search", progress=False)
    tuned = softprompt.tune(slots, TRAIN, DEV, softprompt.PromptTuningConfig(
        steps=3, batch_size=5, grad_accum=2, lr=0.05, eval_every=2, seed=1), out=out / "tune", progress=False)
    prefix = softprompt.tune(manual, TRAIN, None, softprompt.PrefixTuningConfig(
        num_virtual_tokens=2, steps=2, batch_size=3, lr=0.01, seed=2), progress=False)
    d90 = intrinsic_dim.measure(manual, TRAIN, DEV, intrinsic_dim.IntrinsicDimConfig(
        dims=[6], steps=2, baseline_steps=2, baseline_lr=1e-2, batch_size=5, max_train=13, max_dev=9, plot=False,
        ), out=out / "d90", progress=False)
    return {"trigger": found.trigger_ids, "dev": [h["dev"] for h in found.history],
            "loss": [h["loss"] for h in found.history], "prompt": tuned.tensors["prompt_embeddings"],
            "tune_loss": [h["loss"] for h in tuned.history if "loss" in h], "prefix": prefix.tensors["prefix"],
            "theta_d": d90.tensors["theta_d"], "d90_runs": [r["score"] for r in d90.runs],
            "baseline": d90.baseline}


def run_cli(out: Path, folder: str):
    from click.testing import CliRunner

    from autoprompt_cli import main

    args = ["search", "--model", folder, "--iters", "2", "--batch-size", "5", "--eval-size", "5", "--num-cand", "4",
            "--out", str(out / "cli"), "--no-progress", "--json"]
    result = CliRunner().invoke(main, args)
    if result.exit_code not in (0, 2) and result.exc_info:  # an unexpected error: show where
        import traceback

        return result.exit_code, result.output + "".join(traceback.format_exception(*result.exc_info))
    return result.exit_code, result.output


def _worker(rank: int, port: int, out: str, folder: str) -> None:
    """One of WORLD processes, set up as torchrun sets them up (the library joins the group itself)."""
    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), FROZEN_LM_DIST_BACKEND="gloo", CUDA_VISIBLE_DEVICES="")  # CPU, also on a GPU machine
    writes = []
    real_replace = os.replace

    def replace(src, dst):  # every artifact file lands through os.replace
        writes.append(str(dst))
        return real_replace(src, dst)

    os.replace = replace
    try:
        assert distributed.world_size() == WORLD and distributed.rank() == rank
        results = run_jobs(Path(out), folder)
        results["cli"] = run_cli(Path(out), folder)
        results["writes"] = list(writes)
    finally:
        os.replace = real_replace
    torch.save(results, Path(out) / f"rank{rank}.pt")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(one-process results, [results of each of the WORLD processes], their output folder)."""
    import torch.multiprocessing as mp

    from frozen_lm.testing import save_tiny

    root = tmp_path_factory.mktemp("dist")
    folder = str(save_tiny("llama", root / "model"))
    many = root / "many"
    many.mkdir()
    mp.spawn(_worker, args=(_free_port(), str(many), folder), nprocs=WORLD, join=True)
    one = run_jobs(root / "one", folder)
    one["cli"] = run_cli(root / "one", folder)
    return one, [torch.load(many / f"rank{r}.pt", weights_only=False) for r in range(WORLD)], many


def test_search_finds_the_same_trigger_on_two_processes(runs):
    one, many, _ = runs
    for r in many:
        assert r["trigger"] == one["trigger"]
        assert r["dev"] == pytest.approx(one["dev"], abs=1e-9)
        assert r["loss"] == pytest.approx(one["loss"], rel=1e-4)


def test_tune_and_prefix_train_the_same_tensors_on_two_processes(runs):
    one, many, _ = runs
    for r in many:
        torch.testing.assert_close(r["prompt"], one["prompt"], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(r["prefix"], one["prefix"], atol=1e-5, rtol=1e-4)
        assert r["tune_loss"] == pytest.approx(one["tune_loss"], rel=1e-4)
    assert torch.equal(many[0]["prompt"], many[1]["prompt"])  # the same step on every process


def test_intrinsic_dim_trains_the_same_theta_d_on_two_processes(runs):
    one, many, _ = runs
    for r in many:
        torch.testing.assert_close(r["theta_d"], one["theta_d"], atol=1e-5, rtol=1e-4)
        assert r["d90_runs"] == pytest.approx(one["d90_runs"]) and r["baseline"] == pytest.approx(one["baseline"])


def test_process_0_alone_writes_and_prints(runs):
    from frozen_lm.results import load_result

    one, many, out = runs
    assert many[0]["writes"] and not many[1]["writes"]
    for name in ("search", "tune", "d90", "cli"):
        assert (out / name / "config.json").exists(), name
    assert load_result(out / "search").trigger_ids == one["trigger"]
    (code0, text0), (code1, text1) = many[0]["cli"], many[1]["cli"]
    assert code0 == code1 == one["cli"][0] == 0, (text0, text1)
    assert json.loads(text0.strip().splitlines()[-1])["trigger"] == json.loads(one["cli"][1].strip().splitlines()[-1])["trigger"]
    assert text1.strip() == ""


# ------------------------------------------------------------------ one process: the helpers are no-ops
def test_helpers_in_one_process():
    index = torch.tensor([4, 1, 3])
    assert distributed.world_size() == 1 and distributed.rank() == 0 and distributed.is_main()
    assert distributed.shard(index) is index
    t = torch.ones(3)
    assert distributed.all_reduce_sum(t) is t and torch.equal(t, torch.ones(3))
    assert distributed.on_main(lambda a, b=0: a + b, 1, b=2) == 3


def test_shards_split_a_batch_exactly_once():
    index = torch.arange(7)
    pieces = [index.tensor_split(3)[r] for r in range(3)]
    assert torch.equal(torch.cat(pieces), index) and sorted(len(p) for p in pieces) == [2, 2, 3]


# ------------------------------------------------------------------ loading options
@pytest.mark.parametrize("kwargs,fragment", [
    (dict(max_memory="0=1GiB"), "add FrozenLM.device_map 'auto'"),
    (dict(device_map="everywhere"), "choose one of auto"),
    (dict(device_map="auto", device="cpu"), "leave FrozenLM.device out"),
    (dict(quantize="3bit"), "choose one of 8bit, 4bit"),
])
def test_placement_mistakes_are_one_line_errors(kwargs, fragment):
    with pytest.raises(UserError, match=fragment) as e:
        make_placement(kwargs.pop("device", None), None, **kwargs)
    assert "\n" not in str(e.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_quantize_needs_cuda():
    with pytest.raises(UserError, match="needs a CUDA GPU"):
        make_placement(None, None, quantize="4bit")


def test_device_map_is_refused_with_several_processes(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(UserError, match="cannot run in several processes"):
        make_placement(None, None, device_map="auto")


def test_max_memory_parsing():
    assert parse_max_memory("0=20GiB, 1=20GiB,cpu=64GiB") == {0: "20GiB", 1: "20GiB", "cpu": "64GiB"}
    with pytest.raises(UserError, match="DEVICE=SIZE"):
        parse_max_memory("lots")


def test_device_map_auto_places_a_tiny_model_on_the_cpu(tiny_folder):
    pytest.importorskip("accelerate")
    plain = FrozenLM.load(tiny_folder("llama"), device="cpu")
    mapped = FrozenLM.load(tiny_folder("llama"), device_map="auto", max_memory={"cpu": "1GiB"})
    assert mapped.device.type == "cpu" and not mapped.sharded and mapped.quantized is None
    ids, pos = torch.tensor([[5, 6, 7, 8]]), torch.tensor([[3]])
    with torch.no_grad():
        torch.testing.assert_close(mapped.logits_at(pos, input_ids=ids), plain.logits_at(pos, input_ids=ids))


def test_bf16_weights_train_float32_prompts_and_theta_d(tiny_folder):
    import intrinsic_dim
    import softprompt

    lm = FrozenLM.load(tiny_folder("llama"), device="cpu", dtype="bfloat16")
    assert lm.dtype == torch.bfloat16
    task = PromptTask(lm, "{sentence} [T] [T] [P]", LABELS)
    tuned = softprompt.tune(task, TRAIN, None, softprompt.PromptTuningConfig(steps=2, batch_size=4, lr=0.1), progress=False)
    prompt = tuned.tensors["prompt_embeddings"]
    assert prompt.dtype == torch.float32 and not torch.equal(prompt, tuned.tensors["init_embeddings"])
    manual = PromptTask(lm, "{sentence} it was [P] .", LABELS)
    d = intrinsic_dim.measure(manual, TRAIN, DEV, intrinsic_dim.IntrinsicDimConfig(
        dims=[4], steps=2, baseline_steps=1, batch_size=4, max_train=8, max_dev=8, plot=False), progress=False)
    assert d.tensors["theta_d"].dtype == torch.float32 and bool(d.tensors["theta_d"].abs().sum() > 0)
    assert d.baseline_run["steps"] == 1  # full training: a float32 copy cast to bfloat16 at use
    assert all(p.dtype == torch.bfloat16 for p in lm.model.parameters())


def test_model_space_refuses_quantized_weights(tiny, monkeypatch):
    import intrinsic_dim

    lm = tiny("llama")
    monkeypatch.setattr(lm, "quantized", "4bit")
    task = PromptTask(lm, "{sentence} it was [P] .", LABELS)
    with pytest.raises(UserError, match="4bit-quantized") as e:
        intrinsic_dim.measure(task, TRAIN, DEV, intrinsic_dim.IntrinsicDimConfig(projection="fastfood"), progress=False)
    assert "\n" not in str(e.value)


def test_cli_shows_the_scale_options(cli):
    text = cli("search", "--help").output
    for option in ("--device-map", "--max-memory", "--quantize", "--dtype"):
        assert option in text


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
