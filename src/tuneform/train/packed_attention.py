"""One attention kernel call per packed row, on torch builds where Unsloth would make one per document.

Why this exists: tuneform packs whole conversations into each row and keeps them apart by
position ids. Unsloth attends such a row with torch's variable-length ("varlen") flash kernel in
one call, but only when `torch.nn.attention.varlen.varlen_attn` takes `enable_gqa`, which arrived
in torch 2.12. On torch 2.11 (the image the HF Jobs GPU flavors and our device run) it falls back
to one SDPA call per run of equal-length documents: on the 1B shape that is about 900 attention
calls and some 20,000 small copies and fills a step, and the profile in
bench/results/profile-2026-11-28.md shows the GPU idle 44% of the step waiting for the host.

The kernel Unsloth's varlen path ends in, `torch.ops.aten._flash_attention_forward` with
cumulative sequence lengths, is in torch 2.11 already, and its flash kernel takes grouped-query
attention (fewer key/value heads) natively. Unsloth wraps exactly that op in an autograd Function
of its own (`_LeanFlashVarlen`) and only the `varlen_attn` signature check keeps it off. So on
such builds tuneform hands Unsloth's attention dispatch a `varlen_attn` stand-in that calls that
Function; Unsloth's own checks (dtype, head size, GPU generation, deterministic mode, dropout,
the int32 backward limit) still decide per call whether the varlen route is taken.

The result is the same attention, computed in one launch: it is a kernel choice, so it lives in
the run file's `compute` section (`compute.attention: per-document` turns it off), which is not in
the run key. The route taken is recorded in the manifest (`settings.attention`).

The trl engine (where Unsloth is not installed) gets the same single call from
train/varlen_attention.py, an attention function registered with transformers and selected when
the model is loaded (`choose_trl_route` below decides, on the same GPU conditions).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from types import ModuleType
from typing import Any, Literal

Route = Literal["varlen", "varlen-aten", "per-document", "flex-document-mask", "sdpa-document-mask", "n/a"]
"""How packed documents are attended:
- varlen: Unsloth's own single varlen call (torch >= 2.12);
- varlen-aten: the same single call through torch's flash op: Unsloth's, enabled here (torch <
  2.12), or the trl engine's (train/varlen_attention.py);
- per-document: one SDPA call per run of equal-length documents (Unsloth's fallback);
- flex-document-mask: trl engine, transformers' FlexAttention with the block-sparse document
  mask it derives from position ids (a GPU without torch's flash kernels, or fp32);
- sdpa-document-mask: trl engine, one SDPA call over the dense block-diagonal mask transformers
  derives from position ids (the CPU: FlexAttention has no backward there);
- n/a: no packed rows, or Unsloth without a GPU."""

VARLEN = "tuneform_varlen"
"""The `attn_implementation` name train/varlen_attention.py registers with transformers."""

LOADED_ROUTE: dict[str, Route] = {VARLEN: "varlen-aten", "flex_attention": "flex-document-mask", "sdpa": "sdpa-document-mask"}
"""The trl engine's route by the attention implementation transformers loaded the model with."""


def flash_kernels(*, flash_available: bool, capability_major: int) -> bool:
    """Whether this GPU runs torch's flash kernels: a build with them, and Ampere (sm_80) or newer
    (a T4 has none). The one rule both engines' varlen routes follow."""
    return flash_available and capability_major >= 8


def torch_varlen_takes_gqa(varlen_attn: Callable[..., Any] | None) -> bool:
    """Whether torch's public varlen function has the parameters Unsloth requires (torch >= 2.12)."""
    if varlen_attn is None:
        return False
    params = inspect.signature(varlen_attn).parameters
    return "window_size" in params and "enable_gqa" in params


def choose_route(
    *, requested: str, engine: str, cuda: bool, unsloth_has_varlen: bool, flash_available: bool, capability_major: int, lean_function: bool
) -> Route:
    """Which route a job takes; pure, so every branch is testable without a GPU.

    `requested`: the run's compute.attention. `unsloth_has_varlen`: Unsloth found a usable
    `varlen_attn` itself. `lean_function`: its attention module has the autograd Function the
    stand-in calls (absent in other versions).
    """
    if engine != "unsloth" or not cuda:
        return "n/a"
    if requested == "per-document":
        return "per-document"
    if unsloth_has_varlen:
        return "varlen"
    if not flash_kernels(flash_available=flash_available, capability_major=capability_major) or not lean_function:
        return "per-document"
    return "varlen-aten"


FLEX_MIN_HEAD_DIM = 16
"""FlexAttention's GPU kernel refuses smaller heads ("embedding dimension ... must be at least 16",
seen on the device with the tests' tiny models); real models have 64 or more."""


def choose_trl_route(
    *,
    requested: str,
    packing: bool,
    cuda: bool,
    flash_available: bool,
    capability_major: int,
    precision: str,
    flex_available: bool,
    head_dim: int,
) -> tuple[str | None, Route]:
    """The trl engine's `attn_implementation` and the route it gives packed rows; pure. None is
    transformers' default, sdpa (a model without attention layers may not take sdpa by name).
    `requested` is compute.attention: per-document keeps transformers' sdpa document mask (the
    route before the varlen call, to compare against). `head_dim` is the model's attention head size."""
    if not packing:
        return None, "n/a"
    if not cuda or requested == "per-document":
        return None, "sdpa-document-mask"
    if precision in ("bf16", "fp16") and flash_kernels(flash_available=flash_available, capability_major=capability_major):
        return VARLEN, "varlen-aten"
    if flex_available and head_dim >= FLEX_MIN_HEAD_DIM:
        return "flex_attention", "flex-document-mask"
    return None, "sdpa-document-mask"


def for_trl(requested: str, *, packing: bool, precision: str, head_dim: int) -> str | None:
    """The `attn_implementation` the trl engine loads its model with on this machine (`VARLEN`
    is registered by train/varlen_attention.py's `register`, which loading calls)."""
    import torch

    cuda = torch.cuda.is_available()
    from transformers.utils import is_torch_flex_attn_available

    implementation, _ = choose_trl_route(
        requested=requested,
        packing=packing,
        cuda=cuda,
        flash_available=cuda and bool(getattr(torch.backends.cuda, "is_flash_attention_available", lambda: False)()),
        capability_major=torch.cuda.get_device_capability()[0] if cuda else 0,
        precision=precision,
        flex_available=is_torch_flex_attn_available(),
        head_dim=head_dim,
    )
    return implementation


def head_dim_of(config: Any) -> int:
    """A transformers config's attention head size (its text model's, for a multimodal one); 0 for
    a model without attention heads (a state-space model)."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    explicit = getattr(text, "head_dim", None)
    if isinstance(explicit, int) and explicit > 0:
        return explicit
    hidden, heads = getattr(text, "hidden_size", None), getattr(text, "num_attention_heads", None)
    return hidden // heads if isinstance(hidden, int) and isinstance(heads, int) and heads > 0 else 0


def trl_route(model: Any, *, packing: bool) -> str:
    """The route the trl engine's loaded `model` attends packed rows by: read from the attention
    implementation transformers set on it, not from the one asked for."""
    if not packing:
        return "n/a"
    implementation = str(getattr(getattr(model, "config", None), "_attn_implementation", ""))
    return LOADED_ROUTE.get(implementation, f"{implementation}-document-mask")


def aten_varlen(dispatch: ModuleType) -> Callable[..., Any]:
    """A `varlen_attn` with torch 2.12's signature over Unsloth's autograd Function for aten flash.

    Called with one cumulative-lengths tensor for queries and keys (self-attention over a packed
    row, the only way Unsloth calls it); `enable_gqa` needs no work because the flash kernel reads
    grouped key/value heads as they are.
    """
    lean = dispatch._LeanFlashVarlen

    def varlen_attn(
        query: Any,
        key: Any,
        value: Any,
        cu_seq_q: Any,
        cu_seq_k: Any,
        max_q: int,
        max_k: int,
        *,
        scale: float | None = None,
        window_size: tuple[int, int] = (-1, -1),
        enable_gqa: bool = False,
    ) -> Any:
        if cu_seq_k is not cu_seq_q or max_k != max_q:
            raise ValueError("tuneform's varlen stand-in handles self-attention only (one cu_seqlens)")
        left, right = window_size
        return lean.apply(query, key, value, cu_seq_q, max_q, (left, right) == (-1, 0), scale, left, right)

    return varlen_attn


def enable_for_unsloth(requested: str = "auto") -> Route:
    """Set Unsloth's packed attention to the route `requested` (compute.attention) and the machine
    allow; returns the route. Call after `import unsloth` and before training.

    Unsloth's attention module changes only for `varlen-aten`, and for `per-document` where
    Unsloth would otherwise take its own varlen route (its setting for that is read at import).
    """
    import torch

    cuda = torch.cuda.is_available()
    if not cuda:
        return "n/a"
    from unsloth.utils import attention_dispatch as dispatch

    route = choose_route(
        requested=requested,
        engine="unsloth",
        cuda=cuda,
        unsloth_has_varlen=getattr(dispatch, "_TORCH_VARLEN_ATTN", None) is not None,
        flash_available=bool(getattr(torch.backends.cuda, "is_flash_attention_available", lambda: False)()),
        capability_major=torch.cuda.get_device_capability()[0],
        lean_function=hasattr(dispatch, "_LeanFlashVarlen") and hasattr(dispatch, "_TORCH_VARLEN_ATTN"),
    )
    if route == "varlen-aten":
        dispatch._TORCH_VARLEN_ATTN = aten_varlen(dispatch)
        # Unsloth's lean path would ask torch 2.12's cuDNN check first; the stand-in is that path.
        dispatch._LEAN_VARLEN = False
    elif route == "per-document":
        dispatch._TORCH_VARLEN_ATTN = None  # what Unsloth's UNSLOTH_TORCH_VARLEN=0 does at import
    return route
