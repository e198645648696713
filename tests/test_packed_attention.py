"""Packed attention in one varlen call: the route decision everywhere, the kernel on a CUDA GPU.

The GPU half runs where a GPU and unsloth are (the device: `python -m pytest tests/test_packed_attention.py`)
and compares the stand-in through Unsloth's real attention module with per-document attention.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from tuneform.train import packed_attention
from tuneform.train.packed_attention import (
    aten_varlen,
    choose_route,
    torch_varlen_takes_gqa,
)

GPU_ARGS = dict(
    requested="auto", engine="unsloth", cuda=True, unsloth_has_varlen=False, flash_available=True, capability_major=9, lean_function=True
)


def test_torch_varlen_signature_check_reads_the_real_function() -> None:
    from torch.nn.attention.varlen import varlen_attn

    release = tuple(int(part) for part in torch.__version__.split("+")[0].split(".")[:2])
    assert torch_varlen_takes_gqa(varlen_attn) == (release >= (2, 12))  # CI's 2.13: yes; the GPU image's 2.11: no

    def torch_2_11(
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
    ) -> Any:
        return query

    assert not torch_varlen_takes_gqa(torch_2_11)
    assert not torch_varlen_takes_gqa(None)


@pytest.mark.parametrize(
    "change, route",
    [
        ({}, "varlen-aten"),
        ({"unsloth_has_varlen": True}, "varlen"),  # torch >= 2.12: Unsloth's own call
        ({"requested": "per-document"}, "per-document"),
        ({"unsloth_has_varlen": True, "requested": "per-document"}, "per-document"),  # Unsloth's own route turned off too
        ({"capability_major": 7}, "per-document"),  # T4: no flash kernel
        ({"flash_available": False}, "per-document"),
        ({"lean_function": False}, "per-document"),  # another Unsloth version: leave it alone
        ({"engine": "trl"}, "n/a"),
        ({"cuda": False}, "n/a"),
    ],
)
def test_route(change: dict[str, Any], route: str) -> None:
    assert choose_route(**{**GPU_ARGS, **change}) == route


def test_route_is_not_applicable_without_a_gpu() -> None:
    if torch.cuda.is_available():
        pytest.skip("the CPU answer")
    assert packed_attention.enable_for_unsloth("auto") == "n/a"


def per_document(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lengths: list[int]) -> torch.Tensor:
    """Reference: (T, H, D) queries, (T, H_kv, D) keys/values -> causal attention within each document."""
    outs, start = [], 0
    for length in lengths:
        sl = slice(start, start + length)
        out = F.scaled_dot_product_attention(
            q[sl].transpose(0, 1), k[sl].transpose(0, 1), v[sl].transpose(0, 1), is_causal=True, enable_gqa=True
        )
        outs.append(out.transpose(0, 1))
        start += length
    return torch.cat(outs)


class _PerDocumentLean:
    """Unsloth's `_LeanFlashVarlen.apply` contract, computed per document on the CPU."""

    calls: list[tuple[Any, ...]] = []

    @staticmethod
    def apply(
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        cu: torch.Tensor,
        max_len: int,
        is_causal: bool,
        scale: float | None,
        left: int,
        right: int,
    ) -> torch.Tensor:
        _PerDocumentLean.calls.append((max_len, is_causal, scale, left, right))
        assert is_causal
        return per_document(q, k, v, torch.diff(cu).tolist())


def test_stand_in_maps_the_varlen_signature_onto_unsloths_function() -> None:
    lengths = [5, 3, 8]
    cu = torch.tensor([0, 5, 8, 16], dtype=torch.int32)
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(16, h, 8, generator=gen) for h in (4, 2, 2))
    varlen = aten_varlen(SimpleNamespace(_LeanFlashVarlen=_PerDocumentLean))
    out = varlen(q, k, v, cu, cu, 8, 8, scale=None, window_size=(-1, 0), enable_gqa=True)
    assert _PerDocumentLean.calls[-1] == (8, True, None, -1, 0)
    torch.testing.assert_close(out, per_document(q, k, v, lengths))
    # Cross-attention (two length tables) is not what it is for: refuse rather than mis-attend.
    with pytest.raises(ValueError, match="self-attention only"):
        varlen(q, k, v, cu, cu.clone(), 8, 8, window_size=(-1, 0))


needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="flash kernels need a CUDA GPU")


@needs_gpu
@pytest.mark.parametrize("lengths", [[700, 40, 300, 1008], [2048], [1, 1, 2046]])
def test_one_varlen_call_equals_per_document_attention_on_the_gpu(lengths: list[int]) -> None:
    pytest.importorskip("unsloth")
    from unsloth.utils import attention_dispatch as dispatch

    route = packed_attention.enable_for_unsloth("auto")
    assert route in ("varlen", "varlen-aten")
    total, heads, kv_heads, dim = sum(lengths), 32, 8, 64  # the Llama-3.2-1B attention shape
    gen = torch.Generator(device="cuda").manual_seed(0)
    tensors = [
        torch.randn(total, h, dim, device="cuda", dtype=torch.bfloat16, generator=gen).requires_grad_() for h in (heads, kv_heads, kv_heads)
    ]
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], device="cuda", dtype=torch.int32)
    out = dispatch._varlen_attn_call(*tensors, cu, max(lengths), scale=None, window_size=(-1, 0), enable_gqa=True)
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, tensors, grad)

    ref_inputs = [t.detach().float().requires_grad_() for t in tensors]
    ref = per_document(*ref_inputs, lengths)
    want = torch.autograd.grad(ref, ref_inputs, grad.float())
    torch.testing.assert_close(out.float(), ref, atol=2e-2, rtol=2e-2)
    for g, w in zip(got, want):
        torch.testing.assert_close(g.float(), w, atol=5e-2, rtol=5e-2)
