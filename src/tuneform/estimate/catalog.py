"""What tuneform can train on and what it trains: hardware flavors and base-model shapes.

``plan`` must be fast and offline (no torch, no network, no token), yet it has to price a run
and say whether it fits in GPU memory. Both need facts that live elsewhere: prices and GPU
sizes of the Hugging Face Jobs flavors, and the shape of the base model. This module keeps an
offline copy of both, parsers to refresh them from their sources (``GET /api/jobs/hardware``,
a model's ``config.json``), and nothing that imports more than the standard library.

Memory sizes are in GiB (2**30 bytes). GPU vendors' nominal sizes ("24 GB", "80 GB") are binary
gigabytes, so they are used as GiB; the usable part is a little smaller, which the estimator's
safety margin covers.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "FLAVORS",
    "KNOWN_MODELS",
    "LOCAL",
    "LORA_MODULES",
    "Flavor",
    "ModelShape",
    "flavors_from_hardware",
    "get_flavor",
    "known_model",
    "local_flavor",
    "model_shape",
    "shape_from_config",
]


# --------------------------------------------------------------------------------------------
# Flavors
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Flavor:
    """One machine a run can train on.

    ``gpu_memory_gb`` is per GPU because data-parallel training (DDP, what Unsloth and TRL do
    with several GPUs) replicates the model on every GPU: a model that does not fit on one GPU
    of a flavor does not fit on that flavor at all. ``cpus`` and ``ram_gb`` are None where the
    offline table does not know them (the hardware endpoint fills them in).
    """

    name: str
    pretty_name: str
    gpu_model: str | None
    gpus: int
    gpu_memory_gb: float
    usd_per_hour: float
    bf16: bool
    cpus: int | None = None
    ram_gb: float | None = None

    @property
    def is_cpu(self) -> bool:
        """True when training would run on the CPU (no accelerator): the estimator's CPU profile."""
        return self.gpus == 0

    @property
    def memory_gb(self) -> float:
        """Memory one training replica may use: one GPU's memory, or the RAM of a CPU machine."""
        if self.is_cpu:
            return self.ram_gb or 0.0
        return self.gpu_memory_gb

    @property
    def total_gpu_memory_gb(self) -> float:
        """All GPUs' memory together, for display ("4x24 GB")."""
        return self.gpus * self.gpu_memory_gb


# Per-GPU memory of the GPU models HF Jobs offers (nominal GB, from the flavor table of
# reference/hf-jobs.md). Used for flavors parsed from the hardware endpoint too, because the
# endpoint's ``vram`` field is a display string whose meaning for multi-GPU flavors (per GPU
# or total) the reference does not pin down.
GPU_MEMORY_GB: dict[str, float] = {
    "T4": 16.0,
    "A10G": 24.0,
    "L4": 24.0,
    "L40S": 48.0,
    "A100": 80.0,
    "H200": 141.0,
    "RTX PRO 6000": 96.0,
}

# GPUs older than Ampere have no bf16 tensor cores: training there runs in fp16
# (reference/unsloth-on-gpu.md: "T4 (compute capability 7.5) has no bf16").
_NO_BF16_GPUS = frozenset({"T4", "V100", "P100", "P40", "P4", "K80", "M60"})


def _normalize_gpu_model(model: str) -> str:
    """Canonical spelling of a GPU model name ("Nvidia RTX Pro 6000" -> "RTX PRO 6000")."""
    text = re.sub(r"\s+", " ", model.strip())
    text = re.sub(r"^(nvidia|aws)\s+", "", text, flags=re.IGNORECASE)
    upper = text.upper()
    for known in GPU_MEMORY_GB:
        if upper == known or upper.startswith(known + " "):
            return known
    return text


def _gpu_flavor(
    name: str,
    pretty: str,
    model: str,
    gpus: int,
    usd_per_hour: float,
    cpus: int | None,
    ram_gb: float | None,
) -> Flavor:
    return Flavor(
        name=name,
        pretty_name=pretty,
        gpu_model=model,
        gpus=gpus,
        gpu_memory_gb=GPU_MEMORY_GB[model],
        usd_per_hour=usd_per_hour,
        bf16=model not in _NO_BF16_GPUS,
        cpus=cpus,
        ram_gb=ram_gb,
    )


def _cpu_flavor(name: str, pretty: str, usd_per_hour: float, cpus: int, ram_gb: float) -> Flavor:
    return Flavor(
        name=name,
        pretty_name=pretty,
        gpu_model=None,
        gpus=0,
        gpu_memory_gb=0.0,
        usd_per_hour=usd_per_hour,
        bf16=False,
        cpus=cpus,
        ram_gb=ram_gb,
    )


def local_flavor(cpus: int | None = None, ram_gb: float | None = None) -> Flavor:
    """The machine tuneform runs on, as a CPU flavor that costs nothing.

    The local backend trains in a subprocess on this machine; its estimate uses the CPU
    profile, its "GPU memory" is the machine's RAM. ``cpus``/``ram_gb`` default to what the
    operating system reports (two cheap system calls), so tests can pin them.
    """
    if cpus is None:
        cpus = os.cpu_count() or 1
    if ram_gb is None:
        ram_gb = _physical_ram_gb()
    return _cpu_flavor("local", "This machine (CPU)", 0.0, cpus, ram_gb)


def _physical_ram_gb() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (AttributeError, ValueError, OSError):  # not POSIX: assume a modest laptop
        return 8.0


def _offline_flavors() -> dict[str, Flavor]:
    """The flavor table of reference/hf-jobs.md (prices: huggingface_hub 2.4.0's era).

    vCPU and RAM come from the Hub's "Spaces GPU hardware" documentation where it lists
    them; None where it does not (the hardware endpoint is the source of truth).
    """
    flavors = [
        _cpu_flavor("cpu-basic", "CPU Basic", 0.01, 2, 16),
        _cpu_flavor("cpu-upgrade", "CPU Upgrade", 0.03, 8, 32),
        _gpu_flavor("t4-small", "Nvidia T4 - small", "T4", 1, 0.40, 4, 15),
        _gpu_flavor("t4-medium", "Nvidia T4 - medium", "T4", 1, 0.60, 8, 30),
        _gpu_flavor("l4x1", "1x Nvidia L4", "L4", 1, 0.80, 8, 30),
        _gpu_flavor("l4x4", "4x Nvidia L4", "L4", 4, 3.80, 48, 186),
        _gpu_flavor("l40sx1", "1x Nvidia L40S", "L40S", 1, 1.80, 8, 62),
        _gpu_flavor("l40sx4", "4x Nvidia L40S", "L40S", 4, 8.30, 48, 382),
        _gpu_flavor("l40sx8", "8x Nvidia L40S", "L40S", 8, 23.50, 192, 1534),
        _gpu_flavor("a10g-small", "Nvidia A10G - small", "A10G", 1, 1.00, 4, 15),
        _gpu_flavor("a10g-large", "Nvidia A10G - large", "A10G", 1, 1.50, 12, 46),
        _gpu_flavor("a10g-largex2", "2x Nvidia A10G - large", "A10G", 2, 3.00, 24, 92),
        _gpu_flavor("a10g-largex4", "4x Nvidia A10G - large", "A10G", 4, 5.00, 48, 184),
        _gpu_flavor("a100-large", "Nvidia A100 - large", "A100", 1, 2.50, 12, 142),
        _gpu_flavor("a100x4", "4x Nvidia A100", "A100", 4, 10.00, None, None),
        _gpu_flavor("a100x8", "8x Nvidia A100", "A100", 8, 20.00, None, None),
        _gpu_flavor("h200", "Nvidia H200", "H200", 1, 5.00, None, None),
        _gpu_flavor("h200x2", "2x Nvidia H200", "H200", 2, 10.00, None, None),
        _gpu_flavor("h200x4", "4x Nvidia H200", "H200", 4, 20.00, None, None),
        _gpu_flavor("h200x8", "8x Nvidia H200", "H200", 8, 40.00, None, None),
        _gpu_flavor("rtx-pro-6000", "Nvidia RTX PRO 6000", "RTX PRO 6000", 1, 2.75, None, None),
        _gpu_flavor("rtx-pro-6000x2", "2x Nvidia RTX PRO 6000", "RTX PRO 6000", 2, 5.50, None, None),
        _gpu_flavor("rtx-pro-6000x4", "4x Nvidia RTX PRO 6000", "RTX PRO 6000", 4, 11.00, None, None),
        _gpu_flavor("rtx-pro-6000x8", "8x Nvidia RTX PRO 6000", "RTX PRO 6000", 8, 22.00, None, None),
    ]
    return {flavor.name: flavor for flavor in flavors}


LOCAL: Flavor = local_flavor()
"""The local backend's pseudo-flavor, measured from this machine at import."""

FLAVORS: dict[str, Flavor] = {**_offline_flavors(), LOCAL.name: LOCAL}
_OFFLINE_TABLE: dict[str, Flavor] = dict(FLAVORS)
_TABLE_DATE = "2026-11 (reference/hf-jobs.md)"
"""Offline catalog: every HF Jobs flavor of reference/hf-jobs.md plus ``local``."""


def get_flavor(name: str, catalog: Mapping[str, Flavor] = FLAVORS) -> Flavor | None:
    """The flavor called ``name`` (HF flavor names are lower-case and exact), or None."""
    return catalog.get(name)


_NUMBER = re.compile(r"(\d+(?:\.\d+)?)")


def _leading_number(value: Any) -> float | None:
    """First number in a field that the API may send as ``24``, ``"24"`` or ``"24 GB"``."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    match = _NUMBER.search(str(value))
    return float(match.group(1)) if match else None


def _size_gb(value: Any) -> float | None:
    """A memory size string ("16 GB", "512 MiB", "1.5 TB") in GiB-as-GB units."""
    number = _leading_number(value)
    if number is None:
        return None
    unit = str(value).upper()
    if "TB" in unit or "TIB" in unit:
        return number * 1024
    if "MB" in unit or "MIB" in unit:
        return number / 1024
    return number


def _usd_per_hour(item: Mapping[str, Any]) -> float:
    """Hourly price from the endpoint's unit cost (micro-USD is exact; USD is rounded)."""
    if item.get("unitCostMicroUSD") is not None:
        unit_cost = float(item["unitCostMicroUSD"]) / 1_000_000
    elif item.get("unitCostUSD") is not None:
        unit_cost = float(item["unitCostUSD"])
    else:
        raise ValueError(f"hardware flavor {item.get('name')!r} has no unitCostUSD")
    label = str(item.get("unitLabel") or "minute").lower()
    per_hour = {"second": 3600, "minute": 60, "hour": 1}.get(label)
    if per_hour is None:
        raise ValueError(f"hardware flavor {item.get('name')!r}: unknown unitLabel {label!r}")
    return unit_cost * per_hour


def flavors_from_hardware(payload: list[dict[str, Any]]) -> dict[str, Flavor]:
    """Flavors from ``GET /api/jobs/hardware`` so prices can be refreshed when online.

    Shape (reference/hf-jobs.md): ``{name, prettyName, cpu, ram, accelerator: {type, model,
    quantity, vram, manufacturer} | null, unitCostMicroUSD, unitCostUSD, unitLabel}``; the API
    sends ``cpu``/``ram``/``quantity``/``vram`` as strings. A GPU model the offline table does
    not know still parses: its per-GPU memory is ``vram / quantity`` (``vram`` read as the
    flavor's total, as the Hub's hardware table shows it) and bf16 is assumed unless the
    model is a pre-Ampere part. Non-GPU accelerators (e.g. AWS Neuron) are skipped: nothing
    tuneform trains runs on them.
    """
    flavors: dict[str, Flavor] = {}
    for item in payload:
        name = str(item["name"])
        accelerator = item.get("accelerator")
        cpus_number = _leading_number(item.get("cpu"))
        cpus = int(cpus_number) if cpus_number is not None else None
        ram_gb = _size_gb(item.get("ram"))
        usd_per_hour = _usd_per_hour(item)
        pretty = str(item.get("prettyName") or name)
        if not accelerator:
            flavors[name] = Flavor(
                name=name,
                pretty_name=pretty,
                gpu_model=None,
                gpus=0,
                gpu_memory_gb=0.0,
                usd_per_hour=usd_per_hour,
                bf16=False,
                cpus=cpus,
                ram_gb=ram_gb,
            )
            continue
        if str(accelerator.get("type", "gpu")).lower() != "gpu":
            continue
        model = _normalize_gpu_model(str(accelerator.get("model") or "unknown"))
        gpus = int(_leading_number(accelerator.get("quantity")) or 1)
        if model in GPU_MEMORY_GB:
            per_gpu = GPU_MEMORY_GB[model]
        else:
            total = _size_gb(accelerator.get("vram")) or 0.0
            per_gpu = total / gpus
        flavors[name] = Flavor(
            name=name,
            pretty_name=pretty,
            gpu_model=model,
            gpus=gpus,
            gpu_memory_gb=per_gpu,
            usd_per_hour=usd_per_hour,
            bf16=model.upper() not in _NO_BF16_GPUS,
            cpus=cpus,
            ram_gb=ram_gb,
        )
    return flavors


# --------------------------------------------------------------------------------------------
# Model shapes
# --------------------------------------------------------------------------------------------

LORA_MODULES: tuple[str, ...] = ("q", "k", "v", "o", "gate", "up", "down")
"""The seven projections of a decoder layer; PEFT's ``all-linear`` targets all of them."""
LORA_MODULE_NAMES: tuple[str, ...] = tuple(f"{m}_proj" for m in LORA_MODULES)

# Module names as written in run files (PEFT's), to the projection they adapt. LFM2's names map
# onto the Llama-style projections they play the role of (see the LFM2 note in KNOWN_MODELS).
_MODULE_ALIASES: dict[str, tuple[str, ...]] = {
    **{name: (name,) for name in LORA_MODULES},
    **{f"{name}_proj": (name,) for name in LORA_MODULES},
    "out_proj": ("o",),
    "in_proj": ("q", "k", "v"),
    "w1": ("gate",),
    "w3": ("up",),
    "w2": ("down",),
}


@dataclass(frozen=True)
class ModelShape:
    """What the estimator needs to know about a base model: sizes, not weights.

    ``params`` is the number of distinct parameters (tied embeddings counted once), i.e. what
    sits in memory. ``full_attention_layers`` is how many layers attend over the whole
    sequence (None: all of them); the other layers use a sliding window of
    ``sliding_window`` tokens when that is set, and no attention at all otherwise (LFM2's
    short convolutions). Attention cost is the only thing that depends on this.
    """

    architecture: str
    params: int
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    tied_embeddings: bool
    full_attention_layers: int | None = None
    sliding_window: int | None = None

    @property
    def q_dim(self) -> int:
        """Width of the query projection (heads x head_dim; not always hidden_size: Qwen3, Gemma 3)."""
        return self.num_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        """Width of each of the key and value projections (grouped-query attention)."""
        return self.num_kv_heads * self.head_dim

    @property
    def embedding_params(self) -> int:
        """One vocab x hidden matrix: the input embedding, and the LM head when tied."""
        return self.vocab_size * self.hidden_size

    @property
    def matmul_params(self) -> int:
        """Parameters every token multiplies through: all but the input-embedding lookup.

        The embedding is a table lookup (no FLOPs), but the LM head is a matmul; a tied model
        uses its one embedding matrix as the head, so all its parameters count.
        """
        return self.params - (0 if self.tied_embeddings else self.embedding_params)

    @property
    def layer_params(self) -> int:
        """Parameters of the decoder layers alone (what gradient checkpointing recomputes)."""
        return self.params - self.embedding_params * (1 if self.tied_embeddings else 2)

    def module_dims(self) -> dict[str, tuple[int, int]]:
        """(in_features, out_features) of each projection of a decoder layer."""
        h, i = self.hidden_size, self.intermediate_size
        return {
            "q": (h, self.q_dim),
            "k": (h, self.kv_dim),
            "v": (h, self.kv_dim),
            "o": (self.q_dim, h),
            "gate": (h, i),
            "up": (h, i),
            "down": (i, h),
        }

    @property
    def linear_params(self) -> int:
        """Weights of the seven projections over all layers: what QLoRA stores in 4 bits."""
        per_layer = sum(fan_in * fan_out for fan_in, fan_out in self.module_dims().values())
        return per_layer * self.num_layers

    def lora_params(self, r: int, target_modules: str | Iterable[str] = "all-linear") -> int:
        """Trainable parameters of LoRA adapters of rank ``r`` on ``target_modules``.

        Each adapted projection W (in x out) gains A (in x r) and B (r x out): r * (in + out)
        parameters per layer. ``"all-linear"`` (PEFT's spelling) means the seven projections;
        an explicit list may use PEFT's names (``q_proj``) or the short ones (``q``).
        """
        if r <= 0:
            raise ValueError(f"LoRA rank must be positive, got {r}")
        modules = _resolve_modules(target_modules)
        dims = self.module_dims()
        per_layer = sum(r * (dims[name][0] + dims[name][1]) for name in modules)
        return per_layer * self.num_layers


def known_lora_module(name: str) -> bool:
    """Whether the estimator can size LoRA on a module of this name (q_proj, gate, ...)."""
    return name.strip().lower() in _MODULE_ALIASES


def _resolve_modules(target_modules: str | Iterable[str]) -> frozenset[str]:
    if isinstance(target_modules, str):
        if target_modules in ("all-linear", "all_linear"):
            return frozenset(LORA_MODULES)
        target_modules = [target_modules]
    resolved: set[str] = set()
    for name in target_modules:
        key = name.strip().lower()
        if key not in _MODULE_ALIASES:
            accepted = ", ".join(["all-linear", *(f"{m}_proj" for m in LORA_MODULES)])
            raise ValueError(f"unknown LoRA target module {name!r}: use {accepted}")
        resolved.update(_MODULE_ALIASES[key])
    if not resolved:
        raise ValueError("LoRA target_modules is empty")
    return frozenset(resolved)


def _count_params(
    *,
    hidden: int,
    layers: int,
    heads: int,
    kv_heads: int,
    head_dim: int,
    intermediate: int,
    vocab: int,
    tied: bool,
    qkv_bias: bool = False,
    qk_norm: bool = False,
    norms_per_layer: int = 2,
    conv_layers: int = 0,
    conv_kernel: int = 3,
) -> int:
    """Parameter count of a Llama-family decoder from its shape.

    Per layer: q/k/v/o projections (+ q/k/v biases for Qwen2), a gated MLP (gate, up, down),
    RMSNorm weights (2 per layer; Gemma 3 has 4) and per-head q/k norms (Qwen3, Gemma 3,
    LFM2). ``conv_layers`` of the layers (LFM2) replace attention by a short convolution:
    in_proj (h -> 3h), a depthwise kernel of ``conv_kernel`` taps and out_proj (h -> h).
    Reproduces the published counts exactly for the models of KNOWN_MODELS.
    """
    q_dim, kv_dim = heads * head_dim, kv_heads * head_dim
    attention = hidden * q_dim + 2 * hidden * kv_dim + q_dim * hidden
    if qkv_bias:
        attention += q_dim + 2 * kv_dim
    if qk_norm:
        attention += 2 * head_dim
    conv = hidden * 3 * hidden + hidden * hidden + hidden * conv_kernel
    mlp = 3 * hidden * intermediate
    norms = norms_per_layer * hidden
    decoder = (layers - conv_layers) * attention + conv_layers * conv + layers * (mlp + norms)
    embeddings = vocab * hidden * (1 if tied else 2)
    return decoder + embeddings + hidden  # + the final norm


def _llama_like(
    architecture: str,
    *,
    hidden: int,
    layers: int,
    heads: int,
    kv_heads: int,
    head_dim: int,
    intermediate: int,
    vocab: int,
    tied: bool,
    qkv_bias: bool = False,
    qk_norm: bool = False,
    norms_per_layer: int = 2,
    full_attention_layers: int | None = None,
    sliding_window: int | None = None,
) -> ModelShape:
    params = _count_params(
        hidden=hidden,
        layers=layers,
        heads=heads,
        kv_heads=kv_heads,
        head_dim=head_dim,
        intermediate=intermediate,
        vocab=vocab,
        tied=tied,
        qkv_bias=qkv_bias,
        qk_norm=qk_norm,
        norms_per_layer=norms_per_layer,
    )
    return ModelShape(
        architecture=architecture,
        params=params,
        hidden_size=hidden,
        num_layers=layers,
        num_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        intermediate_size=intermediate,
        vocab_size=vocab,
        tied_embeddings=tied,
        full_attention_layers=full_attention_layers,
        sliding_window=sliding_window,
    )


def _known_models() -> dict[str, ModelShape]:
    """Shapes from each model's published config.json; keys are lower-case Hub ids."""
    llama_1b = _llama_like(
        "llama",
        hidden=2048,
        layers=16,
        heads=32,
        kv_heads=8,
        head_dim=64,
        intermediate=8192,
        vocab=128256,
        tied=True,
    )
    llama_3b = _llama_like(
        "llama",
        hidden=3072,
        layers=28,
        heads=24,
        kv_heads=8,
        head_dim=128,
        intermediate=8192,
        vocab=128256,
        tied=True,
    )
    llama_8b = _llama_like(
        "llama",
        hidden=4096,
        layers=32,
        heads=32,
        kv_heads=8,
        head_dim=128,
        intermediate=14336,
        vocab=128256,
        tied=False,
    )
    # LFM2 / LFM2.5 1.2B (config: hidden 2048, 16 layers of which 6 "full_attention" and 10
    # "conv", 32 heads, 8 KV heads, block_ff_dim 12288 auto-adjusted to 2/3 -> 8192, vocab
    # 65536, tied). APPROXIMATION: the estimator models every layer as Llama-style
    # projections. A conv layer's in_proj (h -> 3h) + out_proj (h -> h) has 16.8M weights where
    # q/k/v/o would have 10.5M, so `linear_params` is ~6% low and LoRA counts ~2% off; the
    # parameter count itself is exact (computed with the conv layers) and attention FLOPs use
    # only the 6 attention layers (the short convolutions cost next to nothing).
    lfm2_params = _count_params(
        hidden=2048,
        layers=16,
        heads=32,
        kv_heads=8,
        head_dim=64,
        intermediate=8192,
        vocab=65536,
        tied=True,
        qk_norm=True,
        conv_layers=10,
    )
    lfm2 = ModelShape(
        architecture="lfm2",
        params=lfm2_params,
        hidden_size=2048,
        num_layers=16,
        num_heads=32,
        num_kv_heads=8,
        head_dim=64,
        intermediate_size=8192,
        vocab_size=65536,
        tied_embeddings=True,
        full_attention_layers=6,
    )
    models: dict[str, ModelShape] = {
        "LiquidAI/LFM2.5-1.2B-Instruct": lfm2,
        "LiquidAI/LFM2-1.2B": lfm2,
        "meta-llama/Llama-3.2-1B-Instruct": llama_1b,
        "meta-llama/Llama-3.2-1B": llama_1b,
        "meta-llama/Llama-3.2-3B-Instruct": llama_3b,
        "meta-llama/Llama-3.2-3B": llama_3b,
        "meta-llama/Llama-3.1-8B-Instruct": llama_8b,
        "meta-llama/Llama-3.1-8B": llama_8b,
        "Qwen/Qwen3-0.6B": _llama_like(
            "qwen3",
            hidden=1024,
            layers=28,
            heads=16,
            kv_heads=8,
            head_dim=128,
            intermediate=3072,
            vocab=151936,
            tied=True,
            qk_norm=True,
        ),
        "Qwen/Qwen3-1.7B": _llama_like(
            "qwen3",
            hidden=2048,
            layers=28,
            heads=16,
            kv_heads=8,
            head_dim=128,
            intermediate=6144,
            vocab=151936,
            tied=True,
            qk_norm=True,
        ),
        "Qwen/Qwen3-4B": _llama_like(
            "qwen3",
            hidden=2560,
            layers=36,
            heads=32,
            kv_heads=8,
            head_dim=128,
            intermediate=9728,
            vocab=151936,
            tied=True,
            qk_norm=True,
        ),
        "Qwen/Qwen3-8B": _llama_like(
            "qwen3",
            hidden=4096,
            layers=36,
            heads=32,
            kv_heads=8,
            head_dim=128,
            intermediate=12288,
            vocab=151936,
            tied=False,
            qk_norm=True,
        ),
        "Qwen/Qwen2.5-0.5B-Instruct": _llama_like(
            "qwen2",
            hidden=896,
            layers=24,
            heads=14,
            kv_heads=2,
            head_dim=64,
            intermediate=4864,
            vocab=151936,
            tied=True,
            qkv_bias=True,
        ),
        "Qwen/Qwen2.5-1.5B-Instruct": _llama_like(
            "qwen2",
            hidden=1536,
            layers=28,
            heads=12,
            kv_heads=2,
            head_dim=128,
            intermediate=8960,
            vocab=151936,
            tied=True,
            qkv_bias=True,
        ),
        "Qwen/Qwen2.5-7B-Instruct": _llama_like(
            "qwen2",
            hidden=3584,
            layers=28,
            heads=28,
            kv_heads=4,
            head_dim=128,
            intermediate=18944,
            vocab=152064,
            tied=False,
            qkv_bias=True,
        ),
        "HuggingFaceTB/SmolLM2-135M-Instruct": _llama_like(
            "llama",
            hidden=576,
            layers=30,
            heads=9,
            kv_heads=3,
            head_dim=64,
            intermediate=1536,
            vocab=49152,
            tied=True,
        ),
        "HuggingFaceTB/SmolLM2-360M-Instruct": _llama_like(
            "llama",
            hidden=960,
            layers=32,
            heads=15,
            kv_heads=5,
            head_dim=64,
            intermediate=2560,
            vocab=49152,
            tied=True,
        ),
        "HuggingFaceTB/SmolLM2-1.7B-Instruct": _llama_like(
            "llama",
            hidden=2048,
            layers=24,
            heads=32,
            kv_heads=32,
            head_dim=64,
            intermediate=8192,
            vocab=49152,
            tied=True,
        ),
        # Gemma 3: 5 of every 6 layers use a sliding window (512 tokens on 1B, 1024 on 4B).
        "google/gemma-3-1b-it": _llama_like(
            "gemma3_text",
            hidden=1152,
            layers=26,
            heads=4,
            kv_heads=1,
            head_dim=256,
            intermediate=6912,
            vocab=262144,
            tied=True,
            qk_norm=True,
            norms_per_layer=4,
            full_attention_layers=4,
            sliding_window=512,
        ),
        # Text decoder only: the checkpoint also holds a ~0.42B SigLIP vision tower (4.3B in
        # all), which a text fine-tune leaves frozen; it is not counted here.
        "google/gemma-3-4b-it": _llama_like(
            "gemma3_text",
            hidden=2560,
            layers=34,
            heads=8,
            kv_heads=4,
            head_dim=256,
            intermediate=10240,
            vocab=262208,
            tied=True,
            qk_norm=True,
            norms_per_layer=4,
            full_attention_layers=5,
            sliding_window=1024,
        ),
        "mistralai/Mistral-7B-Instruct-v0.3": _llama_like(
            "mistral",
            hidden=4096,
            layers=32,
            heads=32,
            kv_heads=8,
            head_dim=128,
            intermediate=14336,
            vocab=32768,
            tied=False,
        ),
    }
    # Unsloth's mirrors re-host the same weights (same config) under the unsloth/ namespace.
    for model_id in list(models):
        if model_id.startswith("meta-llama/"):
            models["unsloth/" + model_id.split("/", 1)[1]] = models[model_id]
    return {model_id.lower(): shape for model_id, shape in models.items()}


KNOWN_MODELS: dict[str, ModelShape] = _known_models()
"""Shapes of base models tuneform knows offline, keyed by lower-case Hub id."""


def known_model(model_id: str) -> ModelShape | None:
    """Look a Hub id up in KNOWN_MODELS (Hub ids are case-insensitive)."""
    return KNOWN_MODELS.get(model_id.strip().lower())


# transformers omits a nested sub-config's keys that equal the class defaults when it saves
# (gemma-3-4b-it's text_config has no num_attention_heads, head_dim or vocab_size): these are
# Gemma3TextConfig's defaults.
_TEXT_CONFIG_DEFAULTS: dict[str, dict[str, Any]] = {
    "gemma3_text": {
        "vocab_size": 262208,
        "hidden_size": 2304,
        "intermediate_size": 9216,
        "num_hidden_layers": 26,
        "num_attention_heads": 8,
        "num_key_value_heads": 4,
        "head_dim": 256,
        "sliding_window": 4096,
        "sliding_window_pattern": 6,
        "tie_word_embeddings": True,
    },
}

# Model types whose transformers config class defaults tie_word_embeddings to True.
_TIED_BY_DEFAULT = ("gemma", "lfm2")


def _require(config: Mapping[str, Any], key: str) -> Any:
    value = config.get(key)
    if value is None:
        raise ValueError(f"config.json has no {key!r}: cannot estimate this model's size")
    return value


def _lfm2_ff_dim(config: Mapping[str, Any]) -> int:
    """LFM2's feed-forward width: block_ff_dim, auto-adjusted the way its modeling code does."""
    ff = int(config.get("block_ff_dim") or _require(config, "intermediate_size"))
    if config.get("block_auto_adjust_ff_dim", False):
        ff = int(2 * ff / 3)
        multiplier = config.get("block_ffn_dim_multiplier")
        if multiplier is not None:
            ff = int(multiplier * ff)
        multiple_of = int(config.get("block_multiple_of") or 1)
        ff = multiple_of * math.ceil(ff / multiple_of)
    return ff


def shape_from_config(config: Mapping[str, Any]) -> ModelShape:
    """A ModelShape from a Hugging Face ``config.json`` dict.

    Reads llama / mistral / qwen2 / qwen3 / gemma3(_text) / lfm2 style keys; a multimodal
    config's ``text_config`` is used when present (the text decoder is what tuneform trains).
    The parameter count is ``num_parameters`` when the config has one, else it is computed
    from the shape. Raises ValueError naming the missing key when the shape is incomplete.
    """
    text_config = config.get("text_config")
    if isinstance(text_config, Mapping):
        model_type = str(text_config.get("model_type") or f"{config.get('model_type', '')}_text")
        merged: dict[str, Any] = {**_TEXT_CONFIG_DEFAULTS.get(model_type, {}), **text_config}
    else:
        model_type = str(config.get("model_type") or "llama")
        merged = {**_TEXT_CONFIG_DEFAULTS.get(model_type, {}), **config}

    hidden = int(_require(merged, "hidden_size"))
    layers = int(_require(merged, "num_hidden_layers"))
    heads = int(merged.get("num_attention_heads") or _require(merged, "num_heads"))
    kv_heads = int(merged.get("num_key_value_heads") or heads)
    head_dim = int(merged.get("head_dim") or hidden // heads)
    vocab = int(_require(merged, "vocab_size"))
    is_lfm2 = model_type.startswith("lfm2")
    intermediate = _lfm2_ff_dim(merged) if is_lfm2 else int(_require(merged, "intermediate_size"))
    tied_default = model_type.startswith(_TIED_BY_DEFAULT)
    tied_value = merged.get("tie_word_embeddings", merged.get("tie_embedding"))
    tied = bool(tied_default if tied_value is None else tied_value)

    layer_types = merged.get("layer_types")
    window = merged.get("sliding_window")
    full_attention: int | None = None
    sliding_window: int | None = None
    conv_layers = 0
    if isinstance(layer_types, list) and layer_types:
        full_attention = sum(1 for kind in layer_types if kind == "full_attention")
        conv_layers = sum(1 for kind in layer_types if kind == "conv")
        if any(kind == "sliding_attention" for kind in layer_types) and window:
            sliding_window = int(window)
    elif model_type.startswith("gemma3") and window:
        pattern = int(merged.get("sliding_window_pattern") or 6)
        full_attention = layers // pattern
        sliding_window = int(window)
    elif window and merged.get("use_sliding_window", True):
        full_attention = 0  # Mistral v0.1 style: every layer attends within the window
        sliding_window = int(window)
    if full_attention == layers:
        full_attention = None

    params = merged.get("num_parameters") or config.get("num_parameters")
    if params is None:
        params = _count_params(
            hidden=hidden,
            layers=layers,
            heads=heads,
            kv_heads=kv_heads,
            head_dim=head_dim,
            intermediate=intermediate,
            vocab=vocab,
            tied=tied,
            qkv_bias=bool(merged.get("attention_bias", model_type == "qwen2")),
            qk_norm=model_type.startswith(("qwen3", "gemma3", "lfm2")),
            norms_per_layer=4 if model_type.startswith(("gemma2", "gemma3")) else 2,
            conv_layers=conv_layers,
            conv_kernel=int(merged.get("conv_L_cache") or 3),
        )
    return ModelShape(
        architecture=model_type,
        params=int(params),
        hidden_size=hidden,
        num_layers=layers,
        num_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        intermediate_size=intermediate,
        vocab_size=vocab,
        tied_embeddings=tied,
        full_attention_layers=full_attention,
        sliding_window=sliding_window,
    )


def model_shape(model_id: str, repo_root: Path) -> ModelShape | None:
    """The shape of a run's base model, or None when tuneform cannot know it offline.

    A model id starting with "." or "/" is a local directory (relative to ``repo_root``),
    as the run-file contract says; its ``config.json`` is read. Anything else is a Hub id
    looked up in KNOWN_MODELS. A local directory without a readable config.json raises
    (the run file points at something that is not a model); an unknown Hub id returns None
    so the caller can say "no estimate" rather than fail.
    """
    if model_id.startswith((".", "/")):
        directory = Path(model_id) if model_id.startswith("/") else repo_root / model_id
        config_path = directory / "config.json"
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
        except FileNotFoundError as error:
            raise ValueError(f"{model_id}: no config.json in {directory}") from error
        except json.JSONDecodeError as error:
            raise ValueError(f"{config_path}: invalid JSON ({error})") from error
        if not isinstance(config, dict):
            raise ValueError(f"{config_path}: expected a JSON object")
        return shape_from_config(config)
    return known_model(model_id)


def refresh_from_hub(api: Any) -> str | None:
    """Replace the offline flavor table with the Hub's current one (prices change); the local
    pseudo-flavor stays. Returns why it could not, or None. Uses the client's own call."""
    try:
        hardware = api.list_jobs_hardware()
    except Exception as exc:  # offline, auth, server: the offline table still prices the plan
        FLAVORS.clear()
        FLAVORS.update(_OFFLINE_TABLE)
        return f"could not read current prices from the Hub ({type(exc).__name__}): using tuneform's table of {_TABLE_DATE}"
    payload = [
        {
            "name": h.name,
            "prettyName": h.pretty_name,
            "cpu": h.cpu,
            "ram": h.ram,
            "accelerator": None
            if h.accelerator is None
            else {
                "type": h.accelerator.type,
                "model": h.accelerator.model,
                "quantity": h.accelerator.quantity,
                "vram": h.accelerator.vram,
                "manufacturer": h.accelerator.manufacturer,
            },
            "unitCostMicroUSD": h.unit_cost_micro_usd,
            "unitCostUSD": h.unit_cost_usd,
            "unitLabel": h.unit_label,
        }
        for h in hardware
    ]
    fresh = flavors_from_hardware(payload)
    if not fresh:
        return "the Hub listed no hardware: using tuneform's table"
    FLAVORS.clear()
    FLAVORS.update(fresh)
    FLAVORS[LOCAL.name] = LOCAL
    return None
