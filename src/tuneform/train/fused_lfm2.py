"""LFM2 through Unsloth's fused LoRA, SwiGLU and RMSNorm kernels when nothing is compiled.

Why this exists: Unsloth trains Llama-family models through its own Triton kernels, which need no
compilation, but LFM2 through unsloth_zoo's torch.compile'd forward. A short job cannot repay
that compilation (estimate/estimator.py `compile_mode` picks "none" for LFM2 below a few million
tokens), and with nothing compiled each LoRA projection, norm and gate of LFM2 runs as separate
PyTorch operations that each read and write whole activations: 24.7% MFU on an H100 against
44.9% compiled (docs/calibration.md, runs 19 and 28), where the Llama-1B shape keeps 42% with
nothing compiled (run 22) because its layers go through those kernels.

LFM2's layers are made of the same parts under other names: a SwiGLU feed-forward (w1 gate, w3
up, w2 down), RMSNorms (`weight * x / rms`, Llama's form), and LoRA linears. So for an eager
LFM2 job this module routes them through the kernels Unsloth uses for Llama:
- each plain LoRA linear through `LoRA_W` (the base and the adapter products accumulated in one
  output, no separate scale and add);
- the feed-forward through `apply_lora_mlp_swiglu` (fused gate and its backward);
- every RMSNorm through `fast_rms_layernorm`.
On one H100 that took the 1M-token LFM2.5 job from 24.7% to 30.0% MFU and from 60.0 to 39.3 GiB
(docs/calibration.md, runs 29 and 30, same machine).

What the kernels compute is what transformers and PEFT compute, to bf16 rounding:
tests/test_fused_lfm2.py holds the logits and adapter gradients of both to the same model in fp32
on a GPU (Triton has no CPU backend). A LoRA linear that is not plain (dropout, a bias on B, DoRA, a
trainable base) keeps PEFT's forward, as does any call while its adapters are off (the
reference pass of preference training) or merged.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F


def enable(model: torch.nn.Module) -> int:
    """Route `model`'s LFM2 LoRA linears, feed-forwards and RMSNorms through Unsloth's fused
    kernels; returns how many modules now run fused (0 for a model without LFM2 layers).
    Idempotent. Call once the adapters are attached, with nothing compiled."""
    from peft.tuners.lora import Linear as LoraLinear
    from transformers.models.lfm2.modeling_lfm2 import Lfm2MLP, Lfm2Model, Lfm2RMSNorm

    if not any(isinstance(m, Lfm2Model) for m in model.modules()):
        return 0
    from unsloth.kernels import apply_lora_mlp_swiglu, fast_rms_layernorm, get_lora_parameters
    from unsloth.kernels.fast_lora import LoRA_W

    def lora_forward(self: Any, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if args or kwargs or self.disable_adapters or self.merged:
            return self._tuneform_unfused(x, *args, **kwargs)
        weight, quant_state, a, b, scale = get_lora_parameters(self)
        out: torch.Tensor = LoRA_W.apply(x, weight, quant_state, a, b, scale)
        return out

    def mlp_forward(self: Any, x: torch.Tensor) -> torch.Tensor:
        # Unsloth's kernel reads Llama's names; its fallback calls these same (fused) linears.
        names = types.SimpleNamespace(gate_proj=self.w1, up_proj=self.w3, down_proj=self.w2, act_fn=F.silu)
        out: torch.Tensor = apply_lora_mlp_swiglu(names, x)
        return out

    def norm_forward(self: Any, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = fast_rms_layernorm(self, x)
        return out

    fused = 0
    forward: Callable[..., torch.Tensor]
    for module in model.modules():
        if isinstance(module, LoraLinear):
            if not _plain_lora(module):
                continue
            forward = lora_forward
        elif isinstance(module, Lfm2MLP):
            forward = mlp_forward
        elif isinstance(module, Lfm2RMSNorm):
            forward = norm_forward
        else:
            continue
        if "_tuneform_unfused" not in vars(module):
            vars(module)["_tuneform_unfused"] = module.forward
            module.forward = types.MethodType(forward, module)  # type: ignore[method-assign]
        fused += 1
    return fused


def _plain_lora(linear: Any) -> bool:
    """One adapter over a frozen nn.Linear, no dropout, no bias on B, no DoRA: what `LoRA_W`
    computes exactly. Anything else keeps PEFT's forward."""
    adapters = list(linear.lora_A.keys())
    if len(adapters) != 1:
        return False
    name = adapters[0]
    base = linear.get_base_layer()
    return (
        isinstance(base, torch.nn.Linear)
        and not base.weight.requires_grad
        and isinstance(linear.lora_dropout[name], torch.nn.Identity)
        and linear.lora_B[name].bias is None
        and not linear.use_dora.get(name, False)
    )
