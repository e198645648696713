"""The trl engine's packed rows attended in one flash varlen call per layer, as Unsloth's are.

Why this exists: a packed row keeps its documents apart by position ids that restart at each
document. Through transformers' `sdpa` attention that becomes a dense block-diagonal mask over
the whole flattened batch (tokens x tokens per row), built every step and read by a masked SDPA
kernel: slow, and on LFM2 at batch 16 it ran the H100 out of memory (docs/calibration.md, run
16). Unsloth's route avoids the mask with torch's variable-length flash kernel
(train/packed_attention.py); this module gives the trl engine the same kernel:

- `flash_varlen` is torch's flash op with cumulative sequence lengths
  (`torch.ops.aten._flash_attention_forward` and its backward) as an autograd Function. The
  kernel reads grouped key/value heads (fewer than the query heads) as they are and returns their
  gradients already summed over each group, so grouped-query attention needs no copies; a
  sliding window is the kernel's `window_size_left`.
- `VarlenAttention` is the attention function registered with transformers' `AttentionInterface`
  as `VARLEN` (the engine loads the model with `attn_implementation=VARLEN`). It derives the
  documents' cumulative lengths from the restarting position ids once per batch (every layer of
  a forward, and a checkpointed layer's recompute, gets the same position ids tensor) and
  attends the whole flattened batch in one call per layer.
- Its mask function (registered with transformers' `AttentionMaskInterface`) tells transformers
  to build no mask where there is no padding mask, so no dense mask exists on this route.
  Batches with a padding mask (the padded path, evaluation) get transformers' sdpa mask and go
  to its sdpa function, as before.

Each call counts the route it took (`VarlenAttention.calls`), so the manifest records what ran:
a call the flash kernel cannot take (CPU tensors, fp32, a head size over 256, a soft cap)
attends through SDPA with a document mask built here (as transformers' sdpa function would,
soft cap ignored as there), and says so.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import torch

from tuneform.train.packed_attention import VARLEN
from tuneform.train.packed_conv import document_ids

FLASH_DTYPES = (torch.bfloat16, torch.float16)
FLASH_MAX_HEAD_DIM = 256  # torch's flash kernels take head sizes up to 256, in multiples of 8


class _FlashVarlen(torch.autograd.Function):
    """Causal attention over documents laid end to end: (tokens, heads, head_dim) queries,
    (tokens, kv_heads, head_dim) keys and values, one cumulative-lengths table for both."""

    @staticmethod
    def forward(
        ctx: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu: torch.Tensor, max_len: int, scale: float | None, left: int
    ) -> torch.Tensor:
        out, lse, rng_state, unused, _ = torch.ops.aten._flash_attention_forward(
            q, k, v, cu, cu, max_len, max_len, 0.0, True, False, scale=scale, window_size_left=left, window_size_right=0
        )
        ctx.save_for_backward(q, k, v, out, lse, cu, rng_state, unused)
        ctx.max_len, ctx.scale, ctx.left = max_len, scale, left
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        q, k, v, out, lse, cu, rng_state, unused = ctx.saved_tensors
        dq, dk, dv = torch.ops.aten._flash_attention_backward(
            grad.contiguous(),  # the kernel assumes contiguous rows
            q,
            k,
            v,
            out,
            lse.contiguous(),
            cu,
            cu,
            ctx.max_len,
            ctx.max_len,
            0.0,
            True,
            rng_state,
            unused,
            scale=ctx.scale,
            window_size_left=ctx.left,
            window_size_right=0,
        )
        return dq, dk, dv, None, None, None, None


def flash_varlen(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu: torch.Tensor, max_len: int, *, scale: float | None, window: int | None
) -> torch.Tensor:
    """Causal attention within each document of `cu` (int32 cumulative lengths), in one flash
    call; `window`: attend only the last `window` tokens, the query's own included (transformers'
    `sliding_window`). Needs a CUDA tensor in bf16 or fp16 on an Ampere or newer GPU."""
    left = window - 1 if window else -1
    out: torch.Tensor = _FlashVarlen.apply(q.contiguous(), k.contiguous(), v.contiguous(), cu, max_len, scale, left)
    return out


def cumulative_lengths(position_ids: torch.Tensor) -> tuple[torch.Tensor, int]:
    """The documents of a batch (rows, tokens) laid end to end: int32 cumulative lengths and
    the longest document. A document starts at each row's start and wherever a position is not
    its predecessor plus one (`packed_conv.document_ids`, transformers' rule for its mask)."""
    ids = document_ids(position_ids)
    starts = torch.diff(ids, dim=-1, prepend=ids[:, :1] - 1) != 0
    begins = starts.flatten().nonzero().flatten()
    cu = torch.cat([begins, begins.new_tensor([position_ids.numel()])]).to(torch.int32)
    return cu, int(cu.diff().max())


def document_mask(position_ids: torch.Tensor, window: int | None) -> torch.Tensor:
    """The dense (rows, 1, tokens, tokens) boolean mask of the same attention: causal, within a
    document, and within the window. For calls the flash kernel cannot take."""
    ids = document_ids(position_ids)
    tokens = torch.arange(position_ids.shape[-1], device=position_ids.device)
    back = tokens[:, None] - tokens[None, :]  # query minus key
    allowed = (back >= 0) & (ids[:, :, None] == ids[:, None, :])
    if window:
        allowed &= back < window
    return allowed[:, None]


class VarlenAttention:
    """transformers' attention function signature over `flash_varlen`; registered as `VARLEN`.

    `calls` counts each call by the route it took: "varlen-aten" (one flash call), or
    "sdpa-document-mask" (SDPA with a dense document mask: transformers' own where it built one,
    or this module's where the flash kernel cannot take the call). Calls of non-causal modules
    (a vision tower) go to transformers' sdpa function and are not counted.
    """

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self._batch: tuple[torch.Tensor, torch.Tensor, int] | None = None  # (position ids, cu, max)

    def __call__(
        self,
        module: torch.nn.Module,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attention_mask: torch.Tensor | None,
        dropout: float = 0.0,
        scaling: float | None = None,
        sliding_window: int | None = None,
        softcap: float | None = None,
        is_causal: bool | None = None,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, None]:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
        if not causal:
            return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)
        rows, _, tokens, head_dim = query.shape
        position_ids = kwargs.get("position_ids")
        if position_ids is None or position_ids.shape[-1] != tokens:
            position_ids = torch.arange(tokens, device=query.device)[None]
        position_ids = position_ids.expand(rows, -1)
        dtype = query.dtype
        if query.is_cuda and dtype == torch.float32 and torch.is_autocast_enabled("cuda"):
            # fp32 activations under autocast (QLoRA keeps norms in fp32): SDPA would run in the
            # autocast dtype too, and so does the flash kernel.
            dtype = torch.get_autocast_dtype("cuda")
        if attention_mask is None and key.shape[2] == tokens and self._flash_takes(query, dtype, dropout, softcap, kwargs):
            self.calls["varlen-aten"] += 1
            cu, max_len = self._lengths(kwargs.get("position_ids"), position_ids)
            # transformers hands (rows, heads, tokens, head_dim); the kernel reads (tokens, heads, head_dim).
            q, k, v = (t.transpose(1, 2).reshape(rows * tokens, t.shape[1], head_dim).to(dtype) for t in (query, key, value))
            out = flash_varlen(q, k, v, cu, max_len, scale=scaling, window=sliding_window)
            return out.view(rows, tokens, query.shape[1], head_dim), None
        if attention_mask is None and key.shape[2] == tokens:
            attention_mask = document_mask(position_ids, sliding_window)
        self.calls["sdpa-document-mask"] += 1
        # As transformers' sdpa function (which this is then), without a soft cap (SDPA has none).
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=False, **kwargs
        )

    @staticmethod
    def _flash_takes(query: torch.Tensor, dtype: torch.dtype, dropout: float, softcap: float | None, kwargs: dict[str, Any]) -> bool:
        """Whether torch's flash kernel computes this call exactly as asked, in `dtype`."""
        return (
            query.is_cuda
            and dtype in FLASH_DTYPES
            and query.shape[-1] <= FLASH_MAX_HEAD_DIM
            and query.shape[-1] % 8 == 0
            and dropout == 0.0
            and softcap is None
            and kwargs.get("s_aux") is None
            and not kwargs.get("output_attentions", False)
        )

    def _lengths(self, given: torch.Tensor | None, position_ids: torch.Tensor) -> tuple[torch.Tensor, int]:
        """The batch's cumulative lengths, computed at its first layer (it costs a wait for the
        GPU) and reused while the layers get the same position ids tensor."""
        if self._batch is not None and given is not None and self._batch[0] is given:
            return self._batch[1], self._batch[2]
        cu, max_len = cumulative_lengths(position_ids)
        if given is not None:
            self._batch = (given, cu, max_len)
        return cu, max_len

    def taken(self) -> str:
        """The routes counted since the last `reset`, "+"-joined ("" for none)."""
        return "+".join(sorted(self.calls))

    def reset(self) -> None:
        self.calls.clear()
        self._batch = None


def varlen_mask(
    batch_size: int,
    q_length: int,
    kv_length: int,
    q_offset: int = 0,
    kv_offset: int = 0,
    attention_mask: torch.Tensor | None = None,
    **kwargs: Any,
) -> torch.Tensor | None:
    """The mask function registered as `VARLEN`: no mask for self-attention without a padding
    mask (the attention function reads the documents from position ids), where the only mask
    transformers would build is the causal, document and window pattern `VarlenAttention`
    applies itself. Anything else (a padding mask, a cache, a mask a model adds to the causal
    one, which transformers marks with `use_vmap`) gets transformers' sdpa mask."""
    from transformers.masking_utils import sdpa_mask

    plain = attention_mask is None and not kwargs.get("use_vmap", False) and q_offset == kv_offset == 0 and q_length == kv_length
    if plain:
        return None
    mask: torch.Tensor | None = sdpa_mask(
        batch_size=batch_size,
        q_length=q_length,
        kv_length=kv_length,
        q_offset=q_offset,
        kv_offset=kv_offset,
        attention_mask=attention_mask,
        **kwargs,
    )
    return mask


ATTENTION = VarlenAttention()
"""The one registered instance: transformers' attention registry is process-wide."""


def register() -> VarlenAttention:
    """Register `VARLEN` with transformers (idempotent); returns the attention function, whose
    `calls` say which route ran."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(VARLEN, ATTENTION)
    AttentionMaskInterface.register(VARLEN, varlen_mask)
    return ATTENTION


def ran(route: str) -> str:
    """The trl engine's `route` as the training loop ran it: on the varlen route, the routes the
    registered function counted (it falls back to SDPA with a document mask for calls the flash
    kernel cannot take); any other route unchanged."""
    if route != "varlen-aten":
        return route
    return ATTENTION.taken() or route
