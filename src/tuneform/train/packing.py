"""Whether a packed row gives each document exactly what it would see alone, per architecture.

Why this exists: `training.packing` puts whole conversations side by side in one row and keeps
them apart by position ids that restart at each document. That is exact only where every layer
that mixes tokens stops at those restarts:
- attention: transformers turns restarting position ids into a document mask (sdpa and eager get
  a block-diagonal causal mask, FlexAttention a block-sparse one, sliding windows included); on a
  GPU the trl engine's varlen attention function reads the documents' lengths from them
  (train/varlen_attention.py), and Unsloth attends them with its varlen kernel
  (train/packed_attention.py);
- LFM2's short convolutions: only once train/packed_conv.py resets them at document starts. On
  the trl engine tuneform patches the conv layers itself; Unsloth packs such hybrid models only
  when its conv kernel takes `seq_idx`, so there tuneform binds its own `causal_conv1d_fn` where
  Unsloth looks for one (`packed_conv.enable_for_unsloth`) and packing is refused, before the
  trainer is built, where that cannot be done. The record says which happened.

A model type not known to be exact (a state-space or linear-attention layer, a model's remote
code) trains on the padded path, and the job says why. A model type joins `EXACT` only with a
tiny model of its own in tests/test_packing_exact.py, which checks per-token logits and gradients
of each document alone and packed through the engine's own collation.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

Route = Literal["document-mask", "document-mask+conv-reset", "document-mask+conv-seq-idx-torch", "document-mask+conv-seq-idx-kernel"]

EXACT: dict[str, Route] = {
    "llama": "document-mask",
    "mistral": "document-mask",
    "qwen2": "document-mask",
    "qwen3": "document-mask",
    "gemma3_text": "document-mask",  # sliding-window layers too: the window mask is cut at documents
    "gemma3": "document-mask",
    "lfm2": "document-mask+conv-reset",
}
"""Model types whose packed rows are exact on the trl engine, and by which route."""

NEEDS_TRL = {"document-mask+conv-reset"}
"""Routes tuneform applies to the model the trl engine loads; on Unsloth they need a conv route
(train/packed_conv.py `ConvRoute`) that Unsloth itself accepts."""


class PackingWarning(UserWarning):
    """Packing was asked for and the padded path is taken instead (the message says why)."""


@dataclass(frozen=True)
class Decision:
    """What a job does with `training.packing` for a model: `route` goes to the manifest."""

    packing: bool
    route: str  # an EXACT route, "n/a" (packing not asked) or "padded: <why>"
    note: str | None = None  # what the job prints when it refuses packing


def decide(model_type: str, *, engine: str, requested: bool, unsloth_conv: str = "none", conv_why: str = "") -> Decision:
    """Pack only where the route for this model type and engine is known to be exact; pure.
    `unsloth_conv`: the conv route Unsloth was given (train/packed_conv.py `ConvRoute`), and
    `conv_why` why there is none."""
    if not requested:
        return Decision(False, "n/a")
    route = EXACT.get(model_type)
    if route is None:
        why = f"packing is not known to be exact for model type '{model_type}'"
    elif route in NEEDS_TRL and engine == "unsloth" and unsloth_conv != "none":
        return Decision(True, f"document-mask+conv-{unsloth_conv}")
    elif route in NEEDS_TRL and engine != "trl":
        why = f"the {engine} engine does not keep {model_type}'s convolution layers within each document"
        why += f" ({conv_why})" if conv_why else ""
    else:
        return Decision(True, route)
    return Decision(
        False, f"padded: {why}", f"training.packing: true ignored, training on the padded path: {why} (exact: {', '.join(EXACT)})"
    )


def apply(model: object, *, engine: str, requested: bool) -> Decision:
    """Decide for a loaded model, make its route exact (LFM2's convolutions on the trl engine),
    and warn when packing is refused. Returns the decision for the resolved settings."""
    from tuneform.train import packed_conv

    model_type = str(getattr(getattr(model, "config", None), "model_type", ""))
    unsloth_conv, why = "none", ""
    if requested and engine == "unsloth" and EXACT.get(model_type) in NEEDS_TRL:
        unsloth_conv, why = packed_conv.enable_for_unsloth(model)  # type: ignore[arg-type]
    decision = decide(model_type, engine=engine, requested=requested, unsloth_conv=unsloth_conv, conv_why=why)
    if decision.note is not None:
        warnings.warn(decision.note, PackingWarning, stacklevel=2)
    if decision.route == "document-mask+conv-reset":
        packed_conv.enable(model)  # type: ignore[arg-type]
    return decision


def as_run(decision: Decision, *, engine_packs: bool) -> Decision:
    """The decision as the trainer took it: Unsloth's `SFTTrainer` turns `packing` off by itself
    where its own checks fail (a hybrid model whose conv kernel it refuses, a custom collator), and
    the manifest must say what ran, not what was asked."""
    if not decision.packing or engine_packs:
        return decision
    return Decision(False, "padded: the engine turned packing off when the trainer was built (its log says why)")
