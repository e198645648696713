"""What tuneform can train on and what it trains: hardware flavors and base-model shapes.

``plan`` must be fast and offline (no torch, no network, no token), yet it has to price a run
and say whether it fits in GPU memory. Both need facts that live elsewhere: prices and GPU
sizes of the Hugging Face Jobs flavors, and the shape of the base model. Both are data shipped
with the package: ``flavors.json`` (the offline flavor table) and ``models.json`` (each known
model's ``config.json`` subset, turned into a shape by ``shape_from_config``, the parser a local
model's config goes through too). Adding a flavor or a model is an entry there, not code.

Prices change: ``hub_flavor_table`` asks the Hub (``GET /api/jobs/hardware``) and returns a new
table, which the caller passes into planning; no table is ever changed in place, so the offline
``FLAVORS`` is what every caller that was not handed another one sees. This module imports
nothing beyond the standard library (huggingface_hub only reaches it as the caller's client).

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
from types import MappingProxyType
from typing import Any

_HERE = Path(__file__).resolve().parent

__all__ = [
    "FLAVORS",
    "KNOWN_MODELS",
    "KNOWN_MODEL_IDS",
    "LOCAL",
    "LORA_MODULES",
    "PACKED_ARCHITECTURES",
    "Flavor",
    "FlavorTable",
    "ModelShape",
    "flavor_table",
    "flavors_from_hardware",
    "get_flavor",
    "hub_flavor_table",
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


FlavorTable = Mapping[str, Flavor]
"""Flavors by name: the offline FLAVORS, or a table refreshed from the Hub (hub_flavor_table)."""

_FLAVOR_DATA: dict[str, Any] = json.loads((_HERE / "flavors.json").read_text(encoding="utf-8"))

# Per-GPU memory of the GPU models HF Jobs offers (nominal GB, from the flavor table of
# reference/hf-jobs.md). Used for flavors parsed from the hardware endpoint too, because the
# endpoint's ``vram`` field is a display string whose meaning for multi-GPU flavors (per GPU
# or total) the reference does not pin down.
GPU_MEMORY_GB: Mapping[str, float] = MappingProxyType(dict(_FLAVOR_DATA["gpu_memory_gb"]))

# GPUs older than Ampere have no bf16 tensor cores: training there runs in fp16
# (reference/unsloth-on-gpu.md: "T4 (compute capability 7.5) has no bf16").
_NO_BF16_GPUS = frozenset(_FLAVOR_DATA["no_bf16_gpus"])


def _normalize_gpu_model(model: str) -> str:
    """Canonical spelling of a GPU model name ("Nvidia RTX Pro 6000" -> "RTX PRO 6000")."""
    text = re.sub(r"\s+", " ", model.strip())
    text = re.sub(r"^(nvidia|aws)\s+", "", text, flags=re.IGNORECASE)
    upper = text.upper()
    for known in GPU_MEMORY_GB:
        if upper == known or upper.startswith(known + " "):
            return known
    return text


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
    """The flavor table of flavors.json (reference/hf-jobs.md; prices of huggingface_hub 2.4.0's
    era). vCPU and RAM are None where the Hub's documentation does not list them."""
    flavors: dict[str, Flavor] = {}
    for row in _FLAVOR_DATA["flavors"]:
        model = row["gpu_model"]
        flavors[row["name"]] = Flavor(
            name=row["name"],
            pretty_name=row["pretty_name"],
            gpu_model=model,
            gpus=row["gpus"],
            gpu_memory_gb=GPU_MEMORY_GB[model] if model else 0.0,
            usd_per_hour=row["usd_per_hour"],
            bf16=model is not None and model not in _NO_BF16_GPUS,
            cpus=row["cpus"],
            ram_gb=row["ram_gb"],
        )
    return flavors


LOCAL: Flavor = local_flavor()
"""The local backend's pseudo-flavor, measured from this machine at import."""

FLAVORS: FlavorTable = MappingProxyType({**_offline_flavors(), LOCAL.name: LOCAL})
"""Offline catalog, read-only: every HF Jobs flavor of flavors.json plus ``local``."""
_TABLE_DATE: str = _FLAVOR_DATA["as_of"]


def get_flavor(name: str, catalog: FlavorTable = FLAVORS) -> Flavor | None:
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

PACKED_ARCHITECTURES: frozenset[str] = frozenset({"llama", "mistral", "qwen2", "qwen3", "gemma3_text", "gemma3", "lfm2"})
"""Model types whose packed rows the job trains as asked (train/packing.py's EXACT, which a test
keeps equal to this): any other architecture trains on the padded path, and is priced so."""

LORA_MODULES: tuple[str, ...] = ("q", "k", "v", "o", "gate", "up", "down")
"""The seven projections of a decoder layer; PEFT's ``all-linear`` targets all of them."""
LORA_MODULE_NAMES: tuple[str, ...] = tuple(f"{m}_proj" for m in LORA_MODULES)

# Module names as written in run files (PEFT's), to the projection they adapt. LFM2's names map
# onto the Llama-style projections they play the role of (see the LFM2 note in shape_from_config).
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
    def conv_layers(self) -> int:
        """Layers with neither full nor sliding-window attention: LFM2's short convolutions."""
        if self.full_attention_layers is None or self.sliding_window is not None:
            return 0
        return self.num_layers - self.full_attention_layers

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

    LFM2 (hybrid: ``layer_types`` of "full_attention" and "conv" layers) is an APPROXIMATION:
    the estimator models every layer as Llama-style projections. A conv layer's in_proj
    (h -> 3h) + out_proj (h -> h) has more weights than q/k/v/o would (16.8M against 10.5M on
    LFM2-1.2B), so ``linear_params`` is ~6% low and LoRA counts ~2% off; the parameter count
    itself is exact (computed with the conv layers) and attention FLOPs use only the attention
    layers (the short convolutions cost next to nothing).
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
    attention_indices = merged.get("full_attn_idxs")
    if is_lfm2 and not layer_types and isinstance(attention_indices, list):
        # LFM2's first configs list the attention layers instead (transformers' Lfm2Config reads both).
        layer_types = ["full_attention" if i in attention_indices else "conv" for i in range(layers)]
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


_MODELS_TABLE: dict[str, Any] = json.loads((_HERE / "models.json").read_text(encoding="utf-8"))


def _known_models() -> dict[str, ModelShape]:
    """Shapes of models.json's configs, keyed by lower-case Hub id; an alias shares its target's."""
    table = _MODELS_TABLE
    models = {model_id.lower(): shape_from_config(config) for model_id, config in table["models"].items()}
    models.update({alias.lower(): models[target.lower()] for alias, target in table["aliases"].items()})
    return models


KNOWN_MODELS: Mapping[str, ModelShape] = MappingProxyType(_known_models())
"""Shapes of base models tuneform knows offline, keyed by lower-case Hub id."""


KNOWN_MODEL_IDS: tuple[str, ...] = tuple(sorted({*_MODELS_TABLE["models"], *_MODELS_TABLE["aliases"]}))
"""The catalog's Hub ids as the Hub spells them: what a misspelt id is matched against."""


def known_model(model_id: str) -> ModelShape | None:
    """Look a Hub id up in KNOWN_MODELS (Hub ids are case-insensitive)."""
    return KNOWN_MODELS.get(model_id.strip().lower())


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


def flavor_table(hardware: list[dict[str, Any]]) -> FlavorTable:
    """A new flavor table from the hardware endpoint's payload, the local pseudo-flavor kept;
    empty when the payload lists no flavor tuneform can train on. Changes nothing else."""
    fresh = flavors_from_hardware(hardware)
    return MappingProxyType({**fresh, LOCAL.name: LOCAL} if fresh else {})


def hub_flavor_table(api: Any) -> tuple[FlavorTable, str | None]:
    """The flavor table with the Hub's current prices, and why not when it could not be read
    (then the offline FLAVORS). The caller passes the table into planning (make_plan)."""
    try:
        hardware = api.list_jobs_hardware()
    except Exception as exc:  # offline, auth, server: the offline table still prices the plan
        return FLAVORS, f"could not read current prices from the Hub ({type(exc).__name__}): using tuneform's table of {_TABLE_DATE}"
    table = flavor_table([_hardware_json(h) for h in hardware])
    if not table:
        return FLAVORS, "the Hub listed no hardware: using tuneform's table"
    return table, None


def _hardware_json(h: Any) -> dict[str, Any]:
    """huggingface_hub's hardware object as the endpoint's JSON (what flavors_from_hardware reads)."""
    return {
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
