"""LFM2 packs on the Unsloth engine through tuneform's `causal_conv1d_fn` (train/packed_conv.py).

The stand-in must compute what the `causal-conv1d` package computes (checked against
transformers' own LFM2 convolution run on each document apart), and Unsloth's own hybrid-packing
code must accept it and route every packed conv call through it. Unsloth does not import without
a GPU, but its packing module (unsloth/utils/packing.py) has no import-time dependency on the rest
of Unsloth: it is read from the wheel bench/gpu.py carries to the device (`.whl/` at the
repository root) and run for real on a tiny LFM2 model. Its one lazy import, of Unsloth's
context-parallel manager, is given a manager that says "no context parallelism", which is what
a one-GPU job has. Without the wheel those tests are skipped.
"""

from __future__ import annotations

import itertools
import sys
import types
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import Lfm2Config, Lfm2ForCausalLM
from transformers.models.lfm2 import modeling_lfm2

from tuneform.train import packed_conv, packing

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parent.parent
WHEELS = sorted((ROOT / ".whl").glob("unsloth-*.whl"))


def _per_document(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, lengths: list[int], activation: str | None
) -> torch.Tensor:
    """transformers' LFM2 convolution (its PyTorch path) on each document apart."""
    bounds = [0, *itertools.accumulate(lengths)]
    return torch.cat(
        [modeling_lfm2.causal_conv1d_fn(x[..., s:e], weight, bias, activation=activation) for s, e in itertools.pairwise(bounds)], dim=-1
    )


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    lengths=st.lists(st.integers(1, 9), min_size=1, max_size=5),
    taps=st.integers(1, 4),
    bias=st.booleans(),
    activation=st.sampled_from([None, "silu"]),
    seed=st.integers(0, 2**16),
    dtype=st.sampled_from([torch.float32, torch.bfloat16]),
)
def test_stand_in_matches_each_documents_own_convolution(
    lengths: list[int], taps: int, bias: bool, activation: str | None, seed: int, dtype: torch.dtype
) -> None:
    """Documents shorter than the kernel included; with `seq_idx`, and without it (one document)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 5, sum(lengths), generator=gen).to(dtype)
    weight = torch.randn(5, taps, generator=gen).to(dtype)
    b = torch.randn(5, generator=gen).to(dtype) if bias else None
    seq_idx = torch.repeat_interleave(torch.arange(len(lengths), dtype=torch.int32), torch.tensor(lengths)).expand(2, -1)
    packed = packed_conv.causal_conv1d_fn(x, weight, b, seq_idx=seq_idx, activation=activation)
    alone = packed_conv.causal_conv1d_fn(x, weight, b, activation=activation)
    for got, want in (
        (packed, _per_document(x, weight, b, lengths, activation)),
        (alone, _per_document(x, weight, b, [sum(lengths)], activation)),
    ):
        assert got.dtype == want.dtype == dtype
        if dtype == torch.float32:
            torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
        else:  # fp32 sums rounded once against bf16 convolution: a few units in the last place
            torch.testing.assert_close(got, want, rtol=2e-2, atol=2e-2)


def test_stand_in_refuses_what_it_does_not_compute() -> None:
    x, w = torch.randn(1, 2, 4), torch.randn(2, 3)
    with pytest.raises(NotImplementedError, match="no conv state"):
        packed_conv.causal_conv1d_fn(x, w, initial_states=torch.zeros(1, 2, 2))
    with pytest.raises(ValueError, match="activation"):
        packed_conv.causal_conv1d_fn(x, w, activation="gelu")
    with pytest.raises(ValueError, match=r"seq_idx must be \(batch, tokens\)"):
        packed_conv.causal_conv1d_fn(x, w, seq_idx=torch.zeros(1, 3, dtype=torch.int32))


# ---------------------------------------------------------------------------------------------
# Unsloth's own hybrid packing, from the carried wheel


@pytest.fixture
def unsloth_packing(monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    """unsloth/utils/packing.py from the wheel, as the package `unsloth_wheel` (so its relative
    import finds the context-parallel manager given here); LFM2's namespace is restored after."""
    if not WHEELS:
        pytest.skip("no unsloth wheel in .whl/ (bench/gpu.py's docstring says where it comes from)")
    with zipfile.ZipFile(WHEELS[-1]) as wheel:
        source = wheel.read("unsloth/utils/packing.py").decode()
    module = types.ModuleType("unsloth_wheel.utils.packing")
    module.__package__ = "unsloth_wheel.utils"
    context = types.ModuleType("unsloth_wheel.context_parallel")
    context.get_cp_manager = lambda: None  # type: ignore[attr-defined]
    for name, mod in (("unsloth_wheel", types.ModuleType("unsloth_wheel")), ("unsloth_wheel.context_parallel", context)):
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(compile(source, f"{WHEELS[-1].name}/unsloth/utils/packing.py", "exec"), module.__dict__)
    monkeypatch.setattr(modeling_lfm2, "causal_conv1d_fn", modeling_lfm2.causal_conv1d_fn)  # restored after
    hub, before = modeling_lfm2.causal_conv1d_fn, _bound()
    yield module
    for name, cell in _cells(hub).items():
        cell.cell_contents = before[name]


def _cells(wrapper: Any = None) -> dict[str, types.CellType]:
    """The closure of transformers' hub wrapper over LFM2's conv: what the installer rebinds."""
    wrapper = wrapper or modeling_lfm2.causal_conv1d_fn
    return dict(zip(wrapper.__code__.co_freevars, wrapper.__closure__, strict=True))


def _bound() -> dict[str, object]:
    return {name: cell.cell_contents for name, cell in _cells().items()}


def _tiny_lfm2() -> Lfm2ForCausalLM:
    torch.manual_seed(0)
    config = Lfm2Config(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_hidden_layers=3,
        layer_types=["conv", "full_attention", "conv"],
        conv_L_cache=3,
        block_auto_adjust_ff_dim=False,
        initializer_range=0.2,
    )
    return Lfm2ForCausalLM(config).eval()


def test_unsloth_refuses_transformers_conv_and_accepts_the_stand_in(unsloth_packing: types.ModuleType) -> None:
    """The hook the installer patches is the one Unsloth checks: before, Unsloth's gate gives the
    reason the device run logged; after, it accepts every conv layer."""
    model = _tiny_lfm2()
    layers = [m for m in model.modules() if isinstance(m, modeling_lfm2.Lfm2ShortConv)]
    assert [unsloth_packing._stateful_mixer_kind(m) for m in layers] == ["short_conv", "short_conv"]
    assert all(unsloth_packing._uses_hub_conv(m) for m in layers)
    assert unsloth_packing._kwargs_kernels_available(layers) == "causal_conv1d_fn has no accelerated kernel"

    assert packed_conv.enable_for_unsloth(model, unsloth_packing) == ("seq-idx-torch", "")
    assert unsloth_packing._kwargs_kernels_available(layers) is None
    assert packed_conv.enable_for_unsloth(model, unsloth_packing) == ("seq-idx-torch", "")  # idempotent


def test_the_stand_in_goes_under_unsloths_compile_disable_shim(unsloth_packing: types.ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """On the GPU, Unsloth wraps LFM2's conv in its compile-disable shim, which keeps the wrapped
    function as `_unsloth_undisabled` (unsloth_zoo/temporary_patches/utils.py,
    `torch_compiler_disable_unless_decode`, read from the wheel; it needs a GPU to import). The
    stand-in goes under it: the shim stays the function the layer calls."""
    hub = modeling_lfm2.causal_conv1d_fn
    disabled = torch.compiler.disable(hub)

    def shim(*args: object, **kwargs: object) -> object:
        return disabled(*args, **kwargs)

    shim._unsloth_undisabled = hub  # type: ignore[attr-defined]
    monkeypatch.setattr(modeling_lfm2, "causal_conv1d_fn", shim)
    model = _tiny_lfm2()
    layers = [m for m in model.modules() if isinstance(m, modeling_lfm2.Lfm2ShortConv)]
    assert unsloth_packing._kwargs_kernels_available(layers) == "causal_conv1d_fn has no accelerated kernel"
    assert packed_conv.enable_for_unsloth(model, unsloth_packing) == ("seq-idx-torch", "")
    assert modeling_lfm2.causal_conv1d_fn is shim
    assert unsloth_packing._kwargs_kernels_available(layers) is None


def test_unsloth_packs_lfm2_exactly_through_the_stand_in(unsloth_packing: types.ModuleType) -> None:
    """Unsloth's own patch goes active, its first-step handshake (every conv call got `seq_idx`)
    passes, and each packed document's logits are its own."""
    model = _tiny_lfm2()
    lengths = [5, 1, 2, 7]
    ids = torch.randint(0, 64, (1, sum(lengths)), generator=torch.Generator().manual_seed(1))
    bounds = [0, *itertools.accumulate(lengths)]
    with torch.no_grad():
        alone = [model(input_ids=ids[:, s:e], use_cache=False).logits for s, e in itertools.pairwise(bounds)]
        assert packed_conv.enable_for_unsloth(model, unsloth_packing) == ("seq-idx-torch", "")
        assert unsloth_packing.patch_hybrid_linear_attention_varlen(model) is True
        positions = torch.cat([torch.arange(n) for n in lengths])[None]
        packed = model(input_ids=ids, position_ids=positions, use_cache=False).logits
    assert model._unsloth_varlen_handshake_done
    for (s, e), own in zip(itertools.pairwise(bounds), alone, strict=True):
        torch.testing.assert_close(packed[:, s:e], own, rtol=1e-5, atol=1e-5)


def test_without_the_stand_in_unsloth_trains_lfm2_padded(unsloth_packing: types.ModuleType) -> None:
    assert unsloth_packing.patch_hybrid_linear_attention_varlen(_tiny_lfm2()) is False


def test_an_unsloth_whose_gate_is_unknown_gets_nothing(unsloth_packing: types.ModuleType) -> None:
    """Installed only where Unsloth's module looks as read: an Unsloth without the gate, or whose
    gate still refuses, leaves transformers' conv in place and trains padded."""
    model = _tiny_lfm2()
    before = _bound()
    other = types.ModuleType("unsloth_other_release")
    assert packed_conv.enable_for_unsloth(model, other)[0] == "none"
    refusing = types.ModuleType("unsloth_refusing_release")
    refusing._KWARGS_KERNELS = unsloth_packing._KWARGS_KERNELS  # type: ignore[attr-defined]
    refusing._kwargs_kernels_available = lambda layers: "causal_conv1d_fn kernel does not accept seq_idx"  # type: ignore[attr-defined]
    assert packed_conv.enable_for_unsloth(model, refusing) == (
        "none",
        "Unsloth refused the stand-in: causal_conv1d_fn kernel does not accept seq_idx",
    )
    assert _bound() == before


def test_a_model_without_conv_layers_gets_nothing(unsloth_packing: types.ModuleType) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    llama = LlamaForCausalLM(LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2))
    assert packed_conv.enable_for_unsloth(llama, unsloth_packing) == ("none", "no LFM2 conv layer found")


def test_the_stand_in_keeps_transformers_conv_for_rows_without_seq_idx(unsloth_packing: types.ModuleType) -> None:
    """Per call: no `seq_idx` (an unpacked row, generation's prefill) runs transformers' own conv."""
    x, w = torch.randn(1, 4, 6), torch.randn(4, 3)
    want = modeling_lfm2.causal_conv1d_fn(x, w, None)
    calls: list[torch.Size] = []
    torch_function = _cells()["torch_function"].cell_contents

    def recorded(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[0].shape)
        return torch_function(*args, **kwargs)

    # transformers' PyTorch conv, recorded; the fixture puts the original back.
    _cells()["torch_function"].cell_contents = _cells()["implementation"].cell_contents = recorded
    assert packed_conv.enable_for_unsloth(_tiny_lfm2(), unsloth_packing)[0] == "seq-idx-torch"
    torch.testing.assert_close(modeling_lfm2.causal_conv1d_fn(x, w, None), want, rtol=0, atol=0)
    assert calls == [x.shape]
    modeling_lfm2.causal_conv1d_fn(x, w, None, seq_idx=torch.zeros(1, 6, dtype=torch.int32))
    assert calls == [x.shape]  # a packed row does not reach it


# ---------------------------------------------------------------------------------------------
# The decision and the record


@pytest.mark.parametrize(
    "conv, packs, route",
    [
        ("seq-idx-torch", True, "document-mask+conv-seq-idx-torch"),
        ("seq-idx-kernel", True, "document-mask+conv-seq-idx-kernel"),
        ("none", False, "padded: the unsloth engine does not keep lfm2's convolution layers within each document"),
    ],
)
def test_unsloth_packs_lfm2_only_with_a_conv_route(conv: str, packs: bool, route: str) -> None:
    decided = packing.decide("lfm2", engine="unsloth", requested=True, unsloth_conv=conv)
    assert (decided.packing, decided.route) == (packs, route)
    assert packing.decide("lfm2", engine="unsloth", requested=False, unsloth_conv=conv).route == "n/a"


def test_the_record_says_the_engine_turned_packing_off() -> None:
    """Unsloth's SFTTrainer sets `packing` False where its own checks fail: the manifest follows."""
    asked = packing.Decision(True, "document-mask+conv-seq-idx-torch")
    assert packing.as_run(asked, engine_packs=True) == asked
    ran = packing.as_run(asked, engine_packs=False)
    assert ran.packing is False and ran.route.startswith("padded: the engine turned packing off")
    padded = packing.Decision(False, "padded: why")
    assert packing.as_run(padded, engine_packs=False) == padded
