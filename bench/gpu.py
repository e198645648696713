#!/usr/bin/env python3
"""Benchmark: tuneform's training job on a GPU, against plain TRL and Unsloth's notebook recipe.

Everything is built here, offline, deterministically: a random-initialised model of a real
shape (Llama-3.2-1B by default; `--shape llama-8b` for the 8B QLoRA case; `--shape MODEL_ID` for any
model of tuneform's catalog, built from its published config keys), a BPE tokenizer with
a chat template, and a synthetic chat dataset whose conversations run 70 to 800 words
(log-uniform, so short ones dominate as in real chat data). Each configuration is a run file in
a scratch training repository, checked and bundled by tuneform's own code, and trained by
`tuneform job BUNDLE --registry DIR` in a subprocess: the command every backend runs.

Configurations (same data, same tokens, same LoRA r=16 on the seven projections):
- tuneform-default: only what a user must write; flavor h200, engine auto (unsloth on a GPU),
  batch and checkpointing sized by tuneform's estimator, packing on.
- tuneform-trl: the same with engine trl (transformers + PEFT, packed rows attended in one flash
  varlen call per layer by train/varlen_attention.py, LFM2's convolutions reset at document
  starts); tuneform-trl-sdpa-mask: the same with compute.attention per-document, transformers'
  SDPA over a dense document mask (the trl route before the varlen call, its baseline);
  tuneform-trl-batch8, tuneform-trl-sdpa-mask-batch8: the pair at batch 8 (where the dense mask
  of the estimator's batch does not fit).
- tuneform-batch16, tuneform-batch32: the same with the batch fixed (points on the utilisation
  curve); tuneform-batch16-segments: batch 16 with compute.attention per-document, packed
  documents attended one at a time (the baseline of train/packed_attention.py).
- trl-defaults: engine trl with TRL's SFTConfig defaults written out (batch 8, no gradient
  accumulation, gradient checkpointing on, no packing, fused AdamW, lr 2e-5).
- unsloth-notebook: engine unsloth with what Unsloth's Llama 3.2 conversational notebook passes
  (batch 2, gradient accumulation 4, checkpointing "unsloth", adamw_8bit, lr 2e-4, warmup 5,
  weight decay 0.001, linear schedule, seed 3407, no packing). The notebook loads the base in
  4 bit; here it is 16-bit like the other two, so the three differ in settings, not method.

Measured by the bench, not by trainer counters: tokens (the training conversations rendered
with the chat template and tokenised by the bench, truncated to max_seq_length), wall-clock
(each job's output lines are time-stamped as they arrive; the steady rate excludes the first
steps' compilation), GPU memory (NVML, sampled every 0.2 s, the whole job). tuneform's own
numbers (the manifest: loop seconds, token count, torch's peak allocation) sit beside them, and
the estimator's prediction (tuneform.estimate.estimator.estimate on the h200 flavor, with the measured
data's lengths) beside both. MFU = model FLOPs without recompute (estimate.flops_per_token with
the shape from catalog.shape_from_config) / 790 TFLOP/s (the bf16 matrix rate measured on the
lent H200).

    python bench/gpu.py                         # the 1B comparison on a GPU
    python bench/gpu.py --tiny --cpu            # a tiny shape on the CPU: a smoke test (seconds)
    python bench/gpu.py --configs tuneform-default --examples 2000
    python bench/gpu.py --shape Qwen/Qwen3-0.6B --configs tuneform-default,trl-defaults
    python bench/gpu.py --holdout               # the estimator's error on shapes it was not fitted on (no GPU)

Writes bench/results/gpu-<date>.json and .md (or --out DIR); docs/calibration.md reads them.
On a machine without internet, carry the wheels of scripts/fetch_gpu_wheels.sh.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "UNSLOTH_DISABLE_STATISTICS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "PYTHONUNBUFFERED": "1",
}
for _key, _value in OFFLINE_ENV.items():
    os.environ.setdefault(_key, _value)

try:  # tuneform installed, or run from a checkout
    import tuneform
except ImportError:
    sys.path.insert(0, str(ROOT / "src"))
    import tuneform

from tuneform.estimate import catalog  # noqa: E402
from tuneform.estimate.estimator import Workload, estimate, flops_per_token  # noqa: E402

H200_BF16_TFLOPS = 790.0  # measured matrix rate on the lent H200 (DESIGN: MFU)
LIBRARIES = (
    "torch",
    "triton",
    "transformers",
    "trl",
    "peft",
    "accelerate",
    "datasets",
    "tokenizers",
    "unsloth",
    "unsloth_zoo",
    "bitsandbytes",
    "pydantic",
    "tuneform",
)
SEED = 3407
# Environment variables that change what a job runs (compilation, the attention route): recorded.
RECORDED_ENVIRONMENT = ("UNSLOTH_COMPILE_DISABLE", "UNSLOTH_BLOCK_COMPILE", "UNSLOTH_RETURN_LOGITS", "TUNEFORM_PACKED_ATTENTION")

# ---------------------------------------------------------------------------------------------
# Shapes and configurations


@dataclass(frozen=True)
class Shape:
    name: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int | None  # None: the tokenizer's size (tiny)
    tied: bool
    tokenizer_vocab: int
    attention_layers: tuple[int, ...] | None = None  # LFM2: which layers attend; the rest are short convolutions
    # A catalog model's published config keys (estimate/models.json): the model is built from them
    # through transformers' AutoConfig, so any architecture tuneform sizes can be benchmarked.
    config: dict[str, Any] | None = field(default=None, compare=False)

    @property
    def family(self) -> str:
        if self.config is not None:
            return str(self.config["model_type"])
        return "lfm2" if self.attention_layers is not None else "llama"


def catalog_shape(model_id: str, tokenizer_vocab: int = 16000) -> Shape | None:
    """The shape of a model in tuneform's catalog (an id or an alias, any case), None when the
    catalog lacks it. Gemma 3 4B is its text decoder, as the catalog prices it."""
    from importlib import resources

    table = json.loads(resources.files("tuneform.estimate").joinpath("models.json").read_text())
    ids = {k.lower(): k for k in table["models"]}
    ids.update({alias.lower(): target for alias, target in table["aliases"].items()})
    target = ids.get(model_id.lower())
    if target is None:
        return None
    config = table["models"][target]
    config = dict(config.get("text_config", config))
    g = config.get  # the Shape's own fields are informational here: `config` builds the model
    return Shape(
        name=target.split("/")[-1].lower(),
        hidden=g("hidden_size", 0),
        layers=g("num_hidden_layers", 0),
        heads=g("num_attention_heads", 0),
        kv_heads=g("num_key_value_heads", 0),
        intermediate=g("intermediate_size", g("block_ff_dim", 0)),
        vocab=g("vocab_size"),
        tied=bool(g("tie_word_embeddings", g("tie_embedding", False))),
        tokenizer_vocab=tokenizer_vocab,
        config=config,
    )


def shape_named(name: str) -> Shape:
    """A bench shape (SHAPES) or any catalog model id (`Qwen/Qwen3-0.6B`); ValueError otherwise."""
    shape = SHAPES.get(name) or catalog_shape(name)
    if shape is None:
        raise ValueError(f"unknown shape {name!r}: use one of {', '.join(sorted(SHAPES))} or a model id of estimate/models.json")
    return shape


SHAPES = {
    "llama-1b": Shape("llama-1b", 2048, 16, 32, 8, 8192, 128256, True, 16000),  # Llama-3.2-1B
    "llama-8b": Shape("llama-8b", 4096, 32, 32, 8, 14336, 128256, False, 16000),  # Llama-3.1-8B
    "tiny": Shape("tiny", 64, 2, 4, 2, 256, None, True, 1000),
    # LiquidAI LFM2(.5)-1.2B: block_ff_dim 12288, auto-adjusted by its modeling code to 8192.
    "lfm2-1.2b": Shape("lfm2-1.2b", 2048, 16, 32, 8, 12288, 65536, True, 16000, (2, 5, 8, 10, 12, 14)),
    "tiny-lfm2": Shape("tiny-lfm2", 64, 3, 4, 2, 256, None, True, 1000, (1,)),
}

COMMON_TRAINING = {"num_train_epochs": 1, "logging_steps": 1, "seed": SEED, "train_on": "responses"}
CONFIGS: dict[str, dict[str, Any]] = {
    "tuneform-default": {
        "about": "tuneform's defaults: engine auto, batch and checkpointing from the estimator, packing",
        "training": {},
        "compute": {},
    },
    "tuneform-trl": {
        "about": "tuneform's defaults with engine trl: packed rows in one flash varlen call per layer (train/varlen_attention.py; LFM2's conv reset), no Unsloth",
        "training": {},
        "compute": {"engine": "trl"},
    },
    "tuneform-trl-sdpa-mask": {
        "about": "tuneform-trl with compute.attention per-document: transformers' SDPA over a dense document mask, the trl route before the varlen call (its baseline)",
        "training": {},
        "compute": {"engine": "trl", "attention": "per-document"},
    },
    "tuneform-trl-batch8": {
        "about": "tuneform-trl with the batch fixed at 8",
        "training": {"per_device_train_batch_size": 8},
        "compute": {"engine": "trl"},
    },
    "tuneform-trl-sdpa-mask-batch8": {
        "about": "tuneform-trl-sdpa-mask with the batch fixed at 8 (its dense mask is a quarter of batch 16's)",
        "training": {"per_device_train_batch_size": 8},
        "compute": {"engine": "trl", "attention": "per-document"},
    },
    "tuneform-batch16": {
        "about": "tuneform's defaults with the batch fixed at 16: a second point for the estimator's utilisation curve",
        "training": {"per_device_train_batch_size": 16},
        "compute": {},
    },
    "tuneform-batch32": {
        "about": "tuneform's defaults with the batch fixed at 32: the next point up the utilisation curve",
        "training": {"per_device_train_batch_size": 32},
        "compute": {},
    },
    "tuneform-batch16-segments": {
        "about": "tuneform-batch16 with packed documents attended one SDPA call per run of equal lengths (Unsloth's fallback on torch < 2.12): the baseline for train/packed_attention.py",
        "training": {"per_device_train_batch_size": 16},
        "compute": {"attention": "per-document"},
    },
    "unsloth-notebook": {
        "about": "Unsloth notebook: batch 2, GA 4, checkpointing 'unsloth', adamw_8bit, lr 2e-4, warmup 5, wd 0.001, no packing (16-bit base, not 4-bit)",
        "training": {
            "per_device_train_batch_size": 2,
            "gradient_accumulation_steps": 4,
            "gradient_checkpointing": True,
            "packing": False,
            "optim": "adamw_8bit",
            "learning_rate": 2.0e-4,
            "lr_scheduler_type": "linear",
            "warmup_steps": 5,
            "weight_decay": 0.001,
        },
        "compute": {"engine": "unsloth"},
        "needs_cuda": True,
    },
    "trl-defaults": {
        "about": "engine trl with TRL SFTConfig defaults: batch 8, GA 1, checkpointing on, no packing, adamw_torch_fused, lr 2e-5",
        "training": {
            "per_device_train_batch_size": 8,
            "gradient_accumulation_steps": 1,
            "gradient_checkpointing": True,
            "packing": False,
            "optim": "adamw_torch_fused",
            "learning_rate": 2.0e-5,
            "lr_scheduler_type": "linear",
            "warmup_steps": 0,
            "weight_decay": 0.0,
        },
        "compute": {"engine": "trl"},
    },
}

# ---------------------------------------------------------------------------------------------
# Synthetic data: pseudo-words with a Zipf distribution, conversations of 70-800 words

_ONSETS = [
    "",
    "b",
    "c",
    "d",
    "f",
    "g",
    "h",
    "j",
    "k",
    "l",
    "m",
    "n",
    "p",
    "r",
    "s",
    "t",
    "v",
    "w",
    "z",
    "br",
    "ch",
    "cl",
    "dr",
    "fl",
    "gr",
    "pl",
    "pr",
    "sh",
    "st",
    "th",
    "tr",
]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ea", "ou", "y"]
_CODAS = ["", "", "", "n", "r", "s", "t", "l", "m", "nd", "st", "ng"]


def lexicon(rng: random.Random, size: int) -> list[str]:
    words: list[str] = []
    seen: set[str] = set()
    while len(words) < size:
        syllables = rng.choices([1, 2, 3, 4], weights=[30, 40, 22, 8])[0]
        word = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS) for _ in range(syllables))
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


def _prose(rng: random.Random, words: list[str], weights: list[float], count: int) -> str:
    picked = rng.choices(words, weights=weights, k=count)
    out, sentence = [], 0
    for i, word in enumerate(picked):
        if sentence == 0:
            word = word.capitalize()
        sentence += 1
        end = i == count - 1 or (sentence >= 6 and rng.random() < 0.12)
        out.append(word + ("." if end else ("," if rng.random() < 0.06 else "")))
        if end:
            sentence = 0
    return " ".join(out)


def conversations(count: int, seed: int, min_words: int = 70, max_words: int = 800) -> list[dict[str, Any]]:
    """`count` chats; total words log-uniform in [min_words, max_words]; a quarter have two turns."""
    rng = random.Random(seed)
    words = lexicon(random.Random(0), 12000)
    weights = [1.0 / (rank + 10) ** 1.05 for rank in range(len(words))]
    rows = []
    for _ in range(count):
        total = round(math.exp(rng.uniform(math.log(min_words), math.log(max_words))))
        turns = 2 if rng.random() < 0.25 and total > 150 else 1
        messages = []
        left = total
        for t in range(turns):
            share = left if t == turns - 1 else left // 2
            prompt = max(6, round(share * rng.uniform(0.08, 0.3)))
            messages.append({"role": "user", "content": _prose(rng, words, weights, prompt)})
            messages.append({"role": "assistant", "content": _prose(rng, words, weights, max(4, share - prompt))})
            left -= share
        rows.append({"messages": messages})
    return rows


# ---------------------------------------------------------------------------------------------
# The model folder: tokenizer + random-initialised weights

CHAT_TEMPLATE = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def build_tokenizer(texts: list[str], vocab_size: int) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|pad|>", "<|begin_of_text|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|begin_of_text|>",
        eos_token="<|im_end|>",
        pad_token="<|pad|>",
        extra_special_tokens=["<|im_start|>"],
        chat_template=CHAT_TEMPLATE,
        model_max_length=131072,
        clean_up_tokenization_spaces=False,
    )


def build_model_folder(folder: Path, shape: Shape, train_rows: list[dict[str, Any]], cuda: bool, weights: bool = True) -> dict[str, Any]:
    """Tokenizer trained on the data, config, and (unless `weights` is False) random weights."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, Lfm2Config, LlamaConfig

    texts = [m["content"] for row in train_rows for m in row["messages"]]
    tokenizer = build_tokenizer(texts, shape.tokenizer_vocab)
    common = {
        "vocab_size": shape.vocab or len(tokenizer),
        "hidden_size": shape.hidden,
        "intermediate_size": shape.intermediate,
        "num_hidden_layers": shape.layers,
        "num_attention_heads": shape.heads,
        "num_key_value_heads": shape.kv_heads,
        "tie_word_embeddings": shape.tied,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "dtype": "bfloat16" if cuda else "float32",
    }
    if shape.config is not None:
        keys = {k: v for k, v in shape.config.items() if k != "model_type"}
        tokens = {k: common[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id", "dtype")}
        if "vocab_size" in keys and keys["vocab_size"] < len(tokenizer):
            keys["vocab_size"] = len(tokenizer)  # the model must embed every id the bench's tokenizer makes
        config = AutoConfig.for_model(shape.config["model_type"], **keys, **tokens)
    elif shape.family == "lfm2":
        config = Lfm2Config(
            **common,
            max_position_embeddings=128000,
            norm_eps=1e-5,
            full_attn_idxs=list(shape.attention_layers or ()),
            block_auto_adjust_ff_dim=True,
        )
    else:
        config = LlamaConfig(**common, max_position_embeddings=131072, rope_theta=500000.0, rms_norm_eps=1e-5)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(folder)
    if not weights:  # --dry-run: the shape is all that checking and bundling read
        config.save_pretrained(folder)
        return {"params": catalog.shape_from_config(config.to_dict()).params, "tokenizer_vocab": len(tokenizer), "config": config.to_dict()}
    torch.manual_seed(SEED)
    dtype = torch.bfloat16 if cuda else torch.float32
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device("cuda" if cuda else "cpu"):
            model = AutoModelForCausalLM.from_config(config)  # random weights: throughput does not depend on their values
    finally:
        torch.set_default_dtype(previous)
    model.save_pretrained(folder)
    params = sum(p.numel() for p in model.parameters())
    del model
    if cuda:
        torch.cuda.empty_cache()
    return {"params": params, "tokenizer_vocab": len(tokenizer), "config": json.loads((folder / "config.json").read_text())}


def count_tokens(folder: Path, rows: list[dict[str, Any]], max_seq_length: int) -> list[int]:
    """Tokens of each conversation as the model sees it: chat template, then the tokenizer."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    lengths = []
    for row in rows:
        text = tokenizer.apply_chat_template(row["messages"], tokenize=False)
        lengths.append(min(len(tokenizer(text, add_special_tokens=False)["input_ids"]), max_seq_length))
    return lengths


# ---------------------------------------------------------------------------------------------
# The scratch training repository and its bundles


def write_repo(repo: Path, shape: Shape, configs: list[str], backend: str, max_seq_length: int, method: str, flavor: str = "h200") -> None:
    import yaml

    (repo / "runs").mkdir(parents=True, exist_ok=True)
    flavors = f'["{flavor}"]' if backend == "hf-jobs" else '["cpu-basic"]'
    (repo / "pyproject.toml").write_text(
        f'[project]\nname = "bench"\nversion = "0"\n\n[tool.tuneform]\nnamespace = "bench"\ndefault_backend = "{backend}"\n'
        f"allowed_flavors = {flavors}\n"
    )
    import importlib.util

    for name in configs:
        config = CONFIGS[name]
        training = {**COMMON_TRAINING, **config["training"]}
        if training.get("optim") == "adamw_8bit" and importlib.util.find_spec("bitsandbytes") is None:
            training["optim"] = "adamw_torch_fused"  # the notebook's 8-bit AdamW needs bitsandbytes
        run = {
            "name": name,
            "model": {"id": f"./models/{shape.name}", "max_seq_length": max_seq_length},
            "data": {
                "train": [{"path": "data/train.jsonl", "format": "messages"}],
                "eval": [{"path": "data/eval.jsonl", "format": "messages"}],
            },
            "method": {"type": method, "r": 16, "alpha": 16, "dropout": 0.0, "target_modules": "all-linear"},
            "training": training,
            "compute": {"backend": backend, **({"flavor": flavor} if backend == "hf-jobs" else {}), **config["compute"]},
            "output": {"save": "adapter"},
        }
        (repo / "runs" / f"{name}.yaml").write_text(yaml.safe_dump(run, sort_keys=False))


def make_bundle(repo: Path, name: str, dest: Path, backend: str) -> dict[str, Any]:
    """check_run + build_bundle, as apply does; returns run.json."""
    from tuneform.job.bundle import build_bundle
    from tuneform.plan.runcheck import check_run
    from tuneform.runfile.resolve import HubResolver
    from tuneform.runfile.settings import parse_settings
    from tuneform.runfile.trees import WorkTree

    tree = WorkTree(repo)
    settings = parse_settings((repo / "pyproject.toml").read_text())
    check = check_run(tree, f"runs/{name}.yaml", settings, HubResolver(offline=True), backend=backend)
    if not check.ok:
        raise SystemExit(f"bench run {name} is invalid: " + "; ".join(f"{p.field}: {p.message}" for p in check.errors))
    from tuneform.core.manifest import GitFacts

    bundle = build_bundle(check, tree, dest, git=GitFacts(), action="create", expected_main=None, job_id=f"bench-{name}")
    return bundle.run.model_dump(mode="json")


# ---------------------------------------------------------------------------------------------
# Running one job and watching it


class GpuMemory:
    """Device memory in use (NVML, else nvidia-smi), sampled in a thread; peak above a baseline."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self.peak = 0
        self.baseline = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._read = self._reader()

    @staticmethod
    def _reader() -> Any:
        try:
            import pynvml

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(int(os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0] or 0))
            return lambda: int(pynvml.nvmlDeviceGetMemoryInfo(handle).used)
        except Exception:
            pass
        if shutil.which("nvidia-smi"):

            def smi() -> int:
                out = subprocess.run(
                    ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"],
                    capture_output=True,
                    text=True,
                    timeout=5,
                ).stdout
                return int(float(out.strip().splitlines()[0]) * 2**20)

            return smi
        return None

    def __enter__(self) -> GpuMemory:
        if self._read is not None:
            self.baseline = self.peak = self._read()
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.peak = max(self.peak, self._read())
            except Exception:
                return

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)

    @property
    def peak_gib(self) -> float | None:
        return None if self._read is None else (self.peak - self.baseline) / 2**30


STEP = re.compile(r"^\s*step (\d+)/(\d+) \|")


@dataclass
class JobRun:
    exit_code: int | None
    seconds: float
    timed_out: bool
    steps: list[tuple[float, int, int]] = field(default_factory=list)  # (seconds since start, step, total)
    marks: dict[str, float] = field(default_factory=dict)  # phase lines -> seconds since start
    tail: list[str] = field(default_factory=list)


# `tuneform job` with the process's CUDA allocator capped first: proves a run fits a smaller card.
CAPPED_JOB = (
    "import sys, torch; cap = float(sys.argv.pop(1)) * 2**30; "
    "torch.cuda.set_per_process_memory_fraction(min(1.0, cap / torch.cuda.get_device_properties(0).total_memory)); "
    "from tuneform.cli import main; sys.argv[0] = 'tuneform'; main()"
)


def run_job(
    bundle: Path, registry: Path, log: Path, env: dict[str, str], timeout: float, processes: int = 1, memory_cap_gib: float | None = None
) -> JobRun:
    """`tuneform job BUNDLE --registry DIR --processes N` (as the local backend starts it), time-stamping
    lines; with `memory_cap_gib`, the job's CUDA allocator is capped there (one process only)."""
    args = ["job", str(bundle), "--registry", str(registry), "--processes", str(processes)]
    command = (
        [sys.executable, "-c", CAPPED_JOB, str(memory_cap_gib), *args] if memory_cap_gib else [sys.executable, "-m", "tuneform.cli", *args]
    )
    started = time.perf_counter()
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        text=True,
        bufsize=1,
        start_new_session=True,
    )
    result = JobRun(None, 0.0, False)
    with log.open("w") as out:
        out.write("$ tuneform " + " ".join(args) + (f"  (CUDA memory capped at {memory_cap_gib} GiB)" if memory_cap_gib else "") + "\n")

        def read() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                now = time.perf_counter() - started
                out.write(f"[{now:8.2f}] {line}")
                out.flush()
                result.tail = (result.tail + [line.rstrip()])[-60:]
                match = STEP.match(line)
                if match:
                    result.steps.append((now, int(match.group(1)), int(match.group(2))))
                for phase in ("loading data", "scoring the base model", "training (", "scoring the new model", "published"):
                    if line.strip().startswith(phase) and phase not in result.marks:
                        result.marks[phase] = now

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            process.wait(timeout=max(1.0, timeout))
        except subprocess.TimeoutExpired:
            result.timed_out = True
            os.killpg(process.pid, signal.SIGTERM)  # the job's own process group, started above
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        reader.join(timeout=5)
        result.seconds = time.perf_counter() - started
        result.exit_code = process.returncode
        out.write(f"exit {process.returncode} after {result.seconds:.1f}s{' (timed out)' if result.timed_out else ''}\n")
    return result


def steady_rate(steps: list[tuple[float, int, int]], tokens: int) -> tuple[float | None, int | None, int | None]:
    """Tokens/s between two logged steps, from the time stamps of the job's progress lines.

    The window starts at the first logged step past the first 20% of steps (and past step 1:
    compilation and warm-up done) and ends at the last logged step before the final one (which
    is partial). Tokens per step are taken as tokens / total steps: exact on average over
    shuffled batches; with few steps it undercounts full steps by up to 1/total (the partial
    last step holds less), so the rate errs low."""
    if len(steps) < 3:
        return None, None, None
    total = steps[-1][2]
    start = max(2, math.ceil(0.2 * total))
    end = total - 1 if total >= 4 else total
    window = [s for s in steps if start <= s[1] <= end]
    if len(window) < 2:
        window = [s for s in steps if 2 <= s[1] <= end] or steps
    (t0, s0, _), (t1, s1, _) = window[0], window[-1]
    if t1 <= t0 or s1 <= s0:
        return None, None, None
    return tokens * (s1 - s0) / total / (t1 - t0), s0, s1


LINE = re.compile(r"^\[\s*([0-9.]+)\] (.*)$")


def steps_from_log(log: Path) -> list[tuple[float, int, int]]:
    """(seconds, step, total) of each progress line of a job log this bench wrote."""
    steps = []
    for line in log.read_text(errors="replace").splitlines():
        stamped = LINE.match(line)
        if stamped:
            match = STEP.match(stamped.group(2))
            if match:
                steps.append((float(stamped.group(1)), int(match.group(1)), int(match.group(2))))
    return steps


def reanalyse(path: Path) -> None:
    """Recompute the log-derived numbers of a report (steady rate, MFU) from its saved job logs,
    so a better analysis applies to past raw data; rewrites the .json and .md."""
    report = json.loads(path.read_text())
    logs = path.parent / f"{path.stem}-logs"
    peak = report["peak_tflops"] * 1e12 if report["device"] == "cuda" else None
    for result in report["results"]:
        log = logs / f"{result['config']}.log"
        if not log.is_file():
            continue
        me = result["measured"]
        steady, s0, s1 = steady_rate(steps_from_log(log), me["tokens_bench"])
        me["steady_tokens_per_second"] = steady
        me["steady_window_steps"] = [s0, s1] if s0 is not None else None
        flops = me["model_gflop_per_token"] * 1e9
        me["steady_mfu"] = None if steady is None or peak is None else steady * flops / peak
        me["mfu"] = None if me["tokens_per_second"] is None or peak is None else me["tokens_per_second"] * flops / peak
    write_reports(report, path.parent, path.stem)
    print(markdown(report))


# ---------------------------------------------------------------------------------------------
# Machine facts


def machine(cuda: bool) -> dict[str, Any]:
    import torch

    facts: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()}
    from tuneform.train.engine import installed_versions

    versions = installed_versions(LIBRARIES)
    versions.setdefault("tuneform", tuneform.__version__)
    facts["versions"] = versions
    facts["torch_cuda"] = torch.version.cuda
    if cuda:
        facts["gpu"] = torch.cuda.get_device_name(0)
        facts["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
        facts["capability"] = ".".join(map(str, torch.cuda.get_device_capability(0)))
        try:
            smi = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout.strip()
            facts["nvidia_smi"] = smi
            facts["driver"] = smi.split(",")[1].strip() if smi else None
        except (OSError, subprocess.SubprocessError, IndexError):
            facts["driver"] = None
    return facts


# ---------------------------------------------------------------------------------------------
# Numbers for one configuration


def analyse(
    name: str,
    run: dict[str, Any],
    job: JobRun,
    manifest: dict[str, Any] | None,
    memory: float | None,
    shape: catalog.ModelShape,
    lengths: list[int],
    max_seq_length: int,
    cuda: bool,
    method: str,
    flavor_name: str = "h200",
    processes: int = 1,
) -> dict[str, Any]:
    """Measured against predicted for one job. With several processes, the prediction is for the
    flavor with that many GPUs of the same card (h200 -> h200x2) and MFU counts every GPU."""
    spec_training = run["spec"]["training"]
    tokens = sum(lengths)
    training = (manifest or {}).get("training") or {}
    settings = training.get("settings") or {}
    plan = run.get("estimate") or {}
    engine = settings.get("engine") or (
        run["spec"]["compute"]["engine"] if run["spec"]["compute"]["engine"] != "auto" else ("unsloth" if cuda else "trl")
    )
    batch = settings.get("batch_size") or (
        spec_training["per_device_train_batch_size"] if spec_training["per_device_train_batch_size"] != "auto" else plan.get("batch_size")
    )
    checkpointing = settings.get("gradient_checkpointing")
    if checkpointing is None:
        value = spec_training["gradient_checkpointing"]
        checkpointing = plan.get("gradient_checkpointing") if value == "auto" else value
    # What ran, where the job recorded it: an engine may train padded what the run asked to pack.
    packing = bool(settings["packing"]) if "packing" in settings else bool(spec_training["packing"])
    grad_accum = int(spec_training["gradient_accumulation_steps"])

    # FLOPs a token: attention over each conversation's own tokens (packed documents are kept
    # apart; padding is waste): the token-weighted mean length is sum(L^2)/sum(L).
    attended = max(1, round(sum(n * n for n in lengths) / max(1, tokens)))
    lora = shape.lora_params(16, "all-linear") if method != "full" else 0
    flops = flops_per_token(shape, method=method, lora_params=lora, attended_tokens=attended, gradient_checkpointing=bool(checkpointing))

    loop_seconds = training.get("seconds")
    rate = tokens / loop_seconds if loop_seconds else None
    steady, s0, s1 = steady_rate(job.steps, tokens)
    peak = 1e12 * H200_BF16_TFLOPS * processes if cuda else None

    def mfu(r: float | None) -> float | None:
        return None if r is None or peak is None else r * flops.model / peak

    flavor = catalog.FLAVORS[f"{flavor_name}x{processes}" if processes > 1 else flavor_name] if cuda else catalog.FLAVORS["local"]
    workload = Workload(
        shape=shape,
        train_tokens=tokens,
        seq_len=max_seq_length,
        method=method,
        lora_r=16,
        target_modules="all-linear",
        batch_size=int(batch) if batch else None,
        grad_accum=grad_accum,
        gradient_checkpointing=checkpointing,
        packing=packing,
        engine=engine,
        eval_tokens=0,
        mean_example_tokens=round(tokens / len(lengths)),
        max_example_tokens=max(lengths),
        exports=("adapter",),
    )
    predicted = estimate(workload, flavor)
    context = predicted.memory_breakdown.get("cuda_context", 0.0)
    return {
        "config": name if processes == 1 else f"{name} x{processes} GPUs",
        "about": CONFIGS[name]["about"],
        "processes": processes,
        "status": "ok" if job.exit_code == 0 and manifest else ("timeout" if job.timed_out else f"failed (exit {job.exit_code})"),
        "engine": engine,
        "batch_size": batch,
        "gradient_accumulation_steps": grad_accum,
        "gradient_checkpointing": checkpointing,
        "packing": packing,
        "attention": settings.get("attention"),
        "optim": settings.get("optim") or spec_training["optim"],
        "settings": settings or None,
        "run_training": spec_training,
        "measured": {
            "tokens_bench": tokens,
            "tokens_job": training.get("tokens"),
            "steps": training.get("steps") or (job.steps[-1][1] if job.steps else None),
            "total_steps": job.steps[-1][2] if job.steps else None,
            "train_loop_seconds": loop_seconds,
            "tokens_per_second": rate,
            "steady_tokens_per_second": steady,
            "steady_window_steps": [s0, s1] if s0 is not None else None,
            "mfu": mfu(rate),
            "steady_mfu": mfu(steady),
            "model_gflop_per_token": flops.model / 1e9,
            "hardware_gflop_per_token": flops.hardware / 1e9,
            "attended_tokens": attended,
            "peak_torch_allocated_gib": training.get("peak_memory_gb"),
            "peak_torch_kind": training.get("peak_memory_kind"),
            "peak_gpu_used_gib": memory,
            "job_seconds": job.seconds,
            "phase_seconds": job.marks,
            "final_loss": (training.get("loss_history") or [[None, None]])[-1][1],
        },
        "predicted": {
            "flavor": flavor.name,
            "batch_size": predicted.batch_size,
            "gradient_checkpointing": predicted.gradient_checkpointing,
            "tokens_per_second": predicted.tokens_per_second,
            "mfu": predicted.mfu,
            "train_seconds": predicted.seconds_breakdown["train"],
            "job_seconds": predicted.seconds,
            "seconds_breakdown": dict(predicted.seconds_breakdown),
            "peak_gib": predicted.peak_vram_gb,
            "peak_gib_without_context": predicted.peak_vram_gb - context,
            "memory_breakdown": dict(predicted.memory_breakdown),
        },
        "plan_estimate": {
            k: plan.get(k)
            for k in ("flavor", "batch_size", "gradient_checkpointing", "tokens", "seconds", "tokens_per_second", "peak_vram_gb", "mfu")
        }
        if plan
        else None,
        "error_tail": None if job.exit_code == 0 else job.tail[-40:],
    }


# ---------------------------------------------------------------------------------------------
# Reports


def _num(value: Any, fmt: str = "{:,.0f}") -> str:
    return "-" if value is None else fmt.format(value)


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        f"# tuneform GPU bench, {report['date']}",
        "",
        f"Card: {m.get('gpu', 'CPU')} ({m.get('gpu_memory_gib', '-')} GiB), driver {m.get('driver', '-')}, CUDA {m.get('torch_cuda') or '-'}; "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items())
        + ".",
        f"Model: {report['shape']['name']} shape, {report['model']['params']:,} parameters (random init), LoRA r=16 on the 7 projections, "
        f"max_seq_length {report['max_seq_length']}. Data: {report['data']['train_examples']} training conversations, "
        f"{report['data']['tokens']:,} tokens (bench-counted; mean {report['data']['mean_tokens']:.0f}, max {report['data']['max_tokens']}), "
        f"{report['data']['eval_examples']} eval.",
        f"Command: `{report['command']}`. MFU = model FLOPs (no recompute) / {report['peak_tflops']:.0f} TFLOP/s.",
        "",
        "| config | engine | batch x GA | ckpt | packing | attention | tok/s (loop) | tok/s (steady) | MFU (steady) | peak GiB torch / GPU | predicted tok/s | predicted / measured train s | predicted peak GiB | status |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        me, pr = r["measured"], r["predicted"]
        peak = f"{_num(me['peak_torch_allocated_gib'], '{:.1f}')} / {_num(me['peak_gpu_used_gib'], '{:.1f}')}"
        lines.append(
            f"| {r['config']} | {r['engine']} | {r['batch_size']} x {r['gradient_accumulation_steps']} | {r['gradient_checkpointing']} | {r['packing']} "
            f"| {r.get('attention') or '-'} | {_num(me['tokens_per_second'])} | {_num(me['steady_tokens_per_second'])} | {_num(me['steady_mfu'], '{:.1%}')} | {peak} "
            f"| {_num(pr['tokens_per_second'])} | {_num(pr['train_seconds'], '{:.0f}')} / {_num(me['train_loop_seconds'], '{:.0f}')} "
            f"| {_num(pr['peak_gib_without_context'], '{:.1f}')} | {r['status']} |"
        )
    lines += _scaling(report["results"])
    lines += ["", "Configurations:", ""]
    for r in report["results"]:
        lines.append(
            f"- **{r['config']}**: {r['about']}. Whole job {r['measured']['job_seconds']:.0f} s (estimator: {r['predicted']['job_seconds']:.0f} s incl. container start and download)."
        )
    for r in report["results"]:
        if r["error_tail"]:
            lines += ["", f"`{r['config']}` failed; last lines:", "", "```", *r["error_tail"][-25:], "```"]
    for s in report.get("skipped", []):
        lines.append(f"- skipped {s['config']}: {s['reason']}")
    return "\n".join(lines) + "\n"


def _scaling(results: list[dict[str, Any]]) -> list[str]:
    """Scaling efficiency of each config run on several GPUs: steady tok/s over N x one GPU's."""
    single = {r["config"]: r["measured"]["steady_tokens_per_second"] for r in results if r.get("processes", 1) == 1}
    lines = []
    for r in results:
        n = r.get("processes", 1)
        base = single.get(r["config"].split(" x")[0])
        rate = r["measured"]["steady_tokens_per_second"]
        if n > 1 and base and rate:
            lines.append(
                f"- {r['config']}: {rate:,.0f} tok/s steady = {rate / base:.2f}x one GPU ({rate / (n * base):.0%} scaling efficiency)"
            )
    return ["", "Scaling:", "", *lines] if lines else []


def write_reports(report: dict[str, Any], out: Path, stem: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (out / f"{stem}.md").write_text(markdown(report))


# ---------------------------------------------------------------------------------------------
# Main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--shape",
        default="llama-1b",
        help=f"one of {', '.join(sorted(SHAPES))}, or any model id of tuneform's catalog (estimate/models.json), e.g. Qwen/Qwen3-0.6B",
    )
    parser.add_argument("--tiny", action="store_true", help="tiny shape, few short examples (a smoke test)")
    parser.add_argument(
        "--cpu", action="store_true", help="train on the CPU even when a GPU is visible (configs that need CUDA are skipped)"
    )
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated, from {', '.join(CONFIGS)}")
    parser.add_argument("--method", choices=["lora", "qlora"], default="lora")
    parser.add_argument("--examples", type=int, default=None, help="training conversations (default 1200; tiny 8)")
    parser.add_argument("--eval-examples", type=int, default=None, help="held-out conversations the job scores (default 16; tiny 4)")
    parser.add_argument("--max-seq-length", type=int, default=None, help="default 2048; tiny 512")
    parser.add_argument(
        "--dry-run", action="store_true", help="build data, tokenizer, config (no weights) and bundles; print the plan; train nothing"
    )
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one, removed)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--name", default=None, help="report file stem (default gpu-<date>, cpu-tiny-<date> with --tiny --cpu)")
    parser.add_argument(
        "--deadline",
        type=float,
        default=None,
        help="seconds for the whole bench: a job still running then is stopped and reported partially",
    )
    parser.add_argument("--flavor", default="h200", help="flavor the estimator sizes `auto` for and predicts (default h200)")
    parser.add_argument(
        "--processes", default="1", help="comma-separated process counts to run each config with (DDP over that many GPUs), e.g. 1,2"
    )
    parser.add_argument(
        "--memory-cap-gib",
        type=float,
        default=None,
        help="cap each job's CUDA allocator (torch.cuda.set_per_process_memory_fraction): a smaller card's fit",
    )
    parser.add_argument(
        "--holdout",
        action="store_true",
        help="fit the estimator's calibration on some shapes' recorded results and report its error on the others "
        "(bench/holdout.py: reads --out's gpu-*.json, writes holdout.md and .json there; no GPU)",
    )
    parser.add_argument(
        "--reanalyse",
        type=Path,
        default=None,
        metavar="JSON",
        help="recompute a saved report's log-derived numbers from its logs; run nothing",
    )
    args = parser.parse_args(argv)
    if args.holdout:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import holdout

        return holdout.main(["--results", str(args.out)])
    if args.reanalyse:
        reanalyse(args.reanalyse)
        return 0

    started = time.perf_counter()
    try:
        shape = shape_named(args.shape if args.tiny and args.shape.startswith("tiny") else "tiny" if args.tiny else args.shape)
    except ValueError as exc:
        parser.error(str(exc))
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        parser.error(f"unknown config {', '.join(unknown)}: choose from {', '.join(CONFIGS)}")

    import torch

    cuda = torch.cuda.is_available() and not args.cpu
    gpu = cuda or (args.dry_run and not args.cpu)  # a dry run plans the GPU runs on any machine
    if args.method == "qlora" and not gpu:
        parser.error("--method qlora needs a CUDA GPU")
    if args.max_seq_length is None:
        args.max_seq_length = 512 if args.tiny else 2048
    examples = args.examples or (8 if args.tiny else 1200)
    eval_examples = args.eval_examples or (4 if args.tiny else 16)
    date = time.strftime("%Y-%m-%d", time.gmtime())
    stem = args.name or (
        f"cpu-tiny-{date}" if args.tiny and not gpu else f"gpu-{date}" if shape.name == "llama-1b" else f"gpu-{shape.name}-{date}"
    )
    if args.dry_run:
        stem += "-dry-run"
    backend = "hf-jobs" if gpu else "local"  # on a GPU: tuneform's h200 estimate sizes `auto`

    work = args.work or Path(tempfile.mkdtemp(prefix="tuneform-bench-"))
    repo = work / "repo"
    if repo.exists():
        shutil.rmtree(repo)
    (repo / "data").mkdir(parents=True)
    print(f"bench: {shape.name} shape on {'cuda' if cuda else 'cpu'}, configs {', '.join(configs)}, work {work}", flush=True)

    words = (20, 120) if args.tiny else (70, 800)
    train_rows = conversations(examples, seed=1, min_words=words[0], max_words=words[1])
    eval_rows = conversations(eval_examples, seed=2, min_words=words[0], max_words=words[1])
    for rel, rows in (("data/train.jsonl", train_rows), ("data/eval.jsonl", eval_rows)):
        (repo / rel).write_text("".join(json.dumps(r) + "\n" for r in rows))
    model_dir = repo / "models" / shape.name
    t = time.perf_counter()
    built = build_model_folder(model_dir, shape, train_rows, cuda, weights=not args.dry_run)
    lengths = count_tokens(model_dir, train_rows, args.max_seq_length)
    model_shape = catalog.shape_from_config(built["config"])
    print(
        f"  model {built['params']:,} parameters, tokenizer {built['tokenizer_vocab']}, data {sum(lengths):,} tokens "
        f"(mean {sum(lengths) / len(lengths):.0f}, max {max(lengths)}) in {time.perf_counter() - t:.1f}s",
        flush=True,
    )
    write_repo(repo, shape, configs, backend, args.max_seq_length, args.method, args.flavor)
    counts = [int(n) for n in args.processes.split(",") if n.strip()]

    env = {**os.environ, **OFFLINE_ENV, "UNSLOTH_COMPILE_LOCATION": str(work / "unsloth_compiled"), "TUNEFORM_HOME": str(work / "registry")}
    src = str(Path(tuneform.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([src, *filter(None, [os.environ.get("PYTHONPATH")])])
    if not cuda:
        env["CUDA_VISIBLE_DEVICES"] = ""

    report: dict[str, Any] = {
        "bench": "gpu",
        "date": date,
        "command": " ".join(["python", "bench/gpu.py", *(argv if argv is not None else sys.argv[1:])]),
        "device": "dry-run" if args.dry_run else "cuda" if cuda else "cpu",
        "shape": {"name": shape.name, **{k: v for k, v in vars(model_shape).items()}},
        "model": {"params": built["params"], "tokenizer_vocab": built["tokenizer_vocab"]},
        "method": args.method,
        "max_seq_length": args.max_seq_length,
        "peak_tflops": H200_BF16_TFLOPS,
        "data": {
            "train_examples": len(train_rows),
            "eval_examples": len(eval_rows),
            "words": list(words),
            "tokens": sum(lengths),
            "mean_tokens": sum(lengths) / len(lengths),
            "max_tokens": max(lengths),
            "min_tokens": min(lengths),
        },
        "machine": machine(cuda),
        # What the run files cannot say: bench/holdout.py reads UNSLOTH_COMPILE_DISABLE from here.
        "environment": {key: os.environ[key] for key in RECORDED_ENVIRONMENT if key in os.environ},
        "results": [],
        "skipped": [],
    }
    logs = args.out / f"{stem}-logs"
    if not args.dry_run:
        logs.mkdir(parents=True, exist_ok=True)
    for name, processes in [(name, n) for name in configs for n in counts]:
        label = name if processes == 1 else f"{name}-x{processes}"
        if CONFIGS[name].get("needs_cuda") and not gpu:
            report["skipped"].append({"config": label, "reason": "needs a CUDA GPU"})
            print(f"- {label}: skipped (needs a CUDA GPU)", flush=True)
            continue
        left = None if args.deadline is None else args.deadline - (time.perf_counter() - started)
        if left is not None and left < 45:
            report["skipped"].append({"config": label, "reason": f"deadline: {max(0, left):.0f}s left"})
            print(f"- {label}: skipped ({max(0, left):.0f}s left before the deadline)", flush=True)
            continue
        bundle, registry = work / "bundles" / name, work / "registry" / label
        run = make_bundle(repo, name, bundle, backend)
        if args.dry_run:
            job = JobRun(None, 0.0, False)
            memory: Any = _NoMemory()
            shown = {
                k: (run.get("estimate") or {}).get(k)
                for k in ("flavor", "batch_size", "gradient_checkpointing", "tokens_per_second", "seconds", "peak_vram_gb")
            }
            print(f"- {label}: run-{run['run_key'][:12]}, plan estimate {json.dumps(shown)}", flush=True)
        else:
            print(f"- {label}: tuneform job (run-{run['run_key'][:12]}, {processes} process{'es' if processes > 1 else ''})", flush=True)
            with GpuMemory() if cuda else _NoMemory() as memory:
                job = run_job(
                    bundle,
                    registry,
                    logs / f"{label}.log",
                    env,
                    left if left is not None else 24 * 3600,
                    processes=processes,
                    memory_cap_gib=args.memory_cap_gib,
                )
        shutil.rmtree(bundle, ignore_errors=True)  # an 8B bundle holds a copy of the model: one at a time
        manifest = None
        from tuneform.registry.local import LocalRegistry

        version = LocalRegistry(registry).get(run["output_repo"], run["run_key"])
        if version is not None:
            manifest = version.manifest.to_json()
        result = analyse(
            name,
            run,
            job,
            manifest,
            memory.peak_gib,
            model_shape,
            lengths,
            args.max_seq_length,
            gpu,
            args.method,
            flavor_name=args.flavor,
            processes=processes,
        )
        if args.memory_cap_gib:
            result["memory_cap_gib"] = args.memory_cap_gib
        if args.dry_run:
            result["status"] = "dry-run"
        report["results"].append(result)
        me = result["measured"]
        print(
            f"  {result['status']}: {_num(me['tokens_per_second'])} tok/s loop, {_num(me['steady_tokens_per_second'])} steady, "
            f"MFU {_num(me['steady_mfu'], '{:.1%}')}, peak {_num(me['peak_torch_allocated_gib'], '{:.1f}')} GiB torch / "
            f"{_num(me['peak_gpu_used_gib'], '{:.1f}')} GiB GPU; job {me['job_seconds']:.0f}s "
            f"(predicted {_num(result['predicted']['tokens_per_second'])} tok/s, {result['predicted']['peak_gib_without_context']:.1f} GiB)",
            flush=True,
        )
        if result["error_tail"]:
            print("  " + "\n  ".join(result["error_tail"][-15:]), flush=True)
        write_reports(report, args.out, stem)
    write_reports(report, args.out, stem)
    print(markdown(report))
    print(f"bench: {time.perf_counter() - started:.0f}s; wrote {args.out / stem}.json, .md and {logs}/", flush=True)
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if report["results"] and all(r["status"] in ("ok", "dry-run") for r in report["results"]) else 1


class _NoMemory:
    peak_gib = None

    def __enter__(self) -> _NoMemory:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None


if __name__ == "__main__":
    sys.exit(main())
