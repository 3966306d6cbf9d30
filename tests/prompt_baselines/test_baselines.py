"""prompt_baselines: LoRA, IA3, adapter (PEFT), BitFit, last k blocks and full fine-tuning on the
task's label-word objective, with the frozen model untouched; artifacts keep only what trained and
score again after loading (earlier versions' 'finetune' artifacts too); the best so far is written
while training; the manual template as a method; `autoprompt finetune` end to end."""

from __future__ import annotations

import json

import pytest
import torch

import frozen_lm
import prompt_baselines
from frozen_lm import PromptTask, configs, evaluate, load_result
from frozen_lm.errors import Interrupted, UserError
from prompt_baselines import (
    BitFitConfig,
    FullFinetuneConfig,
    LoRAFinetuneConfig,
    ManualConfig,
    finetune,
    run_manual,
)
from prompt_baselines.adapt import PEFT_PREFIX, block_index, ffn_output_modules
from tests.conftest import assert_user_error

pytest.importorskip("peft")
LABELS = {"0": "terrible", "1": "great"}
TRAIN, DEV = "demo:sentiment:train", "demo:sentiment:dev"


def snapshot(lm) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in lm.model.state_dict().items()}


def unchanged(lm, before) -> bool:
    now = lm.model.state_dict()
    return now.keys() == before.keys() and all(torch.equal(now[k], before[k]) for k in before)


def cfg(method: str, **kw):
    """The method's config with the tests' short training."""
    return prompt_baselines.CONFIGS[method](steps=kw.pop("steps", 4), eval_every=2, lr=kw.pop("lr", 5e-2), batch_size=8, **kw)


@pytest.mark.parametrize("method", ["lora", "ia3", "adapter", "bitfit", "last_k", "full"])
def test_training_changes_logits_not_the_frozen_model(tiny, tmp_path, method):
    lm = tiny("llama")
    task = PromptTask(lm, "{sentence} It was [P] .", LABELS)
    before = snapshot(lm)
    modules = {type(m) for m in lm.model.modules()}
    r = finetune(task, TRAIN, DEV, cfg(method, **({"last_k": 1} if method == "last_k" else {})), out=tmp_path / method,
                 progress=False)
    assert unchanged(lm, before), "the frozen weights changed"
    assert {type(m) for m in lm.model.modules()} == modules, "PEFT layers leaked into the frozen model"
    assert all(not p.requires_grad for p in lm.model.parameters())
    rows = task.encode(DEV).rows
    with torch.no_grad():
        base = lm.logits_at(rows.predict_pos, input_ids=rows.input_ids, attention_mask=rows.attention_mask)
        adapted = r.bind(task).logits(rows)
    assert not torch.allclose(base, adapted), "training changed nothing"
    again = load_result(tmp_path / method)
    assert type(again) is type(r) and again.config == r.config and again.method == method
    assert evaluate(task, DEV, prompt=again) == evaluate(task, DEV, prompt=r) == r.metrics["dev"]
    assert r.trainable_params == sum(t.numel() for t in r.tensors.values()) or method in ("full", "last_k")
    assert r.best_step in range(0, 5) and r.steps_done == 4


def test_artifacts_keep_only_what_trained(tiny):
    lm = tiny("llama")
    task = PromptTask(lm, "{sentence} It was [P] .", LABELS)
    lora = finetune(task, TRAIN, None, cfg("lora", r=2), progress=False)
    assert lora.tensors and all(k.startswith(PEFT_PREFIX) and ".lora_" in k for k in lora.tensors)
    assert lora.trainable_params == 2 * 2 * ((32 + 32) + (32 + 8))  # 2 layers x rank 2 x (q: 32->32, v: 32->8)
    ia3 = finetune(task, TRAIN, None, cfg("ia3"), progress=False)
    assert all(".ia3_l." in k for k in ia3.tensors)
    bitfit = finetune(task, TRAIN, None, cfg("bitfit"), progress=False)
    assert all(k.endswith(".bias") for k in bitfit.tensors)  # zero-initialized: Llama has no biases
    last = finetune(task, TRAIN, None, cfg("last_k", last_k=1), progress=False)
    assert last.tensors and all(block_index(k) == 1 for k in last.tensors)
    full = finetune(task, TRAIN, None, cfg("full"), progress=False)
    assert len(full.tensors) <= len(lm.named_parameters())
    assert "param.model.embed_tokens.weight" in full.tensors  # the tied head trains through the embeddings


def test_models_with_biases_and_conv1d(tiny):
    bert = tiny("bert")
    task = PromptTask(bert, "{sentence} It was [P] .", LABELS)
    before = snapshot(bert)
    r = finetune(task, TRAIN, DEV, cfg("bitfit"), progress=False)
    assert r.tensors and all(k.endswith("bias") for k in r.tensors)
    assert set(r.tensors) <= {"param." + n for n in bert.named_parameters()}  # its own biases
    assert unchanged(bert, before)
    assert ffn_output_modules(bert)[0].endswith("layer.0.output.dense")
    gpt2 = tiny("gpt2")
    task = PromptTask(gpt2, "{sentence} It was[P]", LABELS)
    before = snapshot(gpt2)
    for method in ("lora", "adapter"):
        r = finetune(task, TRAIN, DEV, cfg(method, steps=2), progress=False)
        assert r.trainable_params > 0 and r.metrics["dev"]["n_scored"] == 32
    assert unchanged(gpt2, before)


def test_same_seed_same_result(tiny):
    task = PromptTask(tiny("llama"), "{sentence} It was [P] .", LABELS)
    a = finetune(task, TRAIN, DEV, cfg("lora", seed=3), progress=False)
    b = finetune(task, TRAIN, DEV, cfg("lora", seed=3), progress=False)
    assert all(torch.equal(a.tensors[k], b.tensors[k]) for k in a.tensors)
    assert [h["loss"] for h in a.history if "loss" in h] == [h["loss"] for h in b.history if "loss" in h]


def test_mistakes(tiny):
    lm = tiny("llama")
    with pytest.raises(UserError, match=r"\[T\] slots"):
        finetune(PromptTask(lm, "{sentence} [T] [P]", LABELS), TRAIN, DEV, cfg("lora"))
    with pytest.raises(UserError, match="finetune takes one of LoRAFinetuneConfig.*got a ManualConfig"):
        finetune(PromptTask(lm, "{sentence} It was [P] .", LABELS), TRAIN, DEV, ManualConfig())
    with pytest.raises(UserError, match="FullFinetuneConfig.target_modules is not an option"):
        configs.from_dict(FullFinetuneConfig, {"target_modules": "q_proj"})
    with pytest.raises(UserError, match="LoRAFinetuneConfig.r must be at least 1, got 0"):
        LoRAFinetuneConfig(r=0)
    with pytest.raises(UserError, match="LastKConfig.last_k is 5, but the model has 2 blocks"):
        finetune(PromptTask(lm, "{sentence} It was [P] .", LABELS), TRAIN, None, cfg("last_k", last_k=5))
    with pytest.raises(UserError, match="PEFT cannot apply LoRAFinetuneConfig.*LoRAFinetuneConfig.target_modules"):
        finetune(PromptTask(lm, "{sentence} It was [P] .", LABELS), TRAIN, None, cfg("lora", target_modules="nope"))


def test_manual_method_saves_and_scores(tiny, tmp_path):
    task = PromptTask(tiny("llama"), "{sentence} It was [P] .", LABELS)
    r = run_manual(task, TRAIN, DEV, out=tmp_path / "m")
    assert r.metrics["dev"] == evaluate(task, DEV)
    assert evaluate(task, DEV, prompt=load_result(tmp_path / "m")) == r.metrics["dev"]
    assert prompt_baselines.ManualResult.module == "prompt_baselines"
    assert run_manual(task, None, DEV).metrics["dev"] == r.metrics["dev"]  # train is never read
    with pytest.raises(UserError, match=r"\[T\] slots"):
        run_manual(PromptTask(task.lm, "{sentence} [T] [P]", LABELS), TRAIN, DEV, out=tmp_path / "t")
    assert not (tmp_path / "t").exists()  # refused before the folder is claimed


def test_registered_methods():
    found = frozen_lm.methods()
    for name, config in prompt_baselines.CONFIGS.items():
        m = found[name]
        assert m.config is config and m.trains == "weights" and m.template == "manual" and "lr" in m.space
        assert m.resumable is None and not m.needs_dev and m.reads("finetune", {"method": name})
        assert m.command.name == "finetune" and m.command.default == (name == "lora")
        assert ("peft" in m.imports) == (name in ("lora", "ia3", "adapter"))
        assert config().lr == prompt_baselines.config.DEFAULT_LR[name]
    assert found["manual"].trains == "nothing" and found["manual"].command is None


def test_earlier_finetune_artifacts_load(tiny, tmp_path):
    """An artifact of package 0.2 (method 'finetune', its config's 'method' naming the baseline, module
    'baselines') loads as that baseline's result and scores the same."""
    task = PromptTask(tiny("llama"), "{sentence} It was [P] .", LABELS)
    r = finetune(task, TRAIN, DEV, cfg("bitfit"), out=tmp_path / "old", progress=False)
    path = tmp_path / "old" / "config.json"
    meta = json.loads(path.read_text())
    meta.update(method="finetune", module="baselines", config={**meta["config"], "method": "bitfit", "r": 8,
                                                                "target_modules": None, "last_k": 2})
    path.write_text(json.dumps(meta))
    again = load_result(tmp_path / "old")
    assert again.method == "bitfit" and again.config == r.config and type(again.config) is BitFitConfig
    assert evaluate(task, DEV, prompt=again) == r.metrics["dev"]


def test_best_so_far_is_written_and_ctrl_c_keeps_it(tiny, tmp_path):
    task = PromptTask(tiny("llama"), "{sentence} It was [P] .", LABELS)
    out, seen = tmp_path / "run", {}

    def callback(event):
        if event.step == 2:  # after the step-2 evaluation, the first best
            seen.update(json.loads((out / "results.json").read_text()))
        if event.step == 3:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted, match="interrupted after step 3") as stop:
        finetune(task, TRAIN, DEV, cfg("lora"), out=out, callback=callback, progress=False)
    assert seen["status"] == "running" and seen["best_step"] == 2 and "dev" in seen["metrics"]
    assert stop.value.result.status == "interrupted" and not stop.value.resumable
    saved = load_result(out)
    assert saved.status == "interrupted" and saved.best_step == 2
    assert evaluate(task, DEV, prompt=saved) == seen["metrics"]["dev"]


def test_cli_finetune_then_evaluate(cli, tiny_folder, tmp_path):
    model = tiny_folder("llama")
    help_ = cli("finetune", "--help")
    assert help_.exit_code == 0 and "--r " in help_.output and "--method" in help_.output  # lora's options
    for method, flag in (("adapter", "--adapter-size"), ("last_k", "--last-k")):
        help_ = cli("finetune", "--method", method, "--help")
        assert help_.exit_code == 0 and flag in help_.output
    out = cli("finetune", "--model", model, "--method", "bitfit", "--steps", "3", "--eval-every", "1", "--out",
              tmp_path / "ft", "--no-progress", "--json")
    assert out.exit_code == 0, out.output
    row = json.loads(out.output.strip().splitlines()[-1])
    assert row["method"] == "bitfit" and row["steps"] == 3
    scored = cli("evaluate", tmp_path / "ft", "--json")
    assert scored.exit_code == 0, scored.output
    assert json.loads(scored.output)["accuracy"] == row["dev_accuracy"]
    assert_user_error(cli("finetune", "--model", model, "--template", "{sentence} [T] [P]", "--out", tmp_path / "x"),
                      "[T] slots")
    assert_user_error(cli("finetune", "--model", model, "--method", "lora", "--r", "0", "--out", tmp_path / "y"),
                      "--r must be at least 1")
