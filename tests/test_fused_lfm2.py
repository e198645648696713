"""train/fused_lfm2.py: LFM2's layers through Unsloth's fused kernels compute what transformers
and PEFT compute.

On the CPU: which LoRA linears count as plain (the only ones fused) and that a model without LFM2
layers is left alone. On a CUDA GPU with Unsloth installed (the device; Triton has no CPU
backend): a tiny LFM2 with LoRA, or QLoRA, gives the same logits and adapter gradients, fused or
not.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, Lfm2Config, LlamaConfig

from tuneform.train import fused_lfm2


def _lora(model: torch.nn.Module, **options: object) -> torch.nn.Module:
    config = LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", init_lora_weights=False, **options)  # type: ignore[arg-type]
    return get_peft_model(model, config)


def _tiny_llama() -> torch.nn.Module:
    config = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, vocab_size=64)
    return AutoModelForCausalLM.from_config(config)


def test_only_plain_lora_linears_are_fused() -> None:
    """Dropout, a bias on B or DoRA change what the adapter computes: those keep PEFT's forward."""
    plain = _lora(_tiny_llama())
    assert all(fused_lfm2._plain_lora(m) for m in plain.modules() if hasattr(m, "lora_A") and hasattr(m, "base_layer"))
    for options in ({"lora_dropout": 0.1}, {"lora_bias": True}, {"use_dora": True}):
        other = _lora(_tiny_llama(), **options)
        linears = [m for m in other.modules() if hasattr(m, "lora_A") and hasattr(m, "base_layer")]
        assert linears and not any(fused_lfm2._plain_lora(m) for m in linears), options


def test_a_model_without_lfm2_layers_is_left_alone() -> None:
    model = _lora(_tiny_llama())
    before = [m.forward for m in model.modules()]
    assert fused_lfm2.enable(model) == 0
    assert [m.forward for m in model.modules()] == before


needs_unsloth_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="Unsloth's Triton kernels need a CUDA GPU")

TINY_LFM2 = dict(
    vocab_size=512,
    hidden_size=256,
    intermediate_size=512,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    layer_types=["conv", "full_attention", "conv", "full_attention"],
    block_auto_adjust_ff_dim=False,
)
MLPS, NORMS = 4, 4 * 2 + 2 * 2 + 1  # a feed-forward a layer; 2 norms a layer, q and k in attention layers, the final one


def _outputs(model: torch.nn.Module, *, adapter: bool = True) -> dict[str, torch.Tensor]:
    """The logits and every adapter gradient for fixed ids and upstream gradient, in fp32; without
    the adapter (preference training's reference pass) the logits alone."""
    ids = torch.randint(0, 512, (2, 96), device="cuda", generator=torch.Generator(device="cuda").manual_seed(0))
    upstream = torch.randn(2, 96, 512, device="cuda", generator=torch.Generator(device="cuda").manual_seed(1))
    model.zero_grad()
    if not adapter:
        with torch.no_grad(), model.disable_adapter():  # type: ignore[operator]
            return {"logits (adapter off)": model(input_ids=ids, use_cache=False).logits.float()}
    logits = model(input_ids=ids, use_cache=False).logits
    (logits.float() * upstream).sum().backward()
    grads = {n: p.grad.float() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}
    return {"logits": logits.float(), **grads}


def _error(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got - want).norm() / want.norm()).item()


@needs_unsloth_gpu
def test_fused_lfm2_matches_transformers_and_peft_on_the_gpu() -> None:
    pytest.importorskip("unsloth")
    torch.manual_seed(0)
    plain = _lora(AutoModelForCausalLM.from_config(Lfm2Config(**TINY_LFM2), dtype=torch.bfloat16).cuda())
    fused = copy.deepcopy(plain)
    # LoRA linears (2 conv layers x 2, 2 attention layers x 4, 4 MLPs x 3), the MLPs, the norms
    assert fused_lfm2.enable(fused) == (2 * 2 + 2 * 4 + 4 * 3) + MLPS + NORMS
    # bf16 rounds differently along any two orders of the same sums, so each bf16 model is held to
    # the same fp32 model: the fused kernels may not stray more than twice as far as PEFT's forward.
    reference = copy.deepcopy(plain).float()
    failures = []
    for adapter in (True, False):
        exact, want, got = _outputs(reference, adapter=adapter), _outputs(plain, adapter=adapter), _outputs(fused, adapter=adapter)
        assert exact.keys() == want.keys() == got.keys()
        assert len(exact) > 1 or not adapter  # the adapter's gradients are there
        for name, value in exact.items():
            peft_error, fused_error = _error(want[name], value), _error(got[name], value)
            if not fused_error <= 2 * peft_error + 1e-3:
                failures.append(f"{name}: fused {fused_error:.3g} vs PEFT {peft_error:.3g} from fp32")
    assert not failures, "\n".join(failures)


@needs_unsloth_gpu
def test_fused_lfm2_on_4_bit_weights_matches_peft(tmp_path: Path) -> None:
    """QLoRA: PEFT's 4-bit LoRA layers are not `lora.Linear`, so they keep PEFT's forward, and the
    feed-forward kernel dequantizes the NF4 weights itself. There is no fp32 model of NF4 weights
    to hold both to, so fused is held to PEFT's bnb forward over the same weights directly."""
    pytest.importorskip("unsloth")
    pytest.importorskip("bitsandbytes")
    from tuneform.train.engine import qlora_quantization

    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(Lfm2Config(**TINY_LFM2), dtype=torch.bfloat16).save_pretrained(tmp_path)

    def load() -> torch.nn.Module:
        model = AutoModelForCausalLM.from_pretrained(tmp_path, quantization_config=qlora_quantization(torch.bfloat16), device_map={"": 0})
        torch.manual_seed(1)  # the same adapter weights in both
        return _lora(model)

    plain, fused = load(), load()
    assert fused_lfm2.enable(fused) == MLPS + NORMS
    want, got = _outputs(plain), _outputs(fused)
    assert want.keys() == got.keys() and len(want) > 1
    failures = [
        f"{name}: {_error(got[name], value):.3g} from PEFT's" for name, value in want.items() if not _error(got[name], value) < 2e-2
    ]
    assert not failures, "\n".join(failures)
