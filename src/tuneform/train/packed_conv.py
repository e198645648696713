"""LFM2's short convolutions, made to stop at document boundaries in packed rows.

Why this exists: tuneform packs whole conversations into each training row and keeps them apart
by position ids. Attention layers honour that (transformers turns restarting position ids into a
document mask, train/packing.py), but LFM2's "conv" layers do not: `Lfm2ShortConv` runs a causal
depthwise convolution of `conv_L_cache` taps over the whole row, so the first tokens of each
document read the last tokens of the document before it. transformers passes a `seq_idx` down to
the convolution for kernels that can reset at document starts (the `causal_conv1d` package), but
its PyTorch fallback, the one the trl engine runs on CPU and on GPUs without that package, ignores
it, and nothing derives `seq_idx` from position ids in the first place.

So for packed rows this module:
1. gives the LFM2 decoder stack a `seq_idx` (a document number per token) derived from the
   position ids, with the rule transformers uses for its document mask (a new document wherever
   the position does not follow the previous one), and
2. computes each conv layer's convolution with every tap that would reach into an earlier
   document zeroed: exactly what the document sees alone, in plain PyTorch.

Rows that are not packed (a single document, a padding mask, a KV cache during generation) keep
transformers' own forward untouched. tests/test_packing_exact.py checks that a packed document's
logits and gradients equal its own, which also catches a transformers release whose
`Lfm2ShortConv` computes something else than the packed forward here.
"""

from __future__ import annotations

import types
from typing import Any

import torch
import torch.nn.functional as F


def document_ids(position_ids: torch.Tensor) -> torch.Tensor:
    """A document number per token (0, 1, ...) for each row of `position_ids` (batch, tokens):
    a new document starts wherever a position is not its predecessor plus one, as transformers'
    `find_packed_sequence_indices` decides for the attention mask."""
    first = position_ids[:, :1] - 1
    steps = torch.diff(position_ids, prepend=first, dim=-1)
    return (steps != 1).cumsum(-1).to(torch.int32)


def causal_conv1d_by_document(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, seq_idx: torch.Tensor) -> torch.Tensor:
    """The causal depthwise convolution `Lfm2ShortConv` computes, restarted at each document.

    `x` is (batch, channels, tokens), `weight` (channels, taps), `seq_idx` (batch, tokens). Tap j
    of a causal convolution reads the token `taps - 1 - j` places back; it contributes only where
    that token belongs to the same document, which is what zero padding gives a document alone.
    The taps are summed in fp32 (as a convolution kernel accumulates) and returned in the
    weight's dtype, as transformers' convolution returns them.
    """
    taps = weight.shape[-1]
    x, w = x.float(), weight.float()
    out = x * w[:, taps - 1, None]
    for back in range(1, min(taps, x.shape[-1])):
        same = seq_idx[:, back:] == seq_idx[:, :-back]  # (batch, tokens - back)
        shifted = x[..., :-back] * same[:, None, :].float()
        out = out + F.pad(shifted * w[:, taps - 1 - back, None], (back, 0))
    if bias is not None:
        out = out + bias.float()[:, None]
    return out.to(weight.dtype)


def _packed_conv_forward(
    self: Any, hidden_states: torch.Tensor, past_key_values: Any = None, attention_mask: Any = None, seq_idx: Any = None
) -> Any:
    """`Lfm2ShortConv.forward` for a packed row (`seq_idx` given, no cache); anything else goes to
    transformers' own forward, kept as `self._tuneform_forward` (a cache keeps conv states that
    only it updates)."""
    if seq_idx is None or past_key_values is not None:
        return self._tuneform_forward(hidden_states, past_key_values=past_key_values, attention_mask=attention_mask, seq_idx=seq_idx)
    gates_and_input = self.in_proj(hidden_states).transpose(-1, -2)
    before, after, x = gates_and_input.chunk(3, dim=-2)
    mixed = causal_conv1d_by_document(before * x, self.conv.weight.squeeze(1), self.conv.bias, seq_idx).to(hidden_states.dtype)
    return self.out_proj((after * mixed).transpose(-1, -2).contiguous())


def _add_seq_idx(module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Forward pre-hook of the LFM2 decoder stack: a `seq_idx` for rows that pack several
    documents, where transformers builds a document mask for attention (position ids and no
    padding mask; with a cache the conv layers keep transformers' forward)."""
    position_ids = kwargs.get("position_ids")
    if position_ids is None or kwargs.get("attention_mask") is not None:
        return args, kwargs
    seq_idx = document_ids(position_ids)
    if int(seq_idx[:, -1].max()) == 0:
        return args, kwargs  # one document per row: nothing to keep apart
    return args, {**kwargs, "seq_idx": seq_idx}


def enable(model: torch.nn.Module) -> int:
    """Make `model`'s LFM2 conv layers reset at document starts in packed rows; returns how many
    conv layers now do. Idempotent; a model without LFM2 layers is left as it is (0)."""
    from transformers.models.lfm2.modeling_lfm2 import Lfm2Model, Lfm2ShortConv

    patched = 0
    for module in model.modules():
        if isinstance(module, Lfm2Model) and _add_seq_idx not in module._forward_pre_hooks.values():
            module.register_forward_pre_hook(_add_seq_idx, with_kwargs=True)
        elif isinstance(module, Lfm2ShortConv):
            if not hasattr(module, "_tuneform_forward"):
                module._tuneform_forward = module.forward
                module.forward = types.MethodType(_packed_conv_forward, module)
            patched += 1
    return patched
