"""The trl engine's packed attention: one flash varlen call per layer on a GPU, the route it took
recorded, and the same numbers as each document attended alone.

The CPU half checks the route decision, the documents read from position ids, the mask function
that keeps transformers from building a dense mask, and the attention function's own fallback
(SDPA with a document mask) on every packed family. The GPU half (`python -m pytest
tests/test_varlen_attention.py -s` on the device, where it prints the route) checks the flash
call against per-document SDPA in bf16, and the whole engine on tiny models of each family.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, MambaConfig

# The families and helpers of the CPU property test: the same tiny models, the same packed batch.
from test_packing_exact import (
    CONFIGS,
    assert_documents_match_alone,
    conversations,
    document_loss,
    documents,
    prepared_packed,
    tiny_model,
)
from tuneform.runfile.spec import RunSpec
from tuneform.train import engine, packed_attention, varlen_attention
from tuneform.train.packed_attention import VARLEN, choose_trl_route
from tuneform.train.packed_conv import document_ids
from tuneform.train.varlen_attention import ATTENTION, cumulative_lengths, flash_varlen

GPU = dict(
    requested="auto", packing=True, cuda=True, flash_available=True, capability_major=9, precision="bf16", flex_available=True, head_dim=64
)


@pytest.mark.parametrize(
    "change, implementation, route",
    [
        ({}, VARLEN, "varlen-aten"),
        ({"precision": "fp16"}, VARLEN, "varlen-aten"),
        ({"precision": "fp32"}, "flex_attention", "flex-document-mask"),  # flash kernels take 16-bit only
        ({"capability_major": 7}, "flex_attention", "flex-document-mask"),  # T4: no flash kernels
        ({"flash_available": False}, "flex_attention", "flex-document-mask"),
        ({"capability_major": 7, "flex_available": False}, None, "sdpa-document-mask"),
        ({"precision": "fp32", "head_dim": 8}, None, "sdpa-document-mask"),  # FlexAttention's kernel needs heads of 16 or more
        ({"precision": "fp32", "head_dim": 16}, "flex_attention", "flex-document-mask"),
        ({"requested": "per-document"}, None, "sdpa-document-mask"),  # the route before, to compare against
        ({"cuda": False}, None, "sdpa-document-mask"),  # FlexAttention has no backward on the CPU
        ({"packing": False}, None, "n/a"),
    ],
)
def test_trl_route(change: dict[str, Any], implementation: str | None, route: str) -> None:
    assert choose_trl_route(**{**GPU, **change}) == (implementation, route)


def test_flex_attention_has_no_backward_on_the_cpu() -> None:
    """Why the CPU keeps sdpa's document mask: if torch learns this, the CPU route may change."""
    from torch.nn.attention.flex_attention import flex_attention

    q = torch.randn(1, 2, 8, 4, requires_grad=True)
    with pytest.raises(NotImplementedError, match="backward on CPU"):
        flex_attention(q, q, q)


def test_documents_are_read_from_restarting_positions_across_rows() -> None:
    positions = torch.tensor([[0, 1, 2, 0, 1, 0, 1, 2, 3], [0, 1, 2, 3, 4, 5, 0, 1, 2]])
    cu, longest = cumulative_lengths(positions)
    assert cu.dtype == torch.int32
    assert cu.tolist() == [0, 3, 5, 9, 15, 18]  # each row starts a document; lengths 3, 2, 4, 6, 3
    assert longest == 6
    lengths = cu.diff().tolist()
    # The same documents as LFM2's conv reset and transformers' document mask see.
    ids = document_ids(positions)
    assert lengths == [len(list(group)) for row in ids.tolist() for _, group in itertools.groupby(row)]


def test_no_dense_mask_is_built_for_packed_rows(tmp_path: Path) -> None:
    """transformers asks the registered mask function, which answers None for self-attention
    without a padding mask; a padding mask still gets sdpa's mask."""
    from transformers.masking_utils import create_causal_mask, sliding_window_overlay

    varlen_attention.register()
    config = CONFIGS["llama"]()
    config._attn_implementation = VARLEN
    embeds = torch.zeros(1, 9, 4)
    positions = torch.tensor([[0, 1, 2, 0, 1, 0, 1, 2, 3]])
    assert create_causal_mask(config, embeds, None, None, position_ids=positions) is None
    padding = torch.tensor([[0, 1, 1, 1, 1, 1, 1, 1, 1]])
    mask = create_causal_mask(config, embeds, padding, None, position_ids=positions)
    assert mask is not None and mask.shape == (1, 1, 9, 9) and not bool(mask[0, 0, :, 0].any())
    # A mask a model adds to the causal one (Gemma 3's image blocks) is built as sdpa builds it.
    window = sliding_window_overlay(2)
    assert create_causal_mask(config, embeds, None, None, position_ids=positions, and_mask_function=window) is not None


def test_a_model_loaded_with_it_saves_a_config_any_loader_reads(tmp_path: Path) -> None:
    """The attention choice is a training-time kernel choice: it must not travel with the weights."""
    varlen_attention.register()
    folder = tiny_model(CONFIGS["llama"](), tmp_path / "llama")
    model = AutoModelForCausalLM.from_pretrained(folder, attn_implementation=VARLEN)
    assert model.config._attn_implementation == VARLEN
    model.save_pretrained(tmp_path / "saved")
    assert VARLEN not in (tmp_path / "saved" / "config.json").read_text()


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU fallback; the GPU takes the flash call (below)")
@pytest.mark.parametrize("family", sorted(CONFIGS))
def test_the_attention_function_keeps_documents_apart_where_flash_cannot(family: str, tmp_path: Path) -> None:
    """On the CPU (fp32) the registered function attends through SDPA with its own document mask,
    sliding windows included, and counts that route: per-token logits and gradients of each
    packed document equal those of the document alone."""
    folder = tiny_model(CONFIGS[family](), tmp_path / family)
    prepared = prepared_packed(folder, tmp_path / "out")
    batch = next(iter(prepared.trainer.get_train_dataloader()))
    assert prepared.settings.attention == "sdpa-document-mask"  # the engine's CPU route
    model = prepared.trainer.model
    varlen_attention.register().reset()
    model.set_attn_implementation(VARLEN)
    assert model.config._attn_implementation == VARLEN
    inputs = {key: value for key, value in batch.items() if key != "labels"}
    packed_logits = model(**inputs, use_cache=False).logits[0]
    assert set(ATTENTION.calls) == {"sdpa-document-mask"}
    assert varlen_attention.ran("varlen-aten") == "sdpa-document-mask"  # the record says what ran
    assert_documents_match_alone(model, batch, packed_logits, documents(batch["position_ids"][0]), family)


def test_a_model_without_flex_attention_loads_with_the_default(tmp_path: Path) -> None:
    """FlexAttention is the route where the flash kernels are not (fp32, older GPUs); a model
    class without it (a state-space model: packing is refused for it anyway) still loads."""
    config = MambaConfig(vocab_size=988, hidden_size=32, state_size=4, num_hidden_layers=2, expand=2, conv_kernel=3)
    folder = tiny_model(config, tmp_path / "mamba")
    spec = RunSpec.model_validate(
        {
            "model": {"id": "./models/tiny"},
            "data": {"train": [{"path": "t.jsonl"}]},
            "method": {"type": "full"},
            "compute": {"engine": "trl"},
        }
    )
    settings = engine.resolve_settings(spec, engine="trl", cuda=False, bf16_supported=False, processes=1)
    with pytest.raises(ValueError, match="flex"):
        AutoModelForCausalLM.from_pretrained(folder, attn_implementation="flex_attention")
    model = engine._load_trl(spec, str(folder), settings, "flex_attention")
    assert model.config._attn_implementation != "flex_attention"
    assert packed_attention.trl_route(model, packing=True) == f"{model.config._attn_implementation}-document-mask"


# ---------------------------------------------------------------------------------------------
# On a CUDA GPU: the flash call itself

needs_flash = pytest.mark.skipif(
    not (torch.cuda.is_available() and torch.cuda.get_device_capability()[0] >= 8),
    reason="torch's flash kernels need an Ampere or newer GPU",
)


def per_document(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lengths: list[int], window: int | None) -> torch.Tensor:
    """Reference: (T, H, D) queries, (T, H_kv, D) keys/values -> causal attention within each
    document (and the last `window` tokens), one SDPA call per document, in fp32."""
    outs, start = [], 0
    for length in lengths:
        sl = slice(start, start + length)
        back = torch.arange(length, device=q.device)[:, None] - torch.arange(length, device=q.device)[None, :]
        allowed = (back >= 0) & (back < window if window else True)
        out = F.scaled_dot_product_attention(
            q[sl].transpose(0, 1), k[sl].transpose(0, 1), v[sl].transpose(0, 1), attn_mask=allowed, enable_gqa=True
        )
        outs.append(out.transpose(0, 1))
        start += length
    return torch.cat(outs)


@needs_flash
@pytest.mark.parametrize("window", [None, 512])
@pytest.mark.parametrize("lengths", [[700, 40, 300, 1008], [2048], [1, 1, 2046]])
def test_one_varlen_call_equals_per_document_attention_on_the_gpu(lengths: list[int], window: int | None) -> None:
    total, heads, kv_heads, dim = sum(lengths), 32, 8, 64  # the Llama-3.2-1B attention shape
    gen = torch.Generator(device="cuda").manual_seed(0)
    tensors = [
        torch.randn(total, h, dim, device="cuda", dtype=torch.bfloat16, generator=gen).requires_grad_() for h in (heads, kv_heads, kv_heads)
    ]
    positions = torch.cat([torch.arange(n, device="cuda") for n in lengths])[None]
    cu, longest = cumulative_lengths(positions)
    out = flash_varlen(*tensors, cu, longest, scale=None, window=window)
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, tensors, grad)

    ref_inputs = [t.detach().float().requires_grad_() for t in tensors]
    ref = per_document(*ref_inputs, lengths, window)
    want = torch.autograd.grad(ref, ref_inputs, grad.float())
    torch.testing.assert_close(out.float(), ref, atol=2e-2, rtol=2e-2)
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape  # key/value gradients come back per key/value head
        torch.testing.assert_close(g.float(), w, atol=5e-2, rtol=5e-2)


@needs_flash
def test_fp32_activations_under_autocast_take_the_flash_call_in_the_autocast_dtype() -> None:
    """QLoRA keeps norms in fp32, so queries can reach attention in fp32 inside the trainer's bf16
    autocast, where SDPA would compute in bf16: the flash call does the same instead of falling back."""
    lengths, heads, kv_heads, dim = [300, 40, 500], 8, 2, 64
    gen = torch.Generator(device="cuda").manual_seed(1)
    q, k, v = (torch.randn(1, h, sum(lengths), dim, device="cuda", generator=gen) for h in (heads, kv_heads, kv_heads))
    positions = torch.cat([torch.arange(n, device="cuda") for n in lengths])[None]
    module = torch.nn.Module()
    module.is_causal = True
    ATTENTION.reset()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out, _ = ATTENTION(module, q, k, v, None, position_ids=positions)
    assert dict(ATTENTION.calls) == {"varlen-aten": 1} and out.dtype == torch.bfloat16
    want = per_document(*(t[0].transpose(0, 1) for t in (q, k, v)), lengths, None)
    torch.testing.assert_close(out[0].float(), want, atol=2e-2, rtol=2e-2)


@needs_flash
@pytest.mark.parametrize("family", sorted(CONFIGS))
def test_the_engine_attends_packed_rows_in_one_call_on_the_gpu(family: str, tmp_path: Path) -> None:
    """The engine's own preparation on the GPU (bf16): it loads the model with the varlen
    function, records the route, runs only flash calls, and each packed document's logits and
    gradients match the document alone to bf16's precision."""
    prepared = prepared_packed(tiny_model(CONFIGS[family](), tmp_path / family), tmp_path / "out", "lora")
    print(f"\n{family}: attention {prepared.settings.attention}, packing {prepared.settings.packing_route}")
    assert prepared.settings.precision == "bf16" and prepared.settings.attention == "varlen-aten"
    batch = prepared.trainer._prepare_inputs(next(iter(prepared.trainer.get_train_dataloader())))
    model = prepared.trainer.model
    ATTENTION.reset()
    inputs = {key: value for key, value in batch.items() if key != "labels"}
    params = [p for p in model.parameters() if p.requires_grad]
    packed_logits = model(**inputs, use_cache=False).logits[0].float()
    print(f"{family}: calls {dict(ATTENTION.calls)}")
    assert set(ATTENTION.calls) == {"varlen-aten"}
    ids, labels = batch["input_ids"][0], batch["labels"][0]
    for start, end in documents(batch["position_ids"][0].cpu()):
        alone_logits = model(input_ids=ids[None, start:end], use_cache=False).logits[0].float()
        scale = float(alone_logits.abs().max())
        torch.testing.assert_close(packed_logits[start:end], alone_logits, rtol=2e-2, atol=2e-2 * scale)
        # materialize_grads: Gemma 3's multimodal model has parameters a text forward never uses (its vision tower)
        packed_loss, alone_loss = document_loss(packed_logits[start:end], labels[start:end]), document_loss(alone_logits, labels[start:end])
        packed_grads = torch.autograd.grad(packed_loss, params, retain_graph=True, allow_unused=True, materialize_grads=True)
        alone_grads = torch.autograd.grad(alone_loss, params, allow_unused=True, materialize_grads=True)
        packed_flat, alone_flat = (torch.cat([g.float().flatten() for g in gs]) for gs in (packed_grads, alone_grads))
        # bf16 gradients: close in direction and size, not element by element.
        assert F.cosine_similarity(packed_flat, alone_flat, dim=0) > 0.99
        assert abs(float(packed_flat.norm() / alone_flat.norm()) - 1) < 0.05


@needs_flash
@pytest.mark.parametrize("family", ["gemma3_text", "lfm2"])
def test_fp32_on_the_gpu_keeps_documents_apart_without_the_flash_call(family: str, tmp_path: Path) -> None:
    """The flash kernels take 16-bit only: an fp32 run packs through FlexAttention's block-sparse
    document mask (sliding window included) where the heads are 16 wide or more, else sdpa's
    document mask (the tiny models' heads are 8), recorded as such."""
    from tuneform.train.packed_attention import FLEX_MIN_HEAD_DIM, head_dim_of

    config = CONFIGS[family]()
    expected = "flex-document-mask" if head_dim_of(config) >= FLEX_MIN_HEAD_DIM else "sdpa-document-mask"
    folder = tiny_model(config, tmp_path / family)
    spec = RunSpec.model_validate(
        {
            "model": {"id": "./models/tiny", "max_seq_length": 128},
            "data": {"train": [{"path": "t.jsonl"}]},
            "method": {"type": "full"},
            "training": {"packing": True, "max_steps": 1, "per_device_train_batch_size": 2, "precision": "fp32"},
            "compute": {"engine": "trl"},
        }
    )
    prepared = engine.prepare(spec, str(folder), conversations(12), [], tmp_path / "out")
    print(f"\n{family} fp32: attention {prepared.settings.attention}")
    assert prepared.settings.attention == expected
    batch = prepared.trainer._prepare_inputs(next(iter(prepared.trainer.get_train_dataloader())))
    model = prepared.trainer.model
    inputs = {key: value for key, value in batch.items() if key != "labels"}
    packed_logits = model(**inputs, use_cache=False).logits[0]
    ids = batch["input_ids"][0]
    for start, end in documents(batch["position_ids"][0].cpu()):
        alone_logits = model(input_ids=ids[None, start:end], use_cache=False).logits[0]
        scale = float(alone_logits.abs().max())
        torch.testing.assert_close(packed_logits[start:end], alone_logits, rtol=1e-3, atol=1e-3 * scale)


def test_the_head_size_the_route_is_chosen_by() -> None:
    """From the config alone, before any weights load: an explicit head_dim (Qwen3, Gemma 3),
    else hidden / heads; a multimodal model's text decoder; none for a state-space model."""
    from transformers import Gemma3Config, LlamaConfig, MambaConfig, Qwen3Config

    from tuneform.train.packed_attention import head_dim_of

    assert head_dim_of(LlamaConfig(hidden_size=64, num_attention_heads=4)) == 16
    assert head_dim_of(Qwen3Config(hidden_size=64, num_attention_heads=4, head_dim=32)) == 32
    assert head_dim_of(Gemma3Config(text_config={"hidden_size": 64, "num_attention_heads": 2, "head_dim": 8})) == 8
    assert head_dim_of(MambaConfig()) == 0
