"""Where Unsloth's fused loss does not apply (Gemma 3), the full logits are priced in memory.

On one H100 a gemma-3-1b job sized without them chose batch 16 and ran out of memory at the first
step (bench/results/gpu-gemma-3-1b-it-2026-12-06-shapes.md): a plan must not promise a fit that the
job then breaks.
"""

from __future__ import annotations

from tuneform.estimate.catalog import get_flavor, known_model
from tuneform.estimate.estimator import DEFAULT_CALIBRATION, Workload, estimate


def peak_and_logits(model_id: str, batch: int, engine: str = "unsloth") -> tuple[float, float]:
    shape = known_model(model_id)
    flavor = get_flavor("a100-large")
    assert shape is not None and flavor is not None
    result = estimate(Workload(shape, 2_000_000, batch_size=batch, gradient_checkpointing=False, engine=engine), flavor)  # type: ignore[arg-type]
    return result.peak_vram_gb, result.memory_breakdown["logits"]


def test_gemma3_on_unsloth_holds_its_logits_and_llama_does_not() -> None:
    tokens = 16 * 2048
    _, gemma_logits = peak_and_logits("google/gemma-3-1b-it", 16)
    _, llama_logits = peak_and_logits("meta-llama/Llama-3.2-1B", 16)
    assert llama_logits == 0.0
    vocab = 262_144
    assert gemma_logits * 2**30 == tokens * vocab * DEFAULT_CALIBRATION.unsloth_unfused_logits_bytes


def test_the_batch_sized_for_an_80_gib_card_leaves_room_for_gemma3_logits() -> None:
    shape = known_model("google/gemma-3-1b-it")
    flavor = get_flavor("a100-large")
    assert shape is not None and flavor is not None
    sized = estimate(Workload(shape, 2_000_000), flavor)
    assert sized.peak_vram_gb <= flavor.gpu_memory_gb
    # the batch the unmodelled logits let through (16 on one H100) does not fit once they are priced
    assert peak_and_logits("google/gemma-3-1b-it", 16)[0] > flavor.gpu_memory_gb
