"""Real training on CPU: TRL's SFTTrainer, transformers and PEFT on the tiny demo model.

Nothing is mocked. The mask tests read the batches TRL's own dataloader and collator produce
and the loss TRL's compute_loss returns, and compare them token by token with tuneform's mask.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from peft import PeftModel
from transformers import AutoModelForCausalLM

from tuneform.data.reader import Example
from tuneform.estimate.estimator import DEFAULT_CALIBRATION, compile_mode
from tuneform.runfile.spec import RunSpec
from tuneform.train.engine import (
    Settings,
    TrainError,
    planned_tokens,
    prepare,
    resolve_settings,
    sft_config,
    train,
)
from tuneform.train.format import Tokenized

torch.set_num_threads(2)

ROOT = Path(__file__).resolve().parent.parent
DEMO = str(ROOT / "models" / "demo-tiny")
LABELS = ["billing", "refund", "track_order", "cancel_order"]


def examples(n: int, *, long_prompt: bool = False) -> list[Example]:
    """A tiny, learnable task: the label is named in the question."""
    out = []
    for i in range(n):
        label = LABELS[i % len(LABELS)]
        question = f"Customer {i} asks about {label.replace('_', ' ')}." + (" Please help me, thanks." * (i % 3) if long_prompt else "")
        out.append(Example("t.jsonl", i + 1, messages=[{"role": "user", "content": question}, {"role": "assistant", "content": label}]))
    return out


def make_spec(method: dict[str, Any], training: dict[str, Any], save: str | None = None) -> RunSpec:
    return RunSpec.model_validate(
        {
            "model": {"id": "./models/demo-tiny", "max_seq_length": 64},
            "data": {"train": [{"path": "t.jsonl"}]},
            "method": method,
            "training": {"packing": False, "seed": 11, "logging_steps": 1, **training},
            "compute": {"engine": "trl"},
            "output": {"save": save} if save else {},
        }
    )


def test_full_fine_tune_learns_and_saves(tmp_path: Path) -> None:
    spec = make_spec(
        {"type": "full"}, {"max_steps": 20, "learning_rate": 3e-3, "lr_scheduler_type": "constant", "per_device_train_batch_size": 8}
    )
    seen: list[tuple[int, int, float, int, float]] = []
    result = train(spec, DEMO, examples(32), examples(4), tmp_path / "out", on_log=lambda *a: seen.append(a))

    losses = [loss for _, loss in result.loss_history]
    assert result.steps == 20 and len(losses) == 20 and all(math.isfinite(x) for x in losses)
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5
    assert result.eval_loss is not None and math.isfinite(result.eval_loss)
    assert [s[0] for s in seen] == list(range(1, 21)) and {s[1] for s in seen} == {20}
    assert [s[2] for s in seen] == losses
    tokens_seen = [s[3] for s in seen]
    assert tokens_seen == sorted(tokens_seen) and tokens_seen[-1] <= result.tokens
    # 20 steps x 8 rows; each row trains its label and <|im_end|>, a small part of its tokens.
    assert 0 < result.trained_tokens < result.tokens / 3
    assert result.tokens_per_second > 0 and result.peak_memory_kind == "process_max_rss" and result.peak_memory_bytes > 0
    assert result.settings == Settings("trl", "cpu", "fp32", "adamw_torch", 8, False, False, "chunked_nll")
    assert {"torch", "transformers", "trl", "peft"} <= set(result.versions)
    json.dumps(result.as_json())

    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == [
        "chat_template.jinja",
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    reloaded = AutoModelForCausalLM.from_pretrained(str(out), local_files_only=True)
    base = AutoModelForCausalLM.from_pretrained(DEMO, local_files_only=True)
    assert not torch.equal(reloaded.model.embed_tokens.weight, base.model.embed_tokens.weight)


def test_lora_adapter_and_merged(tmp_path: Path) -> None:
    method = {"type": "lora", "r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"], "use_rslora": True}
    training = {"max_steps": 3, "learning_rate": 1e-2, "per_device_train_batch_size": 4}
    adapter = train(make_spec(method, training, "adapter"), DEMO, examples(12), [], tmp_path / "adapter")
    assert adapter.steps == 3 and adapter.eval_loss is None

    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"], config["use_rslora"], sorted(config["target_modules"])) == (4, 8, True, ["q_proj", "v_proj"])
    base = AutoModelForCausalLM.from_pretrained(DEMO, local_files_only=True)
    probe = torch.tensor([[1, 3, 50, 60, 70]])
    base_logits = base(probe).logits
    with_adapter = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(DEMO, local_files_only=True), str(tmp_path / "adapter"))
    adapter_logits = with_adapter(probe).logits
    assert not torch.allclose(adapter_logits, base_logits)

    train(make_spec(method, training, "merged"), DEMO, examples(12), [], tmp_path / "merged")
    merged = AutoModelForCausalLM.from_pretrained(str(tmp_path / "merged"), local_files_only=True)
    assert not any("lora" in key for key in merged.state_dict())
    # Same seed, same data: the merged weights compute what base + adapter computes.
    torch.testing.assert_close(merged(probe).logits, adapter_logits, rtol=1e-4, atol=1e-4)


def test_lora_all_linear_targets_every_projection(tmp_path: Path) -> None:
    spec = make_spec({"type": "lora", "r": 2}, {"max_steps": 1, "per_device_train_batch_size": 2})
    prepared = prepare(spec, DEMO, examples(4), [], tmp_path)
    config = prepared.trainer.model.peft_config["default"]
    assert sorted(config.target_modules) == ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]


def test_qlora_on_cpu_fails_before_loading_anything(tmp_path: Path) -> None:
    spec = make_spec({"type": "qlora"}, {"max_steps": 1})
    with pytest.raises(TrainError, match="qlora needs a CUDA GPU"):
        train(spec, str(tmp_path / "no-such-model"), examples(4), [], tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(importlib.util.find_spec("mlflow") is not None, reason="needs an environment without mlflow's client")
def test_a_tracker_whose_client_is_missing_fails_before_loading_anything(tmp_path: Path) -> None:
    spec = make_spec({"type": "full"}, {"max_steps": 1, "report_to": "mlflow"})
    with pytest.raises(TrainError, match=r"report_to mlflow: its client is not installed here: pip install 'tuneform\[mlflow\]'"):
        train(spec, str(tmp_path / "no-such-model"), examples(4), [], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def _rows_by_ids(rows: list[Tokenized]) -> dict[tuple[int, ...], Tokenized]:
    return {tuple(r.input_ids): r for r in rows}


def test_trl_batches_and_loss_follow_tuneforms_mask(tmp_path: Path) -> None:
    spec = make_spec({"type": "full"}, {"max_steps": 1, "per_device_train_batch_size": 4})
    prepared = prepare(spec, DEMO, examples(8, long_prompt=True), [], tmp_path)
    trainer, rows = prepared.trainer, _rows_by_ids(prepared.train_rows)
    batch = next(iter(trainer.get_train_dataloader()))

    # Token by token: TRL's labels are tuneform's labels, padding ignored.
    for ids, attention, labels in zip(batch["input_ids"], batch["attention_mask"], batch["labels"]):
        length = int(attention.sum())
        row = rows[tuple(ids[:length].tolist())]
        assert labels[:length].tolist() == row.labels
        assert set(labels[length:].tolist()) <= {-100}

    # The loss TRL computes covers exactly those tokens: the mean next-token loss over them.
    model = trainer.model
    with torch.no_grad():
        trl_loss = trainer.compute_loss(model, dict(batch))
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    targets = batch["labels"][:, 1:]
    flat = logits[:, :-1].reshape(-1, logits.size(-1))
    masked = F.cross_entropy(flat, targets.reshape(-1), ignore_index=-100)
    every = F.cross_entropy(
        flat, batch["input_ids"][:, 1:].masked_fill(batch["attention_mask"][:, 1:] == 0, -100).reshape(-1), ignore_index=-100
    )
    torch.testing.assert_close(trl_loss, masked, rtol=1e-5, atol=1e-5)
    assert abs(float(masked) - float(every)) > 0.01


def test_packed_batches_keep_each_examples_mask(tmp_path: Path) -> None:
    spec = make_spec({"type": "full"}, {"max_steps": 1, "per_device_train_batch_size": 2, "packing": True})
    prepared = prepare(spec, DEMO, examples(12, long_prompt=True), [], tmp_path)
    assert prepared.settings.packing and set(prepared.trainer.train_dataset.column_names) == {"input_ids", "labels", "seq_lengths"}
    rows = _rows_by_ids(prepared.train_rows)
    batch = next(iter(prepared.trainer.get_train_dataloader()))
    assert "attention_mask" not in batch and batch["input_ids"].shape[0] == 1  # padding-free
    ids, labels, positions = batch["input_ids"][0].tolist(), batch["labels"][0].tolist(), batch["position_ids"][0].tolist()
    starts = [i for i, p in enumerate(positions) if p == 0] + [len(ids)]
    assert len(starts) > 2  # several examples share the packed sequence
    separate_sum, targets = torch.tensor(0.0), 0
    model = prepared.trainer.model
    for start, end in itertools.pairwise(starts):
        row = rows[tuple(ids[start:end])]
        # The first token of each document is never a target (nothing before it in its document).
        assert labels[start:end] == [-100] + row.labels[1:]
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([row.input_ids]), use_cache=False).logits[0, :-1]
        shifted = torch.tensor(row.labels[1:])
        separate_sum += F.cross_entropy(logits, shifted, ignore_index=-100, reduction="sum")
        targets += int((shifted != -100).sum())
    # Documents do not see each other: the packed loss is the loss of each document on its own.
    with torch.no_grad():
        packed_loss = prepared.trainer.compute_loss(model, dict(batch))
    torch.testing.assert_close(packed_loss, separate_sum / targets, rtol=1e-4, atol=1e-4)


def test_every_sft_argument_comes_from_the_run_file(tmp_path: Path) -> None:
    spec = make_spec(
        {"type": "lora"},
        {
            "max_steps": 17,
            "learning_rate": 3.3e-4,
            "per_device_train_batch_size": 5,
            "gradient_accumulation_steps": 3,
            "lr_scheduler_type": "cosine",
            "warmup_ratio": 0.07,
            "weight_decay": 0.013,
            "max_grad_norm": 0.7,
            "optim": "adafactor",
            "gradient_checkpointing": True,
            "precision": "fp32",
            "seed": 1234,
            "logging_steps": 2,
            "packing": True,
        },
    )
    settings = resolve_settings(spec, engine="trl", cuda=False, bf16_supported=False)
    config = sft_config(spec, settings, tmp_path)
    expected = {
        "max_steps": 17,
        "learning_rate": 3.3e-4,
        "per_device_train_batch_size": 5,
        "per_device_eval_batch_size": 5,
        "gradient_accumulation_steps": 3,
        "warmup_steps": 0.07,
        "weight_decay": 0.013,
        "max_grad_norm": 0.7,
        "gradient_checkpointing": True,
        "bf16": False,
        "fp16": False,
        "use_cpu": True,
        "seed": 1234,
        "data_seed": 1234,
        "logging_steps": 2,
        "packing": True,
        "max_length": 64,
        "completion_only_loss": False,
        "assistant_only_loss": False,
        "loss_type": "chunked_nll",
        "dataloader_num_workers": 0,
        "torch_compile": False,
        "use_cache": False,
    }
    assert {key: getattr(config, key) for key in expected} == expected
    assert (config.lr_scheduler_type.value, config.optim.value, config.save_strategy.value, config.eval_strategy.value) == (
        "cosine",
        "adafactor",
        "no",
        "no",
    )
    assert config.report_to == [] or config.report_to == "none"
    tracked = make_spec({"type": "full"}, {"max_steps": 2, "report_to": "tensorboard"})
    config = sft_config(tracked, resolve_settings(tracked, engine="trl", cuda=False, bf16_supported=False), tmp_path)
    assert config.report_to == ["tensorboard"]  # the run file's tracker, for the trainer's own integration

    epochs = make_spec({"type": "full"}, {"num_train_epochs": 2.5, "warmup_steps": 4, "per_device_train_batch_size": 2})
    config = sft_config(epochs, resolve_settings(epochs, engine="trl", cuda=False, bf16_supported=False), tmp_path)
    assert (config.num_train_epochs, config.max_steps, config.warmup_steps) == (2.5, -1, 4)


def test_auto_settings_resolve_per_machine() -> None:
    spec = make_spec({"type": "lora", "target_modules": ["q_proj", "lm_head"]}, {"max_steps": 1})
    gpu = resolve_settings(spec, engine="unsloth", cuda=True, bf16_supported=True)
    assert gpu == Settings("unsloth", "cuda", "bf16", "adamw_torch_fused", 8, False, False, "nll")
    t4 = resolve_settings(spec, engine="trl", cuda=True, bf16_supported=False, batch_size=24, gradient_checkpointing=True)
    assert (t4.precision, t4.batch_size, t4.gradient_checkpointing, t4.loss_type) == (
        "fp16",
        24,
        True,
        "nll",
    )  # lm_head adapted: plain loss
    cpu = resolve_settings(spec, engine="trl", cuda=False, bf16_supported=False)
    assert (cpu.precision, cpu.optim, cpu.batch_size) == ("fp32", "adamw_torch", 4)
    written = make_spec({"type": "full"}, {"max_steps": 1, "per_device_train_batch_size": 3, "gradient_checkpointing": False})
    assert (
        resolve_settings(written, engine="trl", cuda=True, bf16_supported=True, batch_size=64, gradient_checkpointing=True).batch_size == 3
    )
    with pytest.raises(TrainError, match="this GPU has no bf16"):
        resolve_settings(make_spec({"type": "full"}, {"max_steps": 1, "precision": "bf16"}), engine="trl", cuda=True, bf16_supported=False)


def test_unsloth_compiles_only_jobs_long_enough_to_repay_it() -> None:
    """compute.compile auto compiles the blocks from 6M training tokens (the warm-up measured on an
    H100 pays back there), and LFM2 compiles nothing below 6.4M (its short warm-up wins); on and off
    are obeyed whatever the size."""
    epochs = make_spec({"type": "lora"}, {"num_train_epochs": 3})
    settings = resolve_settings(epochs, engine="unsloth", cuda=True, bf16_supported=True, batch_size=16)
    assert planned_tokens(epochs, settings, [1000] * 2000) == 6_000_000  # 2M tokens, 3 epochs
    auto = epochs.compute.compile
    assert compile_mode(auto, 6_000_000, "llama") == "blocks" and compile_mode(auto, 5_999_999, "llama") == "off"
    # LFM2 through the fused kernels: nothing compiled wins up to 6.4M, past the blocks' own threshold
    below = DEFAULT_CALIBRATION.uncompiled_below_tokens["lfm2"]
    assert below > DEFAULT_CALIBRATION.compile_min_tokens
    assert compile_mode(auto, below - 1, "lfm2") == "none" and compile_mode(auto, below, "lfm2") == "blocks"
    assert compile_mode(auto, 1, "llama") == "off"  # the Llama family gains nothing from compiling nothing
    steps = make_spec({"type": "lora"}, {"max_steps": 100, "gradient_accumulation_steps": 2})
    # 100 steps x batch 16 x 2 accumulated x the mean row of 500 tokens
    assert planned_tokens(steps, replace(settings, processes=2), [400, 600]) == 100 * 16 * 2 * 2 * 500
    for written, expected in (("on", "blocks"), ("off", "off")):
        for tokens in (1, 10**9):
            assert compile_mode(written, tokens, "lfm2") == expected
