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

import inspect
import sys
import types
from collections.abc import Callable
from types import ModuleType
from typing import Any, Literal

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

    `x` is (batch, channels, tokens), `weight` (channels, taps), `seq_idx` (batch, tokens);
    returned in the weight's dtype, as transformers' convolution returns it.

    Why in two parts: only a document's first `taps - 1` tokens have a window that reaches into
    the document before, a few dozen positions of a 2048-token row. So the whole row goes through
    the one depthwise convolution transformers runs on a document alone (cuDNN on a GPU), and only
    those positions are computed again with every tap into an earlier document dropped, which is
    what zero padding gives the document alone (taps summed in fp32, as a convolution kernel
    accumulates). Finding them costs one device sync per distinct `seq_idx` (the conv layers of a
    forward share it, `_boundaries`). Under torch.compile (Unsloth's compiled blocks) that sync
    would break the graph, so there every tap is masked densely and the compiler fuses it.
    """
    if torch.compiler.is_compiling():
        return _masked_taps(x, weight, bias, seq_idx)
    taps, channels, tokens = weight.shape[-1], x.shape[1], x.shape[-1]
    out = F.conv1d(x.to(weight.dtype), weight.unsqueeze(1), bias, padding=taps - 1, groups=channels)[..., :tokens]
    rows, cols = _boundaries(seq_idx, taps)
    if rows.numel() == 0:
        return out
    documents = seq_idx[rows, cols]
    w = weight.float()
    fixed = x[rows, :, cols].float() * w[:, taps - 1]
    for back in range(1, taps):
        source = (cols - back).clamp(min=0)
        same = ((cols >= back) & (seq_idx[rows, source] == documents)).float()
        fixed = fixed + x[rows, :, source].float() * same[:, None] * w[:, taps - 1 - back]
    if bias is not None:
        fixed = fixed + bias.float()
    out[rows, :, cols] = fixed.to(out.dtype)
    return out


_last_boundaries: tuple[torch.Tensor, int, tuple[torch.Tensor, torch.Tensor]] | None = None


def _boundaries(seq_idx: torch.Tensor, taps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(row, token) of every position whose convolution window reaches into an earlier
    document. Kept for the `seq_idx` tensor last asked about: every conv layer of one forward
    gets the same one (the decoder stack's pre-hook makes it once), so the sync is paid once."""
    global _last_boundaries
    if _last_boundaries is not None and _last_boundaries[0] is seq_idx and _last_boundaries[1] == taps:
        return _last_boundaries[2]
    crossing = torch.zeros(seq_idx.shape, dtype=torch.bool, device=seq_idx.device)
    for back in range(1, min(taps, seq_idx.shape[-1])):
        crossing[:, back:] |= seq_idx[:, back:] != seq_idx[:, :-back]
    rows, cols = crossing.nonzero(as_tuple=True)
    _last_boundaries = (seq_idx, taps, (rows, cols))
    return rows, cols


def _masked_taps(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, seq_idx: torch.Tensor) -> torch.Tensor:
    """causal_conv1d_by_document without data-dependent shapes: each tap `back` places back is
    masked where that token belongs to another document, over the whole row, in fp32."""
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


# ---------------------------------------------------------------------------------------------
# The Unsloth engine: a `causal_conv1d_fn` that resets at `seq_idx`, where Unsloth looks for one.
#
# Unsloth packs a hybrid model only when every conv layer's kernel keeps documents apart
# (unsloth/utils/packing.py, `patch_hybrid_linear_attention_varlen`). For LFM2 on transformers
# >= 5.16 the layer calls its module's global `causal_conv1d_fn`, the wrapper transformers'
# `use_kernel_func_from_hub_with_fallback` builds: it binds the `causal-conv1d` package's function
# when installed, else transformers' PyTorch conv, which ignores `seq_idx`. Unsloth reads that
# wrapper's closure (`implementation`, `torch_function`, `applicable_params`) and refuses to pack
# unless an accelerated implementation taking `seq_idx` is bound ("causal_conv1d_fn has no
# accelerated kernel"); on the first packed step it checks that every conv call got a `seq_idx`.
# The package has no wheel for the GPU images tuneform runs on, so tuneform binds
# `causal_conv1d_fn` below (the package's signature, computed by the document reset above) as that
# wrapper's implementation, and lets Unsloth's own check decide whether it is acceptable.

ConvRoute = Literal["seq-idx-torch", "seq-idx-kernel", "none"]
"""How Unsloth's LFM2 conv layers keep packed documents apart:
- seq-idx-torch: tuneform's stand-in below, bound here;
- seq-idx-kernel: a `causal_conv1d_fn` taking `seq_idx` was bound already (the package);
- none: no model conv layer, or a transformers / Unsloth layout this module does not recognise
  (Unsloth then trains padded)."""

_MARK = "_tuneform_causal_conv1d"


def causal_conv1d_fn(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    seq_idx: torch.Tensor | None = None,
    initial_states: torch.Tensor | None = None,
    return_final_states: bool = False,
    final_states_out: torch.Tensor | None = None,
    activation: str | None = None,
) -> torch.Tensor:
    """The `causal-conv1d` package's `causal_conv1d_fn`, in PyTorch: a causal depthwise convolution
    of `x` (batch, channels, tokens) by `weight` (channels, taps), restarted wherever `seq_idx`
    (batch, tokens) changes, then `activation` (None, "silu" or "swish"); returned in `x`'s dtype.

    Conv states (`initial_states`, `return_final_states`) serve generation, which never reaches
    this function (transformers uses its own update path with a cache), so they are refused.
    """
    if initial_states is not None or return_final_states or final_states_out is not None:
        raise NotImplementedError("tuneform's causal_conv1d_fn keeps no conv state: it serves training rows only")
    if activation not in (None, "silu", "swish"):
        raise ValueError(f"causal_conv1d_fn activation must be None, 'silu' or 'swish', not {activation!r}")
    if seq_idx is None:
        seq_idx = torch.zeros(x.shape[0], x.shape[-1], dtype=torch.int32, device=x.device)
    elif tuple(seq_idx.shape) != (x.shape[0], x.shape[-1]):
        raise ValueError(f"seq_idx must be (batch, tokens) = {(x.shape[0], x.shape[-1])}, not {tuple(seq_idx.shape)}")
    out = causal_conv1d_by_document(x, weight, bias, seq_idx.to(x.device))
    if activation is not None:
        out = F.silu(out)
    return out.to(x.dtype)


def _closure_cells(fn: Any) -> dict[str, Any]:
    """A function's closure cells by variable name ({} for anything else)."""
    code, cells = getattr(fn, "__code__", None), getattr(fn, "__closure__", None)
    return dict(zip(code.co_freevars, cells, strict=True)) if code is not None and cells else {}


def _hub_wrapper(fn: Any) -> Any:
    """transformers' hub wrapper under `fn`, through the wrappers Unsloth puts around it (its
    compile-disable shim keeps the original as `_unsloth_undisabled`, its packing probe as
    `_unsloth_varlen_probe_of`), as Unsloth's own gate unwraps them; None if there is none."""
    for _ in range(8):
        if fn is None or {"implementation", "torch_function", "applicable_params"} <= _closure_cells(fn).keys():
            return fn
        fn = getattr(fn, "_unsloth_varlen_probe_of", None) or getattr(fn, "_unsloth_undisabled", None) or getattr(fn, "__wrapped__", None)
    return None


def _stand_in(torch_function: Callable[..., Any]) -> Callable[..., Any]:
    """The implementation bound into transformers' hub wrapper: the package's signature, checked
    per call. A call with a `seq_idx` (a packed row: Unsloth passes one) runs the document reset;
    any other call keeps transformers' own PyTorch conv, as before."""

    def by_seq_idx(
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None = None,
        seq_idx: torch.Tensor | None = None,
        initial_states: torch.Tensor | None = None,
        return_final_states: bool = False,
        final_states_out: torch.Tensor | None = None,
        activation: str | None = None,
    ) -> torch.Tensor:
        if seq_idx is None and initial_states is None and not return_final_states and final_states_out is None:
            return torch_function(x, weight, bias, activation=activation)
        return causal_conv1d_fn(x, weight, bias, seq_idx, initial_states, return_final_states, final_states_out, activation)

    setattr(by_seq_idx, _MARK, True)
    return by_seq_idx


def _conv_namespaces(model: torch.nn.Module) -> tuple[list[torch.nn.Module], list[dict[str, Any]]]:
    """LFM2's conv layers in `model`, and the module namespaces their forward reads
    `causal_conv1d_fn` from: the class's module (transformers', or Unsloth's compiled copy) and
    the module named by its `__name__` (which Dynamo reads a compiled copy's globals through)."""
    layers = [m for m in model.modules() if type(m).__name__ == "Lfm2ShortConv"]
    spaces: list[dict[str, Any]] = []
    for layer in layers:
        space = vars(sys.modules[type(layer).__module__])
        alias = sys.modules.get(str(space.get("__name__")))
        for candidate in (space, vars(alias) if alias is not None else None):
            if candidate is not None and "causal_conv1d_fn" in candidate and all(candidate is not s for s in spaces):
                spaces.append(candidate)
    return layers, spaces


def enable_for_unsloth(model: torch.nn.Module, unsloth_packing: ModuleType | None = None) -> tuple[ConvRoute, str]:
    """Give Unsloth's hybrid packing a `causal_conv1d_fn` that resets at `seq_idx` for `model`'s
    LFM2 conv layers; returns the route (ConvRoute) and, for "none", why. Call after the model is
    loaded and before the trainer is built (Unsloth decides in `SFTTrainer.__init__`).

    The stand-in is bound as the implementation of transformers' hub wrapper (its closure), so the
    wrappers Unsloth put around it stay as they are. Bound only where every conv namespace leads
    to such a wrapper over transformers' PyTorch conv, and kept only if Unsloth's own kernel check
    (`unsloth_packing`, default `unsloth.utils.packing`) then accepts every conv layer; otherwise
    every wrapper is restored and Unsloth trains padded, as without tuneform.
    """
    layers, spaces = _conv_namespaces(model)
    if not layers or not spaces:
        return "none", "no LFM2 conv layer found"
    if unsloth_packing is None:
        from unsloth.utils import packing as installed

        unsloth_packing = installed
    check = getattr(unsloth_packing, "_kwargs_kernels_available", None)
    if not callable(check) or getattr(unsloth_packing, "_KWARGS_KERNELS", {}).get("causal_conv1d_fn") != "seq_idx":
        return "none", "this Unsloth has no hybrid-packing conv gate tuneform knows"
    saved: dict[int, tuple[Any, dict[str, Any]]] = {}
    route: ConvRoute = "seq-idx-kernel"
    for space in spaces:
        wrapper = _hub_wrapper(space["causal_conv1d_fn"])
        if wrapper is None:
            _restore(saved)
            return "none", f"{space.get('__name__')}.causal_conv1d_fn is not transformers' hub wrapper"
        cells = _closure_cells(wrapper)
        implementation = cells["implementation"].cell_contents
        if getattr(implementation, _MARK, False):
            route = "seq-idx-torch"
            continue
        if implementation is not cells["torch_function"].cell_contents:
            if "seq_idx" in cells["applicable_params"].cell_contents:
                continue  # the causal-conv1d package is bound: Unsloth uses it as it is
            _restore(saved)
            return "none", "the bound causal_conv1d_fn takes no seq_idx"
        saved[id(wrapper)] = (wrapper, {name: cell.cell_contents for name, cell in cells.items()})
        stand_in = _stand_in(cells["torch_function"].cell_contents)
        cells["implementation"].cell_contents = stand_in
        cells["applicable_params"].cell_contents = tuple(inspect.signature(stand_in).parameters)
        if "is_new_implementation" in cells:
            cells["is_new_implementation"].cell_contents = True  # no "reference implementation" warning
        route = "seq-idx-torch"
    refused = check(layers)
    if refused is not None:
        _restore(saved)
        return "none", f"Unsloth refused the stand-in: {refused}"
    return route, ""


def _restore(saved: dict[int, tuple[Any, dict[str, Any]]]) -> None:
    """Put back what each hub wrapper closed over."""
    for wrapper, contents in saved.values():
        for name, cell in _closure_cells(wrapper).items():
            cell.cell_contents = contents[name]
