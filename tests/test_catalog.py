"""Catalog: the offline flavor table, the hardware endpoint parser, and model shapes.

Parameter counts are checked against the counts the models' publishers state (the Hub's
safetensors metadata), so a wrong shape in KNOWN_MODELS or a wrong counting formula fails.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import astuple
from pathlib import Path
from typing import Any

import pytest

from tuneform.estimate.catalog import (
    FLAVORS,
    KNOWN_MODELS,
    ModelShape,
    flavors_from_hardware,
    get_flavor,
    known_model,
    local_flavor,
    model_shape,
    shape_from_config,
)

# ---- flavors -------------------------------------------------------------------------------

# reference/hf-jobs.md, "Hardware": name -> (GPU model, GPUs, GB per GPU, $/hour)
FLAVOR_TABLE: dict[str, tuple[str | None, int, float, float]] = {
    "cpu-basic": (None, 0, 0, 0.01),
    "cpu-upgrade": (None, 0, 0, 0.03),
    "t4-small": ("T4", 1, 16, 0.40),
    "t4-medium": ("T4", 1, 16, 0.60),
    "l4x1": ("L4", 1, 24, 0.80),
    "l4x4": ("L4", 4, 24, 3.80),
    "l40sx1": ("L40S", 1, 48, 1.80),
    "l40sx4": ("L40S", 4, 48, 8.30),
    "l40sx8": ("L40S", 8, 48, 23.50),
    "a10g-small": ("A10G", 1, 24, 1.00),
    "a10g-large": ("A10G", 1, 24, 1.50),
    "a10g-largex2": ("A10G", 2, 24, 3.00),
    "a10g-largex4": ("A10G", 4, 24, 5.00),
    "a100-large": ("A100", 1, 80, 2.50),
    "a100x4": ("A100", 4, 80, 10.00),
    "a100x8": ("A100", 8, 80, 20.00),
    "h200": ("H200", 1, 141, 5.00),
    "h200x2": ("H200", 2, 141, 10.00),
    "h200x4": ("H200", 4, 141, 20.00),
    "h200x8": ("H200", 8, 141, 40.00),
    "rtx-pro-6000": ("RTX PRO 6000", 1, 96, 2.75),
    "rtx-pro-6000x2": ("RTX PRO 6000", 2, 96, 5.50),
    "rtx-pro-6000x4": ("RTX PRO 6000", 4, 96, 11.00),
    "rtx-pro-6000x8": ("RTX PRO 6000", 8, 96, 22.00),
}


def test_offline_table_matches_the_reference() -> None:
    assert set(FLAVORS) == set(FLAVOR_TABLE) | {"local"}
    for name, (model, gpus, memory, price) in FLAVOR_TABLE.items():
        flavor = FLAVORS[name]
        assert (flavor.gpu_model, flavor.gpus, flavor.gpu_memory_gb) == (model, gpus, memory), name
        assert flavor.usd_per_hour == pytest.approx(price), name
        assert flavor.is_cpu == (gpus == 0), name


def test_bf16_only_where_the_hardware_has_it() -> None:
    no_bf16 = {name for name, flavor in FLAVORS.items() if not flavor.bf16}
    assert no_bf16 == {"cpu-basic", "cpu-upgrade", "t4-small", "t4-medium", "local"}


def test_memory_per_gpu_not_per_flavor() -> None:
    # DDP replicates the model: a 4x24 GB flavor is a 24 GB flavor for fitting purposes.
    assert FLAVORS["l4x4"].memory_gb == 24
    assert FLAVORS["l4x4"].total_gpu_memory_gb == 96
    assert FLAVORS["cpu-upgrade"].memory_gb == 32  # a CPU flavor's memory is its RAM


def test_local_is_a_free_cpu_flavor() -> None:
    local = local_flavor(cpus=8, ram_gb=32)
    assert (local.name, local.gpus, local.gpu_model, local.usd_per_hour) == ("local", 0, None, 0.0)
    assert local.is_cpu and local.memory_gb == 32 and local.cpus == 8
    machine = FLAVORS["local"]  # measured from this machine at import
    assert machine.is_cpu and machine.usd_per_hour == 0 and (machine.ram_gb or 0) > 0


def test_get_flavor() -> None:
    assert get_flavor("a10g-small") is FLAVORS["a10g-small"]
    assert get_flavor("h100") is None  # no such flavor in the Jobs API


def _hardware_payload() -> list[dict[str, Any]]:
    """Shaped like GET /api/jobs/hardware (strings where the API sends strings)."""
    return [
        {
            "name": "cpu-basic",
            "prettyName": "CPU Basic",
            "cpu": "2 vCPU",
            "ram": "16 GB",
            "accelerator": None,
            "unitCostMicroUSD": 167,
            "unitCostUSD": 0.000167,
            "unitLabel": "minute",
        },
        {
            "name": "t4-small",
            "prettyName": "Nvidia T4 - small",
            "cpu": "4 vCPU",
            "ram": "15 GB",
            "accelerator": {"type": "gpu", "model": "T4", "quantity": "1", "vram": "16 GB", "manufacturer": "Nvidia"},
            "unitCostMicroUSD": 10000,
            "unitCostUSD": 0.01,
            "unitLabel": "minute",
        },
        {
            "name": "a10g-largex2",
            "prettyName": "2x Nvidia A10G - large",
            "cpu": "24 vCPU",
            "ram": "92 GB",
            "accelerator": {"type": "gpu", "model": "A10G", "quantity": "2", "vram": "48 GB", "manufacturer": "Nvidia"},
            "unitCostUSD": 0.06,  # no micro-USD field: fall back to the rounded one
            "unitLabel": "minute",
        },
        {
            "name": "b200x8",
            "prettyName": "8x Nvidia B200",
            "cpu": "224 vCPU",
            "ram": "2 TB",
            "accelerator": {
                "type": "gpu",
                "model": "B200",
                "quantity": "8",
                "vram": "1536 GB",
                "manufacturer": "Nvidia",
            },
            "unitCostMicroUSD": 1_000_000,
            "unitCostUSD": 1.0,
            "unitLabel": "minute",
        },
        {
            "name": "inf2",
            "prettyName": "AWS Inferentia2",
            "cpu": "4 vCPU",
            "ram": "16 GB",
            "accelerator": {
                "type": "neuron",
                "model": "Inferentia2",
                "quantity": "1",
                "vram": "32 GB",
                "manufacturer": "AWS",
            },
            "unitCostUSD": 0.0125,
            "unitLabel": "minute",
        },
    ]


def test_hardware_payload_parses() -> None:
    flavors = flavors_from_hardware(_hardware_payload())
    assert set(flavors) == {"cpu-basic", "t4-small", "a10g-largex2", "b200x8"}  # Neuron skipped

    cpu = flavors["cpu-basic"]
    assert cpu.is_cpu and cpu.cpus == 2 and cpu.ram_gb == 16
    assert cpu.usd_per_hour == pytest.approx(167e-6 * 60)  # $0.01002/h: per-minute price x 60

    t4 = flavors["t4-small"]
    assert (t4.gpu_model, t4.gpus, t4.gpu_memory_gb, t4.bf16) == ("T4", 1, 16, False)
    assert t4.usd_per_hour == pytest.approx(0.60)

    a10g = flavors["a10g-largex2"]
    assert (a10g.gpus, a10g.gpu_memory_gb, a10g.bf16) == (2, 24, True)
    assert a10g.usd_per_hour == pytest.approx(3.60)
    assert a10g.pretty_name == "2x Nvidia A10G - large"

    unknown = flavors["b200x8"]  # a GPU the offline table has never heard of
    assert (unknown.gpu_model, unknown.gpus, unknown.gpu_memory_gb, unknown.bf16) == ("B200", 8, 192, True)
    assert unknown.ram_gb == 2048 and unknown.cpus == 224
    assert unknown.usd_per_hour == pytest.approx(60.0)


def test_hardware_payload_hourly_label_and_missing_price() -> None:
    hourly = [
        {
            "name": "x",
            "prettyName": "X",
            "cpu": "1 vCPU",
            "ram": "1 GB",
            "accelerator": None,
            "unitCostUSD": 0.5,
            "unitLabel": "hour",
        }
    ]
    assert flavors_from_hardware(hourly)["x"].usd_per_hour == pytest.approx(0.5)
    with pytest.raises(ValueError, match="no unitCostUSD"):
        flavors_from_hardware([{"name": "y", "cpu": "1 vCPU", "ram": "1 GB", "accelerator": None}])


# ---- model shapes --------------------------------------------------------------------------

# Publishers' parameter counts (safetensors metadata on the Hub; Qwen3 model cards; tied
# embeddings counted once).
PUBLISHED_PARAMS = {
    "meta-llama/Llama-3.2-1B-Instruct": 1_235_814_400,
    "meta-llama/Llama-3.2-3B-Instruct": 3_212_749_824,
    "meta-llama/Llama-3.1-8B-Instruct": 8_030_261_248,
    "Qwen/Qwen3-4B": 4_022_468_096,
    "Qwen/Qwen3-8B": 8_190_735_360,
    "Qwen/Qwen2.5-0.5B-Instruct": 494_032_768,
    "Qwen/Qwen2.5-1.5B-Instruct": 1_543_714_304,
    "Qwen/Qwen2.5-7B-Instruct": 7_615_616_512,
    "HuggingFaceTB/SmolLM2-135M-Instruct": 134_515_008,
    "HuggingFaceTB/SmolLM2-360M-Instruct": 361_821_120,
    "HuggingFaceTB/SmolLM2-1.7B-Instruct": 1_711_376_384,
    "google/gemma-3-1b-it": 999_885_952,
    "mistralai/Mistral-7B-Instruct-v0.3": 7_248_023_552,
}

REQUIRED_MODELS = [
    "LiquidAI/LFM2.5-1.2B-Instruct",
    "meta-llama/Llama-3.2-1B-Instruct",
    "meta-llama/Llama-3.2-3B-Instruct",
    "meta-llama/Llama-3.1-8B-Instruct",
    "unsloth/Llama-3.2-1B-Instruct",
    "unsloth/Llama-3.2-3B-Instruct",
    "unsloth/Llama-3.1-8B-Instruct",
    "Qwen/Qwen3-0.6B",
    "Qwen/Qwen3-1.7B",
    "Qwen/Qwen3-4B",
    "Qwen/Qwen3-8B",
    "Qwen/Qwen2.5-0.5B-Instruct",
    "Qwen/Qwen2.5-1.5B-Instruct",
    "Qwen/Qwen2.5-7B-Instruct",
    "HuggingFaceTB/SmolLM2-135M-Instruct",
    "HuggingFaceTB/SmolLM2-360M-Instruct",
    "HuggingFaceTB/SmolLM2-1.7B-Instruct",
    "google/gemma-3-1b-it",
    "google/gemma-3-4b-it",
    "mistralai/Mistral-7B-Instruct-v0.3",
]


@pytest.mark.parametrize("model_id", REQUIRED_MODELS)
def test_required_models_are_known(model_id: str) -> None:
    shape = known_model(model_id)
    assert shape is not None
    assert shape.q_dim == shape.num_heads * shape.head_dim
    assert shape.num_heads % shape.num_kv_heads == 0


@pytest.mark.parametrize(("model_id", "published"), sorted(PUBLISHED_PARAMS.items()))
def test_parameter_counts_match_the_publishers(model_id: str, published: int) -> None:
    shape = known_model(model_id)
    assert shape is not None
    assert shape.params == published


def test_approximate_models_are_near_their_stated_size() -> None:
    # LFM2.5-1.2B: Liquid states 1.17B; Qwen3 cards state 0.6B / 1.7B; Gemma 3 4B is 4.3B with
    # its ~0.42B vision tower, which KNOWN_MODELS leaves out (text part only).
    assert known_model("LiquidAI/LFM2.5-1.2B-Instruct").params == pytest.approx(1.17e9, rel=0.01)  # type: ignore[union-attr]
    assert known_model("Qwen/Qwen3-0.6B").params == pytest.approx(0.596e9, rel=0.01)  # type: ignore[union-attr]
    assert known_model("Qwen/Qwen3-1.7B").params == pytest.approx(1.72e9, rel=0.01)  # type: ignore[union-attr]
    assert known_model("google/gemma-3-4b-it").params == pytest.approx(4.30e9 - 0.42e9, rel=0.01)  # type: ignore[union-attr]


def test_lookup_is_case_insensitive_and_mirrors_share_shapes() -> None:
    assert known_model("QWEN/qwen3-8b") is known_model("Qwen/Qwen3-8B")
    assert known_model(" unsloth/llama-3.2-1b-instruct ") == known_model("meta-llama/Llama-3.2-1B-Instruct")
    assert known_model("acme/never-heard-of-it") is None
    assert all(key == key.lower() for key in KNOWN_MODELS)


def test_lora_parameters_by_hand() -> None:
    shape = known_model("meta-llama/Llama-3.2-1B-Instruct")
    assert shape is not None
    # r=16 on all seven projections of 16 layers (hidden 2048, kv 8x64=512, intermediate 8192):
    #   q 16*(2048+2048)=65,536  k 16*(2048+512)=40,960  v 40,960  o 65,536
    #   gate 16*(2048+8192)=163,840  up 163,840  down 163,840  -> 704,512 per layer
    #   x 16 layers = 11,272,192 (the count PEFT/Unsloth print for this model)
    assert shape.lora_params(16) == 11_272_192
    # r=8 on q and v only: 8*(2048+2048) + 8*(2048+512) = 53,248 per layer, x16 = 851,968
    assert shape.lora_params(8, ["q_proj", "v_proj"]) == 851_968
    assert shape.lora_params(8, ["q", "v", "v_proj"]) == 851_968  # short names, duplicates
    eight_b = known_model("meta-llama/Llama-3.1-8B-Instruct")
    assert eight_b is not None and eight_b.lora_params(16, "all-linear") == 41_943_040
    with pytest.raises(ValueError, match="unknown LoRA target module 'lm_head'"):
        shape.lora_params(16, ["q_proj", "lm_head"])
    with pytest.raises(ValueError, match="positive"):
        shape.lora_params(0)


def test_derived_sizes() -> None:
    tied = known_model("meta-llama/Llama-3.2-1B-Instruct")
    untied = known_model("meta-llama/Llama-3.1-8B-Instruct")
    assert tied is not None and untied is not None
    embedding_1b = 128256 * 2048
    assert tied.matmul_params == tied.params  # the tied embedding is the LM head
    assert tied.layer_params == tied.params - embedding_1b
    embedding_8b = 128256 * 4096
    assert untied.matmul_params == untied.params - embedding_8b  # input lookup costs no FLOPs
    assert untied.layer_params == untied.params - 2 * embedding_8b
    # The 7 projections of 16 layers: (4096*2048... ) by hand for the 1B:
    #   q 2048*2048 + k 2048*512 + v 2048*512 + o 2048*2048 + 3 * 2048*8192 = 60,817,408 per layer
    assert tied.linear_params == 60_817_408 * 16


# Llama-3.2-1B-Instruct's config.json as published.
LLAMA_CONFIG: dict[str, Any] = {
    "architectures": ["LlamaForCausalLM"],
    "attention_bias": False,
    "bos_token_id": 128000,
    "eos_token_id": [128001, 128008, 128009],
    "head_dim": 64,
    "hidden_act": "silu",
    "hidden_size": 2048,
    "intermediate_size": 8192,
    "max_position_embeddings": 131072,
    "mlp_bias": False,
    "model_type": "llama",
    "num_attention_heads": 32,
    "num_hidden_layers": 16,
    "num_key_value_heads": 8,
    "rms_norm_eps": 1e-05,
    "rope_scaling": {"factor": 32.0, "rope_type": "llama3"},
    "rope_theta": 500000.0,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
    "vocab_size": 128256,
}

# Qwen3-0.6B's config.json as published (q width 16 x 128 = 2048 differs from hidden 1024).
QWEN3_CONFIG: dict[str, Any] = {
    "architectures": ["Qwen3ForCausalLM"],
    "attention_bias": False,
    "head_dim": 128,
    "hidden_act": "silu",
    "hidden_size": 1024,
    "intermediate_size": 3072,
    "max_position_embeddings": 40960,
    "max_window_layers": 28,
    "model_type": "qwen3",
    "num_attention_heads": 16,
    "num_hidden_layers": 28,
    "num_key_value_heads": 8,
    "rope_theta": 1000000,
    "sliding_window": None,
    "tie_word_embeddings": True,
    "use_sliding_window": False,
    "vocab_size": 151936,
}


def test_llama_config() -> None:
    shape = shape_from_config(LLAMA_CONFIG)
    assert shape == known_model("meta-llama/Llama-3.2-1B-Instruct")
    assert shape.params == 1_235_814_400
    assert shape.full_attention_layers is None and shape.sliding_window is None


def test_qwen3_config() -> None:
    shape = shape_from_config(QWEN3_CONFIG)
    assert (shape.architecture, shape.hidden_size, shape.q_dim, shape.kv_dim) == ("qwen3", 1024, 2048, 1024)
    # embed 151,936*1,024 = 155,582,464; per layer: q 1024*2048 + k,v 2*1024*1024 + o 2048*1024
    # = 6,291,456, MLP 3*1024*3072 = 9,437,184, norms 2*1024 + q/k norms 2*128 = 2,304
    # -> 15,730,944 x 28 = 440,466,432; + final norm 1,024 = 596,049,920 (tied: counted once)
    assert shape.params == 596_049_920
    assert shape == known_model("Qwen/Qwen3-0.6B")


def test_qwen2_config_bias_and_disabled_window() -> None:
    config = {
        "model_type": "qwen2",
        "hidden_size": 896,
        "intermediate_size": 4864,
        "num_attention_heads": 14,
        "num_hidden_layers": 24,
        "num_key_value_heads": 2,
        "sliding_window": 32768,
        "use_sliding_window": False,
        "tie_word_embeddings": True,
        "vocab_size": 151936,
    }
    shape = shape_from_config(config)
    assert shape.params == 494_032_768  # q/k/v biases counted, no attention_bias key needed
    assert shape.sliding_window is None and shape.full_attention_layers is None


def test_mistral_v01_style_window_applies_to_every_layer() -> None:
    config = {**LLAMA_CONFIG, "model_type": "mistral", "sliding_window": 4096, "tie_word_embeddings": False}
    shape = shape_from_config(config)
    assert (shape.full_attention_layers, shape.sliding_window) == (0, 4096)
    assert not shape.tied_embeddings


def test_gemma3_multimodal_config_uses_text_config_and_defaults() -> None:
    # gemma-3-4b-it's config.json: the text_config omits keys equal to Gemma3TextConfig's
    # defaults (heads 8, kv heads 4, head_dim 256, vocab 262208).
    config = {
        "architectures": ["Gemma3ForConditionalGeneration"],
        "model_type": "gemma3",
        "text_config": {
            "hidden_size": 2560,
            "intermediate_size": 10240,
            "model_type": "gemma3_text",
            "num_hidden_layers": 34,
            "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
            "sliding_window": 1024,
        },
        "vision_config": {"hidden_size": 1152, "model_type": "siglip_vision_model"},
    }
    shape = shape_from_config(config)
    assert shape == known_model("google/gemma-3-4b-it")
    assert (shape.full_attention_layers, shape.sliding_window) == (5, 1024)  # 34 // 6 global


def test_lfm2_config() -> None:
    kinds = ["conv", "conv", "full_attention"] * 3 + ["conv", "full_attention"] * 3 + ["conv"]
    config = {
        "architectures": ["Lfm2ForCausalLM"],
        "model_type": "lfm2",
        "hidden_size": 2048,
        "block_ff_dim": 12288,
        "intermediate_size": 12288,
        "block_auto_adjust_ff_dim": True,
        "block_ffn_dim_multiplier": 1.0,
        "block_multiple_of": 256,
        "conv_L_cache": 3,
        "layer_types": kinds,
        "num_attention_heads": 32,
        "num_heads": 32,
        "num_hidden_layers": 16,
        "num_key_value_heads": 8,
        "tie_embedding": True,
        "vocab_size": 65536,
    }
    assert kinds.count("full_attention") == 6 and len(kinds) == 16
    shape = shape_from_config(config)
    assert shape.intermediate_size == 8192  # 12288 * 2/3, rounded up to a multiple of 256
    assert shape.full_attention_layers == 6 and shape.sliding_window is None
    assert shape.params == 1_170_340_608
    assert shape == known_model("LiquidAI/LFM2.5-1.2B-Instruct") == known_model("LiquidAI/LFM2-1.2B")
    # LFM2's first configs name the attention layers by index instead of layer_types.
    by_index = {key: value for key, value in config.items() if key != "layer_types"}
    by_index["full_attn_idxs"] = [i for i, kind in enumerate(kinds) if kind == "full_attention"]
    assert shape_from_config(by_index) == shape


def test_config_count_wins_and_missing_keys_are_named() -> None:
    assert shape_from_config({**LLAMA_CONFIG, "num_parameters": 123}).params == 123
    broken = {key: value for key, value in LLAMA_CONFIG.items() if key != "vocab_size"}
    with pytest.raises(ValueError, match="'vocab_size'"):
        shape_from_config(broken)


def test_model_shape_local_directory_and_hub_ids(tmp_path: Path) -> None:
    model_dir = tmp_path / "models" / "tiny"
    model_dir.mkdir(parents=True)
    (model_dir / "config.json").write_text(json.dumps(QWEN3_CONFIG))
    relative = model_shape("./models/tiny", tmp_path)
    assert relative is not None and relative.params == 596_049_920
    assert model_shape(str(model_dir), Path("/nonexistent")) == relative  # absolute path
    assert model_shape("Qwen/Qwen3-0.6B", tmp_path) == relative  # Hub id: KNOWN_MODELS
    assert model_shape("acme/unknown", tmp_path) is None
    with pytest.raises(ValueError, match="no config.json"):
        model_shape("./models/missing", tmp_path)
    (model_dir / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="invalid JSON"):
        model_shape("./models/tiny", tmp_path)


def test_modelshape_is_frozen() -> None:
    shape = known_model("Qwen/Qwen3-8B")
    assert isinstance(shape, ModelShape)
    with pytest.raises(AttributeError):
        shape.params = 1  # type: ignore[misc]


def test_imports_stay_light() -> None:
    # plan must stay fast: the catalog and the estimator import no ML library.
    code = (
        "import sys, time; t = time.perf_counter(); import tuneform.estimate.catalog, tuneform.estimate.estimator; "
        "heavy = [m for m in ('torch', 'transformers', 'datasets', 'numpy', 'huggingface_hub') if m in sys.modules]; "
        "print(heavy, time.perf_counter() - t)"
    )
    src = Path(__file__).resolve().parent.parent / "src"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env={"PYTHONPATH": str(src)})
    heavy, seconds = result.stdout.rsplit(" ", 1)
    assert heavy == "[]"
    assert float(seconds) < 0.5  # a few ms in practice; generous so a busy CI box passes


# Every field of each known model's shape, as the hand-built table had them before models.json
# replaced it (commit "Known models as config.json subsets"; that commit's test compared all 27
# ids field by field): (architecture, params, hidden, layers, heads, kv heads, head_dim,
# intermediate, vocab, tied, full-attention layers, sliding window).
SHAPES: dict[str, tuple[Any, ...]] = {
    "LiquidAI/LFM2-1.2B": ("lfm2", 1_170_340_608, 2048, 16, 32, 8, 64, 8192, 65536, True, 6, None),
    "LiquidAI/LFM2.5-1.2B-Instruct": ("lfm2", 1_170_340_608, 2048, 16, 32, 8, 64, 8192, 65536, True, 6, None),
    "LiquidAI/LFM2-350M": ("lfm2", 354_483_968, 1024, 16, 16, 8, 64, 4608, 65536, True, 6, None),  # Liquid states 354M
    "meta-llama/Llama-3.2-1B": ("llama", 1_235_814_400, 2048, 16, 32, 8, 64, 8192, 128256, True, None, None),
    "meta-llama/Llama-3.2-3B": ("llama", 3_212_749_824, 3072, 28, 24, 8, 128, 8192, 128256, True, None, None),
    "meta-llama/Llama-3.1-8B": ("llama", 8_030_261_248, 4096, 32, 32, 8, 128, 14336, 128256, False, None, None),
    "Qwen/Qwen3-0.6B": ("qwen3", 596_049_920, 1024, 28, 16, 8, 128, 3072, 151936, True, None, None),
    "Qwen/Qwen3-1.7B": ("qwen3", 1_720_574_976, 2048, 28, 16, 8, 128, 6144, 151936, True, None, None),
    "Qwen/Qwen3-4B": ("qwen3", 4_022_468_096, 2560, 36, 32, 8, 128, 9728, 151936, True, None, None),
    "Qwen/Qwen3-8B": ("qwen3", 8_190_735_360, 4096, 36, 32, 8, 128, 12288, 151936, False, None, None),
    "Qwen/Qwen2.5-0.5B-Instruct": ("qwen2", 494_032_768, 896, 24, 14, 2, 64, 4864, 151936, True, None, None),
    "Qwen/Qwen2.5-1.5B-Instruct": ("qwen2", 1_543_714_304, 1536, 28, 12, 2, 128, 8960, 151936, True, None, None),
    "Qwen/Qwen2.5-7B-Instruct": ("qwen2", 7_615_616_512, 3584, 28, 28, 4, 128, 18944, 152064, False, None, None),
    "HuggingFaceTB/SmolLM2-135M-Instruct": ("llama", 134_515_008, 576, 30, 9, 3, 64, 1536, 49152, True, None, None),
    "HuggingFaceTB/SmolLM2-360M-Instruct": ("llama", 361_821_120, 960, 32, 15, 5, 64, 2560, 49152, True, None, None),
    "HuggingFaceTB/SmolLM2-1.7B-Instruct": ("llama", 1_711_376_384, 2048, 24, 32, 32, 64, 8192, 49152, True, None, None),
    "google/gemma-3-1b-it": ("gemma3_text", 999_885_952, 1152, 26, 4, 1, 256, 6912, 262144, True, 4, 512),
    "google/gemma-3-4b-it": ("gemma3_text", 3_880_263_168, 2560, 34, 8, 4, 256, 10240, 262208, True, 5, 1024),
    "mistralai/Mistral-7B-Instruct-v0.3": ("mistral", 7_248_023_552, 4096, 32, 32, 8, 128, 14336, 32768, False, None, None),
}
ALIASES = {
    "LiquidAI/LFM2.5-1.2B-Base": "LiquidAI/LFM2.5-1.2B-Instruct",
    "meta-llama/Llama-3.2-1B-Instruct": "meta-llama/Llama-3.2-1B",
    "unsloth/Llama-3.2-1B": "meta-llama/Llama-3.2-1B",
    "unsloth/Llama-3.2-1B-Instruct": "meta-llama/Llama-3.2-1B",
    "meta-llama/Llama-3.2-3B-Instruct": "meta-llama/Llama-3.2-3B",
    "unsloth/Llama-3.2-3B": "meta-llama/Llama-3.2-3B",
    "unsloth/Llama-3.2-3B-Instruct": "meta-llama/Llama-3.2-3B",
    "meta-llama/Llama-3.1-8B-Instruct": "meta-llama/Llama-3.1-8B",
    "unsloth/Llama-3.1-8B": "meta-llama/Llama-3.1-8B",
    "unsloth/Llama-3.1-8B-Instruct": "meta-llama/Llama-3.1-8B",
}


def test_models_json_builds_the_shapes_of_the_hand_built_table() -> None:
    """models.json's configs, through shape_from_config, give every known model the shape the
    hand-built table gave it, field by field; aliases share their target's shape."""
    assert {model_id: astuple(known_model(model_id)) for model_id in SHAPES} == SHAPES  # type: ignore[arg-type]
    assert {alias: known_model(alias) for alias in ALIASES} == {alias: known_model(target) for alias, target in ALIASES.items()}
    assert len(KNOWN_MODELS) == len(SHAPES) + len(ALIASES)


def test_the_catalog_is_data_shipped_with_the_package() -> None:
    """The flavor and model tables are package data (pyproject.toml), read-only once loaded."""
    from tuneform.estimate import catalog

    pyproject = (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text()
    for name in ("flavors.json", "models.json"):
        assert (Path(catalog.__file__).parent / name).is_file()
        assert name in pyproject.split("[tool.setuptools.package-data]", 1)[1].split("\n[", 1)[0]
    with pytest.raises(TypeError):
        FLAVORS["free-gpu"] = FLAVORS["h200"]  # type: ignore[index]
    with pytest.raises(TypeError):
        KNOWN_MODELS["acme/x"] = KNOWN_MODELS["qwen/qwen3-8b"]  # type: ignore[index]


def test_a_refreshed_table_is_a_new_table_and_the_offline_one_stays(fake_hub: Any) -> None:
    """hub_flavor_table returns the Hub's prices as a new table (local kept) and changes no
    module state; an unreachable Hub gives the offline table and says why."""
    from fakehub import USER_TOKEN
    from tuneform.estimate.catalog import LOCAL, hub_flavor_table

    api = fake_hub.api(USER_TOKEN)
    offline = dict(FLAVORS)
    fresh, note = hub_flavor_table(api)
    assert note is None and fresh is not FLAVORS and fresh["local"] is LOCAL
    hardware = {h.name: h for h in api.list_jobs_hardware()}
    assert set(fresh) == set(hardware) | {"local"}
    assert dict(FLAVORS) == offline  # nothing changed in place
    fake_hub.faults.fail("GET", r"/api/jobs/hardware", 500, times=10)
    table, note = hub_flavor_table(api)
    assert table is FLAVORS and note is not None and "could not read current prices from the Hub" in note
