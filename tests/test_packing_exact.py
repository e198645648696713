"""A packed document sees exactly what it sees alone, for every family tuneform packs.

Tiny random-initialised models of each architecture family in the catalog (fp32, a few layers,
hidden 32-48) go through the engine's own `prepare` on CPU: the model as the trl engine loads
it, with whatever train/packing.py applies to it, and the packed batch TRL's collator builds from
tuneform's tokens. For each document of that batch, its per-token logits and the gradient of its
loss with respect to every parameter must equal those of the document fed alone.

Gemma 3 and Mistral get a sliding window shorter than the documents, so the window matters; LFM2
gets conv layers on both sides of an attention layer.
"""

from __future__ import annotations

import itertools
import json
import math
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import (
    AutoModelForCausalLM,
    Gemma3Config,
    Gemma3TextConfig,
    Lfm2Config,
    LlamaConfig,
    MambaConfig,
    MistralConfig,
    PretrainedConfig,
    Qwen2Config,
    Qwen3Config,
    SiglipVisionConfig,
)
from transformers.models.lfm2 import modeling_lfm2

from tuneform.data.reader import Example
from tuneform.runfile.spec import RunSpec
from tuneform.train import packed_conv, packing
from tuneform.train.engine import Prepared, TrainResult, prepare, train
from tuneform.train.packing import EXACT, PackingWarning, decide

# The engine trains in bf16 on a GPU, where fp32 tolerances mean nothing: this is a CPU property
# test (the GPU's varlen routes are checked by tests/test_packed_attention.py for Unsloth and
# tests/test_varlen_attention.py for the trl engine, which imports this module's tiny models).
pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="fp32 property test of the CPU route; the engine picks bf16 on a GPU")

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parent.parent
TOKENIZER = ROOT / "models" / "demo-tiny"
VOCAB = 988  # the demo tokenizer's
WINDOW = 6  # sliding window, in tokens: shorter than every document below
# Weights ten times the usual spread, so that what one token reads from another is far above fp32
# rounding: a leak between documents shows as a large difference, never as noise.
SHAPE = dict(
    vocab_size=VOCAB,
    hidden_size=32,
    intermediate_size=64,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
    initializer_range=0.2,
)

CONFIGS: dict[str, Callable[[], PretrainedConfig]] = {
    "llama": lambda: LlamaConfig(**SHAPE, num_hidden_layers=2, head_dim=8),
    "mistral": lambda: MistralConfig(**SHAPE, num_hidden_layers=2, head_dim=8, sliding_window=WINDOW),
    "qwen2": lambda: Qwen2Config(**SHAPE, num_hidden_layers=2),
    "qwen3": lambda: Qwen3Config(**SHAPE, num_hidden_layers=2, head_dim=8),
    "gemma3_text": lambda: Gemma3TextConfig(
        **SHAPE,
        num_hidden_layers=3,
        head_dim=8,
        query_pre_attn_scalar=8,
        sliding_window=WINDOW,
        layer_types=["sliding_attention", "sliding_attention", "full_attention"],
    ),
    "gemma3": lambda: Gemma3Config(
        text_config=Gemma3TextConfig(
            **SHAPE,
            num_hidden_layers=2,
            head_dim=8,
            query_pre_attn_scalar=8,
            sliding_window=WINDOW,
            layer_types=["sliding_attention", "full_attention"],
        ),
        vision_config=SiglipVisionConfig(
            hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=28, patch_size=14
        ),
        mm_tokens_per_image=1,
    ),
    "lfm2": lambda: Lfm2Config(
        **SHAPE,
        num_hidden_layers=3,
        layer_types=["conv", "full_attention", "conv"],
        conv_L_cache=3,
        block_auto_adjust_ff_dim=False,
    ),
}
"""A tiny config per family tuneform packs; the keys are the model types train/packing.py names."""


def tiny_model(config: PretrainedConfig, folder: Path) -> Path:
    """A random-initialised fp32 model saved with the demo tokenizer, as a job's model folder is."""
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config, dtype=torch.float32).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(TOKENIZER / name, folder / name)
    return folder


def conversations(n: int) -> list[Example]:
    """Conversations of different lengths (8 to 40 tokens), so documents of a packed row differ."""
    words = ["please", "check", "my", "order", "from", "last", "week", "and", "tell", "me", "when", "it", "arrives"]
    return [
        Example(
            "t.jsonl",
            i + 1,
            messages=[
                {"role": "user", "content": " ".join(words[: 1 + (i * 5) % len(words)])},
                {"role": "assistant", "content": " ".join(words[: 1 + (i * 3) % 7])},
            ],
        )
        for i in range(n)
    ]


def short_texts(n: int) -> list[Example]:
    """Plain texts of 3 to 6 tokens with BOS and EOS: documents about as short as LFM2's
    convolution kernel, several to a row."""
    return [Example("t.jsonl", i + 1, text=" ".join(["ok"] * (1 + i % 4))) for i in range(n)]


MIXES = {"conversations": conversations, "short texts": short_texts}


def prepared_packed(folder: Path, out: Path, method: str = "full", mix: str = "conversations") -> Prepared:
    """The engine's own preparation of a packed run on this CPU: model, trainer, collator."""
    spec = RunSpec.model_validate(
        {
            "model": {"id": "./models/tiny", "max_seq_length": 128},
            "data": {"train": [{"path": "t.jsonl"}]},
            "method": {"type": method},  # LoRA on all linear layers by default
            "training": {"packing": True, "max_steps": 1, "per_device_train_batch_size": 2, "seed": 3},
            "compute": {"engine": "trl"},
        }
    )
    return prepare(spec, str(folder), MIXES[mix](12), [], out)


def documents(position_ids: torch.Tensor) -> list[tuple[int, int]]:
    """[start, end) of each document in a padding-free row, from where positions restart."""
    starts = [i for i, p in enumerate(position_ids.tolist()) if p == 0] + [len(position_ids)]
    return list(itertools.pairwise(starts))


def document_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed next-token loss of one document's labelled tokens."""
    return F.cross_entropy(logits[:-1], labels[1:], ignore_index=-100, reduction="sum")


def assert_same(packed: torch.Tensor, alone: torch.Tensor, what: str) -> None:
    """Equal to fp32 rounding: 1e-5 of the largest value, element by element."""
    scale = float(alone.detach().abs().max())
    torch.testing.assert_close(packed, alone, rtol=1e-5, atol=1e-5 * scale, msg=lambda m: f"{what}: {m}")


def test_every_exact_family_has_a_tiny_model_here() -> None:
    assert set(CONFIGS) == set(EXACT)


@pytest.mark.parametrize("method, mix", [("full", "conversations"), ("lora", "conversations"), ("full", "short texts")])
@pytest.mark.parametrize("family", sorted(CONFIGS))
def test_a_packed_document_sees_what_it_sees_alone(family: str, method: str, mix: str, tmp_path: Path) -> None:
    prepared = prepared_packed(tiny_model(CONFIGS[family](), tmp_path / family), tmp_path / "out", method, mix)
    assert prepared.settings.packing and prepared.settings.packing_route == EXACT[family]
    # The trl engine's route on CPU: SDPA with the document mask transformers derives from
    # position ids (a block-diagonal causal mask, cut to the window on sliding layers); FlexAttention
    # has no backward on the CPU, and the GPU's varlen route is checked in tests/test_varlen_attention.py.
    assert prepared.trainer.model.config._attn_implementation == "sdpa"
    assert prepared.settings.attention == "sdpa-document-mask"
    # The batch the trainer's own dataloader and collator (TRL's padding-free packing) hand the model.
    batch = next(iter(prepared.trainer.get_train_dataloader()))
    assert "attention_mask" not in batch and batch["input_ids"].shape[0] == 1
    spans = documents(batch["position_ids"][0])
    lengths = [end - start for start, end in spans]
    assert len(spans) >= 3 and (max(lengths) > WINDOW if mix == "conversations" else min(lengths) <= 3)
    model = prepared.trainer.model
    inputs = {key: value for key, value in batch.items() if key != "labels"}
    assert_documents_match_alone(model, batch, model(**inputs, use_cache=False).logits[0], spans, family)


def assert_documents_match_alone(model: Any, batch: dict[str, Any], packed_logits: Any, spans: list[tuple[int, int]], family: str) -> None:
    """Each packed document's per-token logits, and the gradients of its loss, equal those of the
    document run alone (fp32, tight tolerance)."""
    params = [p for p in model.parameters() if p.requires_grad]
    ids, labels = batch["input_ids"][0], batch["labels"][0]
    for start, end in spans:
        alone_logits = model(input_ids=ids[None, start:end], use_cache=False).logits[0]
        assert_same(packed_logits[start:end], alone_logits, f"{family} logits of tokens {start}-{end}")
        packed_grads = torch.autograd.grad(
            document_loss(packed_logits[start:end], labels[start:end]), params, retain_graph=True, materialize_grads=True
        )
        alone_grads = torch.autograd.grad(document_loss(alone_logits, labels[start:end]), params, materialize_grads=True)
        assert_same(torch.cat([g.flatten() for g in packed_grads]), torch.cat([g.flatten() for g in alone_grads]), f"{family} gradients")


def test_lfm2_trains_packed_and_records_the_route(tmp_path: Path) -> None:
    """The whole loop on the patched model, with gradient checkpointing (which re-runs each
    layer's forward, hook arguments included), saves an adapter and records the route."""
    folder = tiny_model(CONFIGS["lfm2"](), tmp_path / "lfm2")
    spec = RunSpec.model_validate(
        {
            "model": {"id": "./models/tiny", "max_seq_length": 128},
            "data": {"train": [{"path": "t.jsonl"}]},
            "method": {"type": "lora"},
            "training": {"packing": True, "max_steps": 2, "per_device_train_batch_size": 4, "gradient_checkpointing": True},
            "compute": {"engine": "trl"},
        }
    )
    result = train(spec, str(folder), conversations(16), [], tmp_path / "out")
    assert result.steps == 2 and all(math.isfinite(loss) for _, loss in result.loss_history)
    assert (result.settings.packing, result.settings.packing_route) == (True, "document-mask+conv-reset")
    assert result.settings.attention == "sdpa-document-mask"
    assert TrainResult.from_json(json.loads(json.dumps(result.as_json()))).settings == result.settings
    assert (tmp_path / "out" / "adapter_config.json").exists()


def test_lfm2_convolutions_mix_documents_without_the_reset(tmp_path: Path) -> None:
    """What packed_conv.py is for: transformers' own LFM2 forward lets the first tokens of a
    packed document read the end of the one before it."""
    folder = tiny_model(CONFIGS["lfm2"](), tmp_path / "lfm2")
    batch = next(iter(prepared_packed(folder, tmp_path / "out").trainer.get_train_dataloader()))
    plain = AutoModelForCausalLM.from_pretrained(folder)
    (start, end) = documents(batch["position_ids"][0])[1]
    inputs = {key: value for key, value in batch.items() if key != "labels"}
    with torch.no_grad():
        packed = plain(**inputs, use_cache=False).logits[0, start:end]
        alone = plain(input_ids=batch["input_ids"][:, start:end], use_cache=False).logits[0]
    assert not torch.allclose(packed[:2], alone[:2], rtol=1e-2, atol=1e-2)
    # With the reset enabled (twice over: enabling again must not wrap twice), it does not.
    assert packed_conv.enable(plain) == packed_conv.enable(plain) == 2
    assert len(plain.model._forward_pre_hooks) == 1
    with torch.no_grad():
        assert_same(plain(**inputs, use_cache=False).logits[0, start:end], alone, "lfm2 with the reset")


def test_lfm2_rows_that_are_not_packed_keep_transformers_forward(tmp_path: Path) -> None:
    """With a padding mask (transformers then attends across restarts too), a KV cache (the
    conv states only transformers' forward updates) or a single document, the reset stays out of
    the way: the enabled model computes bit for bit what transformers' own does."""
    folder = tiny_model(CONFIGS["lfm2"](), tmp_path / "lfm2")
    plain, enabled = AutoModelForCausalLM.from_pretrained(folder), AutoModelForCausalLM.from_pretrained(folder)
    assert packed_conv.enable(enabled) == 2
    ids = torch.randint(4, VOCAB, (1, 12), generator=torch.Generator().manual_seed(1))
    positions = torch.tensor([[0, 1, 2, 3, 4, 0, 1, 2, 3, 0, 1, 2]])
    with torch.no_grad():
        for kwargs in ({"attention_mask": torch.ones_like(ids), "use_cache": False}, {"use_cache": True}):
            want = plain(input_ids=ids, position_ids=positions, **kwargs).logits
            assert torch.equal(enabled(input_ids=ids, position_ids=positions, **kwargs).logits, want)
        single = torch.arange(12)[None]
        assert torch.equal(
            enabled(input_ids=ids, position_ids=single, use_cache=False).logits, plain(input_ids=ids, use_cache=False).logits
        )
        # Packed (no mask, no cache), the later documents read nothing of the earlier ones.
        packed = enabled(input_ids=ids, position_ids=positions, use_cache=False).logits
        assert_same(packed[:, 9:], enabled(input_ids=ids[:, 9:], use_cache=False).logits, "the last document")


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    lengths=st.lists(st.integers(1, 7), min_size=1, max_size=5),
    taps=st.integers(1, 4),
    bias=st.booleans(),
    seed=st.integers(0, 2**16),
    dtype=st.sampled_from([torch.float32, torch.bfloat16]),
)
def test_document_convolution_is_each_documents_own(lengths: list[int], taps: int, bias: bool, seed: int, dtype: torch.dtype) -> None:
    """Against transformers' own convolution run on each document apart (documents shorter than
    the kernel included); in bf16 (GPU training) to bf16's rounding."""
    gen = torch.Generator().manual_seed(seed)
    channels = 3
    x = torch.randn(2, channels, sum(lengths), generator=gen).to(dtype)
    weight = torch.randn(channels, taps, generator=gen).to(dtype)
    b = torch.randn(channels, generator=gen).to(dtype) if bias else None
    positions = torch.cat([torch.arange(n) for n in lengths]).expand(2, -1)
    got = packed_conv.causal_conv1d_by_document(x, weight, b, packed_conv.document_ids(positions))
    bounds = [0, *itertools.accumulate(lengths)]
    want = torch.cat([modeling_lfm2.causal_conv1d_fn(x[..., s:e], weight, b) for s, e in itertools.pairwise(bounds)], dim=-1)
    assert got.dtype == want.dtype == dtype
    if dtype == torch.float32:
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    else:
        torch.testing.assert_close(got, want)  # bf16's own tolerance: a unit in the last place


@settings(max_examples=25, deadline=None, derandomize=True)
@given(lengths=st.lists(st.integers(1, 6), min_size=2, max_size=5), taps=st.integers(2, 4), seed=st.integers(0, 2**16))
def test_document_convolution_gradients_are_each_documents_own(lengths: list[int], taps: int, seed: int) -> None:
    """The positions recomputed at document starts give the input, the weight and the bias the
    gradients each document alone gives them (fp32): nothing flows across a boundary."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, sum(lengths), generator=gen)
    weight, bias = torch.randn(3, taps, generator=gen), torch.randn(3, generator=gen)
    upstream = torch.randn(2, 3, sum(lengths), generator=gen)
    positions = torch.cat([torch.arange(n) for n in lengths]).expand(2, -1)
    bounds = [0, *itertools.accumulate(lengths)]

    def grads(packed: bool) -> list[torch.Tensor]:
        leaves = [t.clone().requires_grad_() for t in (x, weight, bias)]
        xs, w, b = leaves
        if packed:
            out = packed_conv.causal_conv1d_by_document(xs, w, b, packed_conv.document_ids(positions))
        else:
            out = torch.cat([modeling_lfm2.causal_conv1d_fn(xs[..., s:e], w, b) for s, e in itertools.pairwise(bounds)], dim=-1)
        (out * upstream).sum().backward()
        return [leaf.grad for leaf in leaves]

    for got, want in zip(grads(True), grads(False), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_document_ids_follow_transformers_document_mask() -> None:
    from transformers.masking_utils import find_packed_sequence_indices

    positions = torch.tensor([[0, 1, 2, 0, 0, 1, 0, 1, 2, 3], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]])
    assert packed_conv.document_ids(positions).tolist() == [[0, 0, 0, 1, 2, 2, 3, 3, 3, 3], [0] * 10]
    assert torch.equal(packed_conv.document_ids(positions[:1]).long(), find_packed_sequence_indices(positions[:1]))


@pytest.mark.parametrize(
    "model_type, engine, packs, why",
    [
        ("llama", "unsloth", True, None),  # Unsloth attends documents apart itself (varlen)
        ("lfm2", "trl", True, None),
        ("lfm2", "unsloth", False, "the unsloth engine does not keep lfm2's convolution layers within each document"),
        ("mamba", "trl", False, "packing is not known to be exact for model type 'mamba'"),
    ],
)
def test_decision(model_type: str, engine: str, packs: bool, why: str | None) -> None:
    decided = decide(model_type, engine=engine, requested=True)
    assert decided.packing is packs
    if why is None:
        assert decided.route == EXACT[model_type] and decided.note is None
    else:
        assert decided.route == f"padded: {why}" and decided.note is not None and why in decided.note
    assert decide(model_type, engine=engine, requested=False) == packing.Decision(False, "n/a")


def test_a_family_not_known_exact_trains_padded_and_says_so(tmp_path: Path) -> None:
    """A state-space model carries state across a packed row: the job takes the padded path,
    warns, and records why."""
    config = MambaConfig(vocab_size=VOCAB, hidden_size=32, state_size=4, num_hidden_layers=2, expand=2, conv_kernel=3)
    folder = tiny_model(config, tmp_path / "mamba")
    with pytest.warns(PackingWarning, match="padded path: packing is not known to be exact for model type 'mamba'"):
        prepared = prepared_packed(folder, tmp_path / "out")
    assert not prepared.settings.packing
    assert prepared.settings.packing_route == "padded: packing is not known to be exact for model type 'mamba'"
    assert prepared.settings.attention == "n/a"  # no packed rows to attend
    assert "seq_lengths" not in prepared.trainer.train_dataset.column_names
    batch: dict[str, Any] = next(iter(prepared.trainer.get_train_dataloader()))
    assert "attention_mask" in batch and batch["input_ids"].shape[0] == 2  # one padded row per example


def test_packing_asked_for_an_exact_family_warns_nothing(tmp_path: Path) -> None:
    folder = tiny_model(CONFIGS["llama"](), tmp_path / "llama")
    with warnings.catch_warnings():
        warnings.simplefilter("error", PackingWarning)
        assert prepared_packed(folder, tmp_path / "out").settings.packing
