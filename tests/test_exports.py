"""Exports for serving (output.save: adapter, merged, gguf:<quant>; README "Exports").

Real parts only: the real job trains the demo model with LoRA through `tuneform apply`, the
local registry publishes and restores, HubRegistry publishes to tests/fakehub.py and restores
there, and llama.cpp's own converter (scripts/fetch_llama_cpp.sh) makes the GGUF files.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch

from conftest import ROOT, demo_repo
from tuneform.core.manifest import Manifest
from tuneform.runfile.spec import RunSpec
from tuneform.train.export import ExportError, find_llama_cpp

DEMO = (ROOT / "runs/demo.yaml").read_text()
# The demo as a short LoRA run that publishes its adapter and merged weights; ungated, since a
# LoRA on a random-initialised model learns less than the demo's full fine-tune gate asks.
LORA_DEMO = (
    DEMO.replace("method: {type: full}", "method: {type: lora, r: 8}")
    .replace("  num_train_epochs: 3\n", "  max_steps: 30\n")
    .replace("save: merged}", "save: [merged, adapter]}")
    .replace('    gate: {exact_match: ">= 0.85"}\n', "")
)
PROMPTS = ["Where is my order?", "I want my money back", "Please cancel order 1234", "Why was I charged twice?"]


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TUNEFORM_HOME", str(tmp_path / "registry"))
    monkeypatch.delenv("TUNEFORM_LLAMA_CPP", raising=False)
    monkeypatch.delenv("UNSLOTH_LLAMA_CPP_PATH", raising=False)
    return tmp_path / "registry" / "tuneform-demo" / "demo"


def _greedy(folder: Path, base: Path | None) -> list[list[int]]:
    """The new tokens greedy decoding gives for PROMPTS, with the model loaded as scoring loads it."""
    from tuneform.job.evaluate import load_for_eval

    model, tokenizer = load_for_eval(folder, base=base, device="cpu")
    out = []
    for prompt in PROMPTS:
        ids = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        with torch.no_grad():
            generated = model.generate(**ids, max_new_tokens=8, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        out.append(generated[0, ids["input_ids"].shape[1] :].tolist())
    return out


def test_apply_publishes_merged_beside_the_adapter_and_revert_restores_both(tmp_path: Path, registry: Path) -> None:
    demo = demo_repo(tmp_path / "demo", LORA_DEMO)
    result = demo.cli("apply", "runs/demo.yaml")
    assert result.exit_code == 0, result.output
    first = (registry / "main").read_text().strip()
    model = registry / "versions" / first / "model"
    assert (model / "adapter_config.json").is_file() and (model / "merged" / "model.safetensors").is_file()
    assert not (model / "merged" / "adapter_config.json").exists()

    # the merged weights and base + adapter of the same version answer alike, and the adapter matters
    with_adapter = _greedy(model, ROOT / "models/demo-tiny")
    assert _greedy(model / "merged", None) == with_adapter
    assert _greedy(ROOT / "models/demo-tiny", None) != with_adapter

    manifest = Manifest.read_text((registry / "versions" / first / "manifest.json").read_text())
    sizes = {e.name: (e.path, e.bytes) for e in manifest.exports}
    merged_bytes = sum(p.stat().st_size for p in (model / "merged").rglob("*") if p.is_file())
    assert sizes["merged"] == ("merged", merged_bytes) and 0 < sizes["adapter"][1] < merged_bytes
    card = (model / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: peft\n") and "#### How to run" in card
    tag = f"run-{first[:12]}"
    assert f'AutoPeftModelForCausalLM.from_pretrained("tuneform-demo/demo", revision="{tag}")' in card
    assert f'from_pretrained("tuneform-demo/demo", revision="{tag}", subfolder="merged")' in card
    assert f"hf download tuneform-demo/demo --revision {tag} --include 'merged/*' --local-dir model\nvllm serve model/merged" in card
    merged_before = (model / "merged" / "model.safetensors").read_bytes()

    demo.write("runs/demo.yaml", LORA_DEMO.replace("seed: 42", "seed: 7"))
    assert demo.cli("apply").exit_code == 0
    second = (registry / "main").read_text().strip()
    assert second != first and (registry / "versions" / second / "model" / "merged" / "model.safetensors").is_file()

    demo.write("runs/demo.yaml", LORA_DEMO)
    result = demo.cli("apply")
    assert result.exit_code == 0 and "restored" in result.output, result.output
    assert (registry / "main").read_text().strip() == first
    restored = registry / "versions" / first / "model"
    assert (restored / "merged" / "model.safetensors").read_bytes() == merged_before


def test_gguf_without_llama_cpp_fails_before_training(tmp_path: Path, registry: Path) -> None:
    demo = demo_repo(tmp_path / "demo", DEMO.replace("save: merged}", "save: [merged, gguf:q4_k_m]}"))
    result = demo.cli("apply", "runs/demo.yaml")
    assert result.exit_code == 1
    assert "output.save asks for gguf:q4_k_m and no llama.cpp is set (TUNEFORM_LLAMA_CPP or UNSLOTH_LLAMA_CPP_PATH)" in result.output
    assert "scripts/fetch_llama_cpp.sh" in result.output
    assert "loading data" not in result.output and "step 1/" not in result.output  # no data read, no training
    assert not (registry / "versions").is_dir() or not any(p for p in (registry / "versions").iterdir() if not p.name.startswith("."))


def test_llama_cpp_folder_needs_what_the_quantizations_need(tmp_path: Path) -> None:
    folder = tmp_path / "llama.cpp"
    env = {"TUNEFORM_LLAMA_CPP": str(folder), "UNSLOTH_LLAMA_CPP_PATH": str(tmp_path / "elsewhere")}
    with pytest.raises(ExportError, match=r"TUNEFORM_LLAMA_CPP=.* has no convert_hf_to_gguf.py"):
        find_llama_cpp(("q8_0",), env)
    (folder / "gguf-py" / "gguf").mkdir(parents=True)
    (folder / "gguf-py" / "gguf" / "__init__.py").write_text("")
    (folder / "convert_hf_to_gguf.py").write_text("")
    assert find_llama_cpp(("q8_0", "f16"), env).folder == folder  # converted types need no llama-quantize
    with pytest.raises(ExportError, match="gguf:q4_k_m, which llama-quantize makes, .* has no executable llama-quantize"):
        find_llama_cpp(("q8_0", "q4_k_m"), env)
    (folder / "llama-quantize").write_text("#!/bin/sh\n")
    (folder / "llama-quantize").chmod(0o755)
    assert find_llama_cpp(("q4_k_m",), env).quantize == folder / "llama-quantize"
    # Unsloth's own variable is read when tuneform's is not set
    assert find_llama_cpp(("q8_0",), {"UNSLOTH_LLAMA_CPP_PATH": str(folder)}).setting == "UNSLOTH_LLAMA_CPP_PATH"


def test_hub_version_carries_its_exports_and_restore_moves_them(fake_hub: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On the Hub a version is one tagged commit: the exports' subfolders ride in it, restore copies
    them onto main (and removes another version's), and scoring downloads only the root."""
    from tuneform.registry.hub import HubRegistry

    monkeypatch.setenv("TUNEFORM_RETRY_DELAY", "0.05")
    registry = HubRegistry(fake_hub.api())  # type: ignore[attr-defined]
    repo_id, key_a, key_b = "acme/exports", "a" * 64, "b" * 64

    def folder(name: str, exports: bool) -> Path:
        out = tmp_path / name
        out.mkdir()
        (out / "adapter_model.safetensors").write_bytes(name.encode() * 50)
        if exports:
            (out / "merged").mkdir()
            (out / "merged" / "model.safetensors").write_bytes(b"\0M" * 200)
            (out / "gguf").mkdir()
            (out / "gguf" / "model-Q4_K_M.gguf").write_bytes(b"GGUF" + b"\1" * 100)
        return out

    def manifest(key: str) -> Manifest:
        return Manifest(run_key=key, status="passed", created=time.strftime("%Y-%m-%dT%H:%M:%S") + key[0], name="x")

    registry.publish(repo_id, key_a, folder("a", True), manifest(key_a), parent_commit=None, move_main=True)
    hub_repo = fake_hub.repo(repo_id)  # type: ignore[attr-defined]
    assert {"merged/model.safetensors", "gguf/model-Q4_K_M.gguf"} <= set(hub_repo.files_at("run-aaaaaaaaaaaa"))
    registry.publish(repo_id, key_b, folder("b", False), manifest(key_b), parent_commit=registry.main_commit(repo_id), move_main=True)
    assert registry.main(repo_id) == key_b and not any(p.startswith(("merged/", "gguf/")) for p in hub_repo.files_at("main"))

    registry.set_main(repo_id, key_a, "revert", parent_commit=registry.main_commit(repo_id))
    assert registry.main(repo_id) == key_a
    assert hub_repo.read("gguf/model-Q4_K_M.gguf") == b"GGUF" + b"\1" * 100
    assert hub_repo.read("merged/model.safetensors") == b"\0M" * 200

    scored = registry.download(repo_id, key_a, tmp_path / "scored")
    assert (scored / "adapter_model.safetensors").is_file()
    assert not (scored / "merged").exists() and not (scored / "gguf").exists()


def test_spec_layout_of_exports() -> None:
    """Where each export sits: the adapter, else the merged weights, at the root (what consumers
    and evals read before lists existed); merged/ beside an adapter; one file per quantization."""

    def paths(method: str, save: object) -> dict[str, str]:
        spec = RunSpec.model_validate(
            {"model": {"id": "a/b"}, "data": {"train": [{"path": "t.jsonl"}]}, "method": {"type": method}, "output": {"save": save}}
        )
        return spec.output.paths()

    assert paths("lora", "adapter") == {"adapter": ""}
    assert paths("lora", "merged") == {"merged": ""}
    assert paths("lora", ["merged", "adapter", "gguf:q4_k_m"]) == {
        "adapter": "",
        "merged": "merged",
        "gguf:q4_k_m": "gguf/model-Q4_K_M.gguf",
    }
    assert paths("lora", "gguf:q8_0") == {"adapter": "", "gguf:q8_0": "gguf/model-Q8_0.gguf"}
    assert paths("full", ["gguf:q8_0", "gguf:f16"]) == {
        "merged": "",
        "gguf:f16": "gguf/model-F16.gguf",
        "gguf:q8_0": "gguf/model-Q8_0.gguf",
    }


LLAMA_CPP = os.environ.get("TUNEFORM_LLAMA_CPP") or str(ROOT / ".llama.cpp")


@pytest.mark.skipif(
    not (Path(LLAMA_CPP) / "convert_hf_to_gguf.py").is_file(),
    reason="no llama.cpp: scripts/fetch_llama_cpp.sh lays out .llama.cpp (SKIP_BUILD=1: the converter alone, for f16/q8_0)",
)
def test_gguf_export_loads_and_names_its_quantization(tmp_path: Path, registry: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tiny LoRA run applied with GGUF exports, read back with llama.cpp's gguf package: each
    file of the published version says the quantization asked for. compute.engine is auto, so on
    a CUDA machine with Unsloth this is Unsloth's save_pretrained_gguf, elsewhere TRL and the
    llama.cpp converter (and llama-quantize, when scripts/fetch_llama_cpp.sh built it)."""
    quants = ["f16", "q8_0"] + (["q4_k_m"] if os.access(Path(LLAMA_CPP) / "llama-quantize", os.X_OK) else [])
    run = (
        "model: {id: ./models/spm-tiny, max_seq_length: 192}\n"
        "data: {train: [{path: data/support.jsonl, max_samples: 64}]}\n"
        "method: {type: lora, r: 4}\n"
        "training: {max_steps: 4, per_device_train_batch_size: 4, packing: false}\n"
        "compute: {backend: local}\n"
        f"output: {{repo: tuneform-demo/demo, save: [adapter, {', '.join(f'gguf:{q}' for q in quants)}]}}\n"
    )
    demo = demo_repo(tmp_path / "demo", run)
    _sentencepiece_model(demo.path / "models" / "spm-tiny")
    demo.commit("a model whose vocabulary llama.cpp's converter reads")
    monkeypatch.setenv("TUNEFORM_LLAMA_CPP", LLAMA_CPP)
    result = demo.cli("apply", "runs/demo.yaml")
    assert result.exit_code == 0, result.output

    monkeypatch.syspath_prepend(str(Path(LLAMA_CPP) / "gguf-py"))
    from gguf import GGUFReader, LlamaFileType

    model = registry / "versions" / (registry / "main").read_text().strip() / "model"
    expected = {"f16": LlamaFileType.MOSTLY_F16, "q8_0": LlamaFileType.MOSTLY_Q8_0, "q4_k_m": LlamaFileType.MOSTLY_Q4_K_M}
    for quant in quants:
        reader = GGUFReader(model / "gguf" / f"model-{quant.upper()}.gguf")
        field = reader.fields["general.file_type"]
        assert LlamaFileType(int(field.parts[field.data[0]][0])) == expected[quant], quant
        assert reader.fields["general.architecture"].contents() == "llama" and len(reader.tensors) > 0
    assert (model / "adapter_config.json").is_file() and not (model / "merged").exists()
    card = (model / "README.md").read_text()
    assert f"llama-cli -m gguf/model-{quants[-1].upper()}.gguf" in card


def _sentencepiece_model(folder: Path) -> Path:
    """A random-initialised tiny Llama with a sentencepiece tokenizer trained here: llama.cpp's
    converter reads a sentencepiece vocabulary as is, where a BPE one (the demo model's) must be a
    published tokenizer it has a fingerprint of."""
    import sentencepiece as spm
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaTokenizer

    folder.mkdir(parents=True)
    corpus = folder / "corpus.txt"
    lines = [
        f"Customer {i} asks about {topic}. billing refund track_order cancel_order user assistant"
        for i in range(200)
        for topic in ("billing", "refund", "orders")
    ]
    corpus.write_text("\n".join(lines))
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(folder / "tokenizer"), vocab_size=200, model_type="bpe",
        user_defined_symbols=["<|im_start|>", "<|im_end|>"], pad_id=3, bos_id=1, eos_id=2, unk_id=0, minloglevel=2,
    )  # fmt: skip
    # The HF tokenizer of the same vocabulary: sentencepiece's pieces, and BPE merges in the order
    # the merged pieces were learned (what transformers' extractor does, without its protobuf need).
    sp = spm.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))
    vocab = {sp.id_to_piece(i): i for i in range(sp.get_piece_size())}
    merges = sorted(
        ((p[:k], p[k:]) for p in vocab for k in range(1, len(p)) if p[:k] in vocab and p[k:] in vocab), key=lambda m: vocab["".join(m)]
    )
    tokenizer = LlamaTokenizer(
        vocab=vocab, merges=merges, legacy=False, unk_token="<unk>", bos_token="<s>", eos_token="<|im_end|>", pad_token="<pad>"
    )
    tokenizer.add_tokens(["<|im_start|>", "<|im_end|>"], special_tokens=True)
    tokenizer.chat_template = (ROOT / "models/demo-tiny/chat_template.jinja").read_text()  # marks the trained spans
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=256, bos_token_id=1, eos_token_id=tokenizer.eos_token_id, pad_token_id=3,
    )  # fmt: skip
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "corpus.txt").unlink()
    (folder / "tokenizer.vocab").unlink()
    return folder
