"""The run file: its schema (v1), loading with positions, and the canonical form behind the run key.

The schema is the public contract of a run file (docs/run-file.md is generated from it), so
field names follow Hugging Face TrainingArguments / TRL SFTConfig wherever those exist.
`auto` values stay `auto` here: they are resolved by the estimator for a given flavor, and a
run's key must not change because a price table or a GPU did.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from tuneform.core.errors import TuneformError
from tuneform.runfile import yamlsafe
from tuneform.runfile.diagnostics import Problem, did_you_mean
from tuneform.runfile.trees import shown

SCHEMA_VERSION = 1
# Bump by hand when a code change alters what a run trains (formatting, masking, defaults
# applied by the job): every run key changes with it, so nothing stale is reused.
TRAINING_FORMAT = 1
SCHEMA_FILE = "schema/run.schema.json"  # where init writes it; run files point editors at it

_SLUG = r"^[a-z0-9][a-z0-9._-]{0,95}$"
_REPO_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$"
_VERSION_TAG = re.compile(r"^run-([0-9a-f]{12})$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}
# Loose on purpose (names are checked by OutputSpec, case-insensitively): an editor must never flag
# what tuneform accepts.
_SAVE_PATTERN = r"^\s*([A-Za-z]+|[Gg][Gg][Uu][Ff]:[A-Za-z0-9_]+)\s*$"
_GATE = re.compile(r"^\s*(>=|<=|>|<|==)\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*$")

Format = Literal["messages", "prompt_completion", "alpaca", "text", "preference"]
CANONICAL_COLUMNS: dict[str, tuple[str, ...]] = {
    "messages": ("messages",),
    "prompt_completion": ("prompt", "completion"),
    "alpaca": ("instruction", "input", "output"),
    "text": ("text",),
    "preference": ("prompt", "chosen", "rejected"),
}
PREFERENCE_METHODS = ("dpo", "orpo", "kto")
"""Methods that learn from pairs of answers (format: preference) rather than from target text."""
REFERENCE_METHODS = ("dpo", "kto")
"""Preference methods that score each sequence with a frozen reference model too (ORPO needs none)."""
# Experiment trackers a run may report to (TrainingArguments' report_to names). Only tensorboard
# writes files the version keeps; the others send to a service, with credentials from
# [tool.tuneform.tracker_secrets] (runfile/settings.py).
RemoteTracker = Literal["trackio", "wandb", "mlflow"]
Tracker = Literal["none", "tensorboard", RemoteTracker]
REMOTE_TRACKERS: tuple[str, ...] = get_args(RemoteTracker)
LORA_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class FieldError(TuneformError, ValueError):
    """A validator's error about one key of the section that raised it (`where`, relative to it),
    so the problem points at what the user wrote rather than at the section or the file."""

    def __init__(self, where: tuple[str | int, ...], message: str):
        super().__init__(message)
        self.where = where


def _takes_number(annotation: Any) -> bool:
    """An int or float field that does not also accept a boolean."""

    def walk(a: Any) -> set[Any]:
        return {a} if not get_args(a) or get_origin(a) is Literal else set().union(*(walk(x) for x in get_args(a)))

    kinds = walk(annotation)
    return bool(kinds & {int, float}) and bool not in kinds


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        """YAML reads yes/no/on/off/true/false as booleans and pydantic would take one as 1 or 0
        (`timeout: yes` would be a one-second timeout): a number field refuses them."""
        if isinstance(value, bool) and info.field_name and _takes_number(cls.model_fields[info.field_name].annotation):
            raise ValueError(f"{str(value).lower()} is a boolean (YAML reads yes/no/on/off/true/false as booleans): write a number")
        return value


def parse_duration(value: str | int | float) -> int:
    """Seconds from `5400`, `90m`, `1.5h`, `2d`. Raises ValueError with the accepted forms."""
    if isinstance(value, bool):
        raise ValueError(
            f"{str(value).lower()} is a boolean, not a duration (YAML reads yes/no/on/off as booleans): write 90m, 2h or seconds"
        )
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"'{value}' is not a duration: use seconds or a number with s, m, h or d (90m, 2h)")
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if seconds < 60:
        raise ValueError("a timeout under one minute cannot hold a training job: use at least 1m")
    if seconds > 7 * 86400:
        raise ValueError("a timeout over 7 days is not accepted: use at most 7d")
    return int(seconds)


class ModelSpec(_Section):
    """The base model to fine-tune."""

    id: str = Field(min_length=1, description="Hub model id (owner/name) or a local directory starting with '.' or '/'.")
    revision: str = Field(
        "main",
        min_length=1,
        description="Hub branch, tag or commit; pin a commit SHA or tag for reproducible runs. "
        "run-<key12> with id an output repo: start from that tuneform version (a DPO run from an SFT run's).",
    )
    max_seq_length: int = Field(2048, ge=16, le=262144, description="Longest training sequence in tokens; longer rows are truncated.")
    load_in_4bit: bool = Field(False, description="Load the base weights in 4 bit (implied by method qlora).")
    trust_remote_code: bool = Field(
        False, description="Run code from the model repo; allowed only for models listed in [tool.tuneform] trust_remote_code."
    )
    chat_template: str | None = Field(None, description="A named chat template (chatml, llama-3, ...) instead of the tokenizer's own.")

    @property
    def is_local(self) -> bool:
        return self.id.startswith((".", "/"))

    @property
    def version_tag(self) -> str | None:
        """The run key prefix (key12) when `revision` names a tuneform version (`run-<key12>`) of
        the output repo `id`: the run starts from that version (a DPO run from an SFT run's)."""
        match = _VERSION_TAG.match(self.revision)
        return None if self.is_local or match is None else match.group(1)

    @field_validator("id")
    @classmethod
    def _model_id(cls, value: str) -> str:
        if value.startswith((".", "/")):
            return value
        if not re.match(_REPO_ID, value):
            raise ValueError(f"'{value}' is neither a Hub id (owner/name) nor a local path (./models/x)")
        return value


def _source_tag(value: Any) -> str | None:
    """Which kind of data source: by key when validating a mapping, by class when serialising."""
    if isinstance(value, LocalSource):
        return "local"
    if isinstance(value, HubSource):
        return "hub"
    if isinstance(value, dict):
        if "path" in value and "dataset" not in value:
            return "local"
        if "dataset" in value and "path" not in value:
            return "hub"
    return None


class _SourceBase(_Section):
    format: Format = Field(
        "messages",
        description="Row layout: messages (chat), prompt_completion, alpaca, text, or preference ({prompt, chosen, rejected} for dpo/orpo/kto).",
    )
    columns: dict[str, str] = Field(default_factory=dict, description="Renames: canonical field -> column in the data.")
    max_samples: int | None = Field(None, ge=1, description="Use at most this many rows (after a seeded shuffle).")

    @model_validator(mode="after")
    def _columns_known(self) -> _SourceBase:
        allowed = CANONICAL_COLUMNS[self.format]
        for key in self.columns:
            if key not in allowed:
                raise FieldError(("columns", key), f"columns: '{key}' is not a field of format {self.format}{did_you_mean(key, allowed)}")
        return self


class LocalSource(_SourceBase):
    """A data file kept in the repository (JSONL, JSON, CSV or Parquet)."""

    path: str = Field(min_length=1, description="Repository-relative path of a .jsonl, .json, .csv or .parquet file.")

    @field_validator("path")
    @classmethod
    def _relative(cls, value: str) -> str:
        return check_relative_path(value)


class HubSource(_SourceBase):
    """A dataset on the Hugging Face Hub."""

    dataset: str = Field(pattern=_REPO_ID, description="Hub dataset id, owner/name.")
    revision: str = Field("main", min_length=1, description="Branch, tag or commit; pin a commit SHA for reproducible runs.")
    name: str | None = Field(None, description="Dataset configuration (subset) name.")
    split: str = Field("train", min_length=1, description="Split to read, e.g. train or train[:10%].")


Source = Annotated[
    Annotated[LocalSource, Tag("local")] | Annotated[HubSource, Tag("hub")],
    Discriminator(
        _source_tag,
        custom_error_type="source",
        custom_error_message="a data source needs exactly one of 'path' (a file in the repo) or 'dataset' (a Hub dataset)",
    ),
]


# Data-check rules a policy can tune and their defaults (max: a fraction of the rows concerned,
# level). Kept next to the schema so the run-file reference states them; data/check.py applies them.
DATA_RULE_DEFAULTS: dict[str, tuple[float, Literal["off", "warn", "fail"]]] = {
    "unparsable": (0.0, "warn"),
    "non_text": (0.0, "warn"),
    "missing_assistant": (0.0, "warn"),
    "empty_turns": (0.0, "warn"),
    "role_order": (0.0, "warn"),
    "encoding": (0.0, "warn"),
    "duplicates": (0.05, "warn"),
    "truncated": (0.10, "warn"),
    "leakage": (0.0, "warn"),
    "identical_answers": (0.0, "warn"),
    "length_bias": (0.75, "warn"),
}


class RuleLimit(_Section):
    """A data-check threshold: when more than `max` of the rows is affected, findings are reported at `level`."""

    max: float | None = Field(None, ge=0, le=1, description="Largest tolerated fraction of the rows (0 to 1; 0: none); default per rule.")
    level: Literal["off", "warn", "fail"] | None = Field(None, description="off: not reported; warn: reported; fail: the plan fails.")

    @field_validator("level", mode="before")
    @classmethod
    def _off(cls, value: Any) -> Any:
        """YAML reads an unquoted `off` as false: take it as the level it was meant to be."""
        return "off" if value is False else value

    @field_validator("max", mode="before")
    @classmethod
    def _fraction(cls, value: Any) -> Any:
        """`max: 5` most likely means 5%: say how to write it rather than only "<= 1"."""
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 1:
            raise ValueError(f"{value} is over 1: max is a fraction of the rows (write {value / 100:g} for {value:g}%)")
        return value


def _rule(name: str, meaning: str) -> Any:
    most, level = DATA_RULE_DEFAULTS[name]
    return Field(None, description=f"{meaning} Default: {{max: {most:g}, level: {level}}}.")


class DataPolicy(_Section):
    """Data-check thresholds, each {max, level}; a run's policy applies over [tool.tuneform.data_policy], which it may tighten but never relax where the repository says fail."""

    unparsable: RuleLimit | None = _rule(
        "unparsable", "Rows that are not JSON objects or lack or misshape a required field (the job drops them)."
    )
    non_text: RuleLimit | None = _rule("non_text", "Rows whose content is not text: images, numbers, null (the job drops them).")
    missing_assistant: RuleLimit | None = _rule(
        "missing_assistant", "Rows without an assistant turn (completion, output): nothing to learn."
    )
    empty_turns: RuleLimit | None = _rule("empty_turns", "Rows with an empty or whitespace-only turn.")
    role_order: RuleLimit | None = _rule(
        "role_order",
        "Rows whose turns are out of order: assistant first, system not first, two user or assistant turns in a row, a tool turn not after the assistant, a user turn last.",
    )
    encoding: RuleLimit | None = _rule("encoding", "Rows with control characters, U+FFFD or mojibake such as 'Ã©'.")
    duplicates: RuleLimit | None = _rule("duplicates", "Rows repeating an earlier row, ignoring case, spacing and punctuation.")
    truncated: RuleLimit | None = _rule("truncated", "Rows longer than model.max_seq_length.")
    leakage: RuleLimit | None = _rule(
        "leakage",
        "Eval prompts (suites, eval split, eval sources) also found in the training data; a fraction of the eval rows. "
        "Preference pairs leak into the eval split and eval sources by prompt and chosen answer together.",
    )
    identical_answers: RuleLimit | None = _rule(
        "identical_answers", "Preference pairs whose chosen and rejected answers are the same text up to whitespace: nothing to prefer."
    )
    length_bias: RuleLimit | None = _rule(
        "length_bias",
        "Preference pairs whose chosen answer is longer than the rejected one; over the limit, the model may learn that longer is better.",
    )


class DataSpec(_Section):
    """What the model is trained and validated on."""

    train: list[Source] = Field(min_length=1, description="Training sources, concatenated in order.")
    eval: list[Source] = Field(default_factory=list, description="Explicit held-out sources (instead of eval_split).")
    eval_split: float | None = Field(
        None, gt=0, lt=0.5, description="Fraction of train held out for eval loss; default 0.05 when no eval sources are given."
    )
    max_bad_rows: float = Field(
        0.01, ge=0, le=0.5, description="Fraction of malformed rows tolerated (dropped and reported) before the run fails."
    )
    policy: DataPolicy = Field(default_factory=DataPolicy, description="Data-check thresholds for this run (not part of the run key).")

    @model_validator(mode="after")
    def _split(self) -> DataSpec:
        if self.eval and self.eval_split is not None:
            raise FieldError(("eval_split",), "set either eval_split or eval sources, not both")
        if not self.eval and self.eval_split is None:
            object.__setattr__(self, "eval_split", 0.05)
        return self


class MethodSpec(_Section):
    """How weights are updated: LoRA adapters, QLoRA (LoRA on a 4-bit base) or full fine-tuning on
    target text; or LoRA adapters trained on preference pairs (dpo, orpo, kto)."""

    type: Literal["lora", "qlora", "full", "dpo", "orpo", "kto"] = Field(
        "lora",
        description="lora | qlora | full (supervised) | dpo | orpo | kto (preference pairs, LoRA adapters).",
    )
    beta: float | None = Field(
        None,
        gt=0,
        le=100,
        description="dpo/kto: strength of the pull toward the reference model; orpo: weight of the odds-ratio term (default 0.1).",
    )
    precompute_ref_log_probs: bool | None = Field(
        None,
        description="dpo/kto: score the reference model once over the training pairs before training (TRL's "
        "precompute_ref_log_probs) instead of in every step; cheaper over several epochs (default false).",
    )
    r: int | None = Field(None, ge=1, le=1024, description="LoRA rank (default 16).")
    alpha: int | None = Field(None, ge=1, le=4096, description="LoRA alpha (default: equal to r).")
    dropout: float | None = Field(None, ge=0, lt=1, description="LoRA dropout (default 0).")
    target_modules: Literal["all-linear"] | list[str] | None = Field(None, description="'all-linear' (default) or a list of module names.")
    use_rslora: bool | None = Field(None, description="Rank-stabilised LoRA scaling.")

    @model_validator(mode="after")
    def _fill(self) -> MethodSpec:
        if self.type in PREFERENCE_METHODS:
            object.__setattr__(self, "beta", 0.1 if self.beta is None else self.beta)
        elif self.beta is not None:
            raise FieldError(("beta",), f"beta only applies to {', '.join(PREFERENCE_METHODS)}: remove it or set type: dpo")
        if self.precompute_ref_log_probs is not None and self.type not in REFERENCE_METHODS:
            raise FieldError(
                ("precompute_ref_log_probs",),
                f"precompute_ref_log_probs only applies to {', '.join(REFERENCE_METHODS)}, which score a reference model"
                + (": orpo has none, remove it" if self.type == "orpo" else ": remove it or set type: dpo"),
            )
        lora_fields = ("r", "alpha", "dropout", "target_modules", "use_rslora")
        if self.type == "full":
            given = [name for name in lora_fields if getattr(self, name) is not None]
            if given:
                raise FieldError((given[0],), f"{', '.join(given)} only apply to lora and qlora: remove them or set type: lora")
            return self
        if isinstance(self.target_modules, list) and not self.target_modules:
            raise FieldError(("target_modules",), "target_modules is empty: list module names or use all-linear")
        r = self.r or 16
        defaults = {
            "r": r,
            "alpha": self.alpha or r,
            "dropout": 0.0 if self.dropout is None else self.dropout,
            "target_modules": self.target_modules or "all-linear",
            "use_rslora": bool(self.use_rslora),
        }
        for name, value in defaults.items():
            object.__setattr__(self, name, value)
        return self


class TrainingSpec(_Section):
    """Trainer settings; names are Hugging Face TrainingArguments / TRL SFTConfig names."""

    num_train_epochs: float | None = Field(None, gt=0, le=100, description="Passes over the training data (default 1; or set max_steps).")
    max_steps: int | None = Field(None, ge=1, le=10_000_000, description="Optimizer steps; overrides epochs.")
    learning_rate: float = Field(2e-4, gt=0, le=1)
    per_device_train_batch_size: int | Literal["auto"] = Field(
        "auto", description="'auto' picks the largest batch that fits the flavor's memory."
    )
    gradient_accumulation_steps: int = Field(1, ge=1, le=1024)
    packing: bool = Field(True, description="Pack several rows into each sequence (documents kept apart); ignored by dpo/orpo/kto.")
    train_on: Literal["responses", "all"] = Field(
        "responses", description="responses: loss on assistant turns only; all: on every token (supervised methods only)."
    )
    seed: int = Field(3407, ge=0, le=2**32 - 1)
    lr_scheduler_type: Literal[
        "linear", "cosine", "constant", "constant_with_warmup", "cosine_with_restarts", "polynomial", "inverse_sqrt"
    ] = "linear"
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="Fraction of steps to warm the learning rate up over.")
    warmup_steps: int = Field(0, ge=0, description="Steps to warm the learning rate up over (instead of warmup_ratio).")
    weight_decay: float = Field(0.0, ge=0, le=1)
    max_grad_norm: float = Field(1.0, ge=0)
    optim: str = Field("auto", description="Optimizer name as in TrainingArguments; auto picks a fused AdamW.")
    gradient_checkpointing: bool | Literal["auto"] = Field("auto", description="auto: only when memory requires it.")
    precision: Literal["auto", "bf16", "fp16", "fp32"] = Field(
        "auto", description="auto: bf16 where the GPU has it, fp16 on T4, fp32 on CPU."
    )
    logging_steps: int = Field(1, ge=1)
    report_to: Tracker = Field(
        "none",
        description="Experiment tracker the trainer logs to: none, trackio, wandb, mlflow or tensorboard (event files kept in the version). Not part of the run key; credentials are job secrets named in [tool.tuneform.tracker_secrets].",
    )

    @field_validator("per_device_train_batch_size")
    @classmethod
    def _batch(cls, value: int | str) -> int | str:
        if isinstance(value, int) and not 1 <= value <= 4096:
            raise ValueError("per_device_train_batch_size must be between 1 and 4096, or auto")
        return value

    @model_validator(mode="after")
    def _length(self) -> TrainingSpec:
        if self.num_train_epochs is not None and self.max_steps is not None:
            raise FieldError(("max_steps",), "set either num_train_epochs or max_steps, not both")
        if self.num_train_epochs is None and self.max_steps is None:
            object.__setattr__(self, "num_train_epochs", 1.0)
        if self.warmup_ratio and self.warmup_steps:
            raise FieldError(("warmup_steps",), "set either warmup_ratio or warmup_steps, not both")
        return self


class ComputeSpec(_Section):
    """Where and how the job runs; not part of the run key."""

    backend: Literal["local", "hf-jobs"] | None = Field(None, description="Default: [tool.tuneform] default_backend, else local.")
    flavor: str = Field("auto", description="HF Jobs hardware flavor, or auto for the cheapest that fits.")
    engine: Literal["auto", "unsloth", "trl"] = Field("auto", description="auto: unsloth on a CUDA GPU when installed, else trl.")
    attention: Literal["auto", "per-document"] = Field(
        "auto",
        description="How packed rows are attended: auto, one varlen flash call per row where the GPU allows (Ampere or newer); per-document, documents apart without that call (slower; the same result): unsloth one call per document, trl one SDPA call over a dense document mask.",
    )
    compile: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Unsloth's compilation of each decoder block (on) or not (off): faster steps after a warm-up of about half a minute. auto: the plan chooses by the job's tokens: for LFM2 below 6.4M, nothing compiled at all (a 2 s warm-up, Unsloth's fused kernels); otherwise the blocks from 6M training tokens, where the warm-up pays back, and off below (docs/calibration.md, runs 19-24 and 29).",
    )
    # The schema says what a user may write (90m, 2h, seconds), not the parsed int.
    timeout: Annotated[
        int | Literal["auto"],
        WithJsonSchema(
            {
                "anyOf": [
                    {"const": "auto"},
                    {"type": "number", "minimum": 60, "maximum": 7 * 86400},
                    {"type": "string", "pattern": _DURATION.pattern},
                ]
            }
        ),
    ] = Field("auto", description="Job time limit (90m, 2h, or seconds); auto: from the estimate with a margin.")
    image: str | None = Field(None, description="Container image for hf-jobs (default: a pinned image with Unsloth).")

    @field_validator("timeout", mode="before")
    @classmethod
    def _timeout(cls, value: Any) -> Any:
        if value == "auto":
            return value
        if isinstance(value, (str, int, float)):
            return parse_duration(value)
        return value


# GGUF quantizations an export may ask for (`gguf:<quant>`): llama.cpp's converter writes the
# first ones itself; the k-quants and legacy quants are made from an f16 file by llama-quantize.
# The i-quants are left out: they need an importance matrix computed on calibration text.
GGUF_CONVERTED = ("f16", "bf16", "q8_0")
GGUF_QUANTIZED = ("q2_k", "q3_k_s", "q3_k_m", "q3_k_l", "q4_0", "q4_1", "q4_k_s", "q4_k_m", "q5_0", "q5_1", "q5_k_s", "q5_k_m", "q6_k")
GGUF_PREFIX = "gguf:"
# Where the exports sit in a version (README: Exports): the adapter, else the merged weights, at
# the root; merged weights beside an adapter in merged/; GGUF files in gguf/.
MERGED_FOLDER = "merged"
GGUF_FOLDER = "gguf"
_EXPORTS = ("adapter", "merged")
_SAVE_DOC = (
    "What a version publishes, one value or a list: adapter (the LoRA weights; default for lora/qlora), "
    "merged (16-bit weights with the adapter folded in; the only choice for full), "
    "gguf:<quant> (llama.cpp file: f16, bf16, q8_0, q4_k_m, ...). The root of the version holds the adapter, "
    "else the merged weights; merged/ and gguf/ hold the others (README: Exports)."
)


def gguf_file(quant: str) -> str:
    """The file name of one quantization, as llama.cpp's `-hf repo:Q4_K_M` and Ollama's
    `hf.co/repo:Q4_K_M` pick files: the quantization in capitals before `.gguf`."""
    return f"model-{quant.upper()}.gguf"


def _export_order(name: str) -> tuple[int, int]:
    """adapter, merged, then the GGUF files from the largest quantization to the smallest."""
    if name in _EXPORTS:
        return (_EXPORTS.index(name), 0)
    quant = name[len(GGUF_PREFIX) :]
    order = (*GGUF_CONVERTED, *reversed(GGUF_QUANTIZED))
    return (len(_EXPORTS), order.index(quant))


def _check_export(value: Any) -> str:
    """One `output.save` entry, lower-cased; ValueError naming the accepted spellings."""
    if not isinstance(value, str):
        raise ValueError(f"expected adapter, merged or gguf:<quant>, got {_kind_of(value)}")
    name = value.strip().lower()
    if name in _EXPORTS:
        return name
    quants = (*GGUF_CONVERTED, *GGUF_QUANTIZED)
    if name == "gguf" or name == GGUF_PREFIX:
        raise ValueError(f"'{value}' needs a quantization: write gguf:q4_k_m (or one of {', '.join(quants)})")
    if name.startswith(GGUF_PREFIX):
        quant = name[len(GGUF_PREFIX) :]
        if quant in quants:
            return name
        hint = did_you_mean(quant, quants)
        raise ValueError(f"'{quant}' is not a GGUF quantization tuneform makes{hint or ': use one of ' + ', '.join(quants)}")
    choices = [*_EXPORTS, *(GGUF_PREFIX + q for q in quants)]
    hint = did_you_mean(name, choices)
    raise ValueError(f"'{value}' is not an export{hint or ': use adapter, merged or gguf:<quant> (gguf:q4_k_m)'}")


class OutputSpec(_Section):
    """Where trained versions are published; only `save` enters the run key."""

    repo: str | None = Field(None, pattern=_REPO_ID, description="Hub model repo namespace/name (default: <namespace>/<name>).")
    private: bool = Field(True, description="Create the model repo private.")
    # Written as one value or a list; held as a tuple in one order without repeats, so that
    # [merged, adapter] and [adapter, merged] are one run key (canonical writes a lone value bare).
    save: Annotated[
        tuple[str, ...] | None,
        WithJsonSchema(
            {
                "anyOf": [
                    {"type": "string", "pattern": _SAVE_PATTERN},
                    {"type": "array", "items": {"type": "string", "pattern": _SAVE_PATTERN}, "minItems": 1},
                ]
            }
        ),
    ] = Field(None, description=_SAVE_DOC)

    @field_validator("save", mode="before")
    @classmethod
    def _save(cls, value: Any) -> Any:
        if value is None:
            return None
        items = value if isinstance(value, (list, tuple)) else [value]
        if not items:
            raise ValueError("output.save is an empty list: write adapter, merged or gguf:<quant>, or leave it out")
        names = []
        for i, item in enumerate(items):
            try:
                names.append(_check_export(item))
            except ValueError as exc:
                raise FieldError((i,) if isinstance(value, (list, tuple)) else (), str(exc)) from None
        return tuple(sorted(set(names), key=_export_order))

    @property
    def exports(self) -> tuple[str, ...]:
        """What is saved, in canonical order (filled by RunSpec: never empty there)."""
        return self.save or ("adapter",)

    @property
    def root(self) -> Literal["adapter", "merged"]:
        """What sits at the version's root, the model its evals score: the adapter when it is
        saved, else the merged weights."""
        return "adapter" if "adapter" in self.exports else "merged"

    @property
    def merged_folder(self) -> bool:
        """Merged weights saved beside the adapter, in merged/ (alone, they sit at the root)."""
        return self.root == "adapter" and "merged" in self.exports

    @property
    def gguf(self) -> tuple[str, ...]:
        """The GGUF quantizations asked for (q4_k_m, ...), largest first."""
        return tuple(name[len(GGUF_PREFIX) :] for name in self.exports if name.startswith(GGUF_PREFIX))

    def paths(self) -> dict[str, str]:
        """Each export -> its folder or file in the version ('' is the root), in save order."""
        paths: dict[str, str] = {self.root: ""}
        if self.merged_folder:
            paths["merged"] = MERGED_FOLDER
        for quant in self.gguf:
            paths[GGUF_PREFIX + quant] = f"{GGUF_FOLDER}/{gguf_file(quant)}"
        return paths

    def canonical_save(self) -> str | list[str]:
        """`save` as the run key sees it: a lone export bare, as the key has always had it
        (`save: adapter` keeps the key it had before lists existed), several as a list."""
        exports = self.exports
        return exports[0] if len(exports) == 1 else list(exports)


class EvalSpec(_Section):
    """An eval suite to score the model with, and the gates a new version must pass."""

    suite: str = Field(min_length=1, description="Repository-relative path of an eval suite YAML file.")
    # A bare number means '>= number' (see _gate); the schema accepts both forms.
    gate: Annotated[
        dict[str, str],
        WithJsonSchema(
            {
                "type": "object",
                "additionalProperties": {
                    "anyOf": [
                        {"type": "string", "pattern": _GATE.pattern},
                        {"type": "number"},
                    ]
                },
            }
        ),
    ] = Field(default_factory=dict, description="metric -> condition, e.g. exact_match: '>= 0.85'.")

    @field_validator("suite")
    @classmethod
    def _relative(cls, value: str) -> str:
        return check_relative_path(value)

    @field_validator("gate", mode="before")
    @classmethod
    def _gate(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        out = {}
        for metric, condition in value.items():
            if isinstance(condition, (int, float)) and not isinstance(condition, bool):
                condition = f">= {condition}"
            if not isinstance(condition, str) or not _GATE.match(condition):
                raise FieldError((metric,), f"gate {metric}: '{condition}' is not a condition like '>= 0.85' or '< 2.5'")
            out[metric] = condition.strip()
        return out


class BudgetSpec(_Section):
    """Spending cap for one run."""

    max_usd: float | None = Field(None, gt=0, le=1_000_000, description="Refuse to plan or apply when the estimate exceeds this.")


class RunSpec(_Section):
    """A tuneform run file, version 1."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="tuneform run")

    name: str | None = Field(None, pattern=_SLUG, description="Slug naming the run; default: the file name.")
    model: ModelSpec
    data: DataSpec
    method: MethodSpec = Field(default_factory=MethodSpec)
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    compute: ComputeSpec = Field(default_factory=ComputeSpec)
    output: OutputSpec = Field(default_factory=OutputSpec)
    evals: list[EvalSpec] = Field(default_factory=list)
    budget: BudgetSpec = Field(default_factory=BudgetSpec)

    @model_validator(mode="after")
    def _cross(self) -> RunSpec:
        if self.method.type == "qlora" and not self.model.load_in_4bit:
            if "load_in_4bit" in self.model.model_fields_set:
                raise FieldError(
                    ("model", "load_in_4bit"),
                    "model.load_in_4bit: false with method qlora, which is LoRA on a 4-bit base: remove load_in_4bit or use method.type lora",
                )
            object.__setattr__(self, "model", self.model.model_copy(update={"load_in_4bit": True}))
        elif self.model.load_in_4bit and self.method.type != "qlora":
            raise FieldError(
                ("model", "load_in_4bit"),
                f"model.load_in_4bit with method {self.method.type}: use method.type qlora (LoRA on a 4-bit base)",
            )
        self._check_preference()
        given = self.output.save or ()
        if self.method.type == "full" and "adapter" in given:
            raise FieldError(("output", "save"), "output.save adapter with method full: a full fine-tune has no adapter, use save: merged")
        # The root export (adapter for LoRA, merged weights for full) is always saved: the evals
        # score it. So `gguf:q8_0` alone means [adapter, gguf:q8_0] and is the same key.
        root = "merged" if self.method.type == "full" else "adapter"
        save = given if "adapter" in given or "merged" in given else tuple(sorted((root, *given), key=_export_order))
        if save != self.output.save:
            object.__setattr__(self, "output", self.output.model_copy(update={"save": save}))
        return self

    def _check_preference(self) -> None:
        """Preference methods train on preference rows only, and only they do: a pair read as a
        chat, or a chat read as a pair, would train something other than what was meant."""
        preference = self.method.type in PREFERENCE_METHODS
        # packing is left at its default in most files and means nothing for pairs: it is ignored
        # (the manifest's settings say packing false); train_on all would put the prompt under the
        # loss, which no preference objective does, so it is refused.
        if preference and self.training.train_on != "responses":
            raise FieldError(
                ("training", "train_on"),
                f"train_on {self.training.train_on} with method {self.method.type}: a preference method scores the answers only; remove train_on",
            )
        for side in ("train", "eval"):
            for i, src in enumerate(getattr(self.data, side)):
                if preference and src.format != "preference":
                    raise FieldError(
                        ("data", side, i, "format"),
                        f"method {self.method.type} learns from pairs of answers but this source's format is {src.format}: "
                        "give rows {prompt, chosen, rejected} with format: preference",
                    )
                if not preference and src.format == "preference":
                    raise FieldError(
                        ("data", side, i, "format"),
                        f"format preference holds pairs of answers, which method {self.method.type} cannot train on: "
                        "set method.type: dpo (or orpo, kto)",
                    )


MAX_PATH = 4096  # Linux's PATH_MAX, the most generous of the systems a repository is checked out on


def check_relative_path(value: str) -> str:
    """Reject paths that could leave the repository; run files come from untrusted PRs. One longer
    than any system accepts is refused here too, before it reaches the OS (and every message)."""
    if len(value) > MAX_PATH:
        raise ValueError(f"{shown(value)} is longer than a path may be (at most {MAX_PATH:,} characters): use a shorter path")
    if value.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", value):
        raise ValueError(f"'{value}' is absolute: use a path relative to the repository root")
    parts = re.split(r"[\\/]+", value)
    if ".." in parts:
        raise ValueError(f"'{value}' leaves its folder with '..': use a path inside the repository")
    if "\x00" in value:
        raise ValueError("path contains a NUL byte")
    return value


def json_schema() -> dict[str, Any]:
    """JSON Schema of a run file, for editors (SCHEMA_FILE) and `tuneform schema`."""
    schema = RunSpec.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


# ---------------------------------------------------------------------------------------------
# Loading


@dataclass
class LoadedRun:
    """A run file as read: the validated spec (None when invalid), its problems and positions."""

    path: str
    spec: RunSpec | None
    name: str
    problems: list[Problem] = field(default_factory=list)
    document: yamlsafe.Document | None = None

    @property
    def ok(self) -> bool:
        return self.spec is not None and not any(p.severity == "error" for p in self.problems)

    def locate(self, *path: str | int) -> tuple[int | None, int | None]:
        return self.document.locate(tuple(path)) if self.document else (None, None)


def default_name(path: str) -> str:
    stem = Path(path).name
    for suffix in (".yaml", ".yml"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
    return stem


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names valid at a location, for did-you-mean suggestions on unknown keys."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(current, "model_fields", None)
        if fields is None or part not in fields:
            return list(fields) if fields else []
        annotation = fields[part].annotation
        current = _model_in(annotation)
        if current is None:
            return []
    return list(getattr(current, "model_fields", {}))


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _data_path(data: Any, loc: tuple[Any, ...], missing: bool = False) -> tuple[str | int, ...]:
    """Pydantic's error location minus union tags and validator names: a path into the data.

    `missing`: the error is a required key that is absent, so its name is kept at the end."""
    path: list[str | int] = []
    current = data
    for i, part in enumerate(loc):
        if (isinstance(current, dict) and part in current) or (
            isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current)
        ):
            path.append(part)
            current = current[part]
        elif missing and i == len(loc) - 1 and isinstance(part, str) and isinstance(current, dict):
            path.append(part)  # a missing key: keep it so the message can name it
    return tuple(path)


def _message(error: Mapping[str, Any], path: tuple[str | int, ...], model_loc: tuple[Any, ...]) -> str:
    kind = error["type"]
    key = path[-1] if path else None
    if kind == "extra_forbidden":
        choices = _fields_at(RunSpec, tuple(p for p in model_loc[:-1] if isinstance(p, (str, int))))
        return f"unknown key '{key}'{did_you_mean(str(key), choices)}"
    if kind == "missing":
        return f"missing required key '{key}'"
    if kind in ("model_type", "model_attributes_type"):
        fields = _fields_at(RunSpec, tuple(p for p in model_loc if isinstance(p, (str, int))))
        shown = f" ({', '.join(fields[:4])}{', ...' if len(fields) > 4 else ''})" if fields else ""
        return f"expected a mapping of keys{shown}, got {_kind_of(error.get('input'))}"
    if kind == "string_type" and isinstance(error.get("input"), (int, float)) and not isinstance(error.get("input"), bool):
        return f"expected text, but YAML read a number ({error['input']!r}): put the value in quotes"
    if kind == "dict_type":
        return f"expected a mapping (name: value, ...), got {_kind_of(error.get('input'))}"
    msg = error["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        got = error.get("input")
        return f"'{got}' is not allowed here: expected {expected}{_literal_hint(got, expected)}"
    if kind == "string_pattern_mismatch" and key in ("repo", "dataset"):
        return f"'{error.get('input')}' is not a Hub repo id: use namespace/name"
    if kind == "string_pattern_mismatch" and key == "name":
        return f"'{error.get('input')}' is not a slug: use lowercase letters, digits, '-', '_' or '.'"
    return msg[0].lower() + msg[1:] if msg else kind


def _kind_of(value: Any) -> str:
    if value is None:
        return "nothing (an empty value)"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__} ({value!r})" if isinstance(value, (str, int, float, bool)) else type(value).__name__


def _literal_hint(got: Any, expected: str) -> str:
    options = re.findall(r"'([^']*)'", expected)
    if isinstance(got, str) and options:
        close = did_you_mean(got, options)
        if close.startswith(": did"):
            return f" ({close[2:]})"
    return ""


def dotted(path: tuple[str | int, ...]) -> str | None:
    """('data', 'train', 0, 'path') -> 'data.train[0].path'."""
    text = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")
    return text or None


def problems_from_validation(exc: ValidationError, data: Any, document: yamlsafe.Document) -> list[Problem]:
    """Turn pydantic errors into located problems with a fix in the message."""
    problems: list[Problem] = []
    seen: set[tuple[Any, ...]] = set()
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        path = _data_path(data, loc, missing=error["type"] == "missing")
        cause = error.get("ctx", {}).get("error")
        if isinstance(cause, FieldError):  # a validator that names the key it is about
            path = _data_path(data, loc + cause.where, missing=True)
        message = _message(error, path, loc)
        if (path, message) in seen:
            continue
        seen.add((path, message))
        line, column = document.locate(path)
        problems.append(Problem(message, line, column, dotted(path)))
    return problems


class RunFileError(TuneformError):
    """A run file a command was pointed at is missing, or too broken to act on (validate lists
    every problem of a broken one)."""


def load_valid_run(path: Path, shown: str) -> tuple[LoadedRun, RunSpec]:
    """A run file that must exist and pass the schema for a command to act on it, and its spec;
    RunFileError otherwise. `shown` is how the path is named in the error."""
    if not path.is_file():
        raise RunFileError(f"no run file {shown}", fix="pass a run file or the name of one in runs/")
    loaded = load_run_text(path.read_bytes(), shown)
    if loaded.spec is None:
        raise RunFileError(f"{shown}: invalid run file", fix=f"tuneform validate {shown} says why")
    return loaded, loaded.spec


def load_run_text(text: str | bytes, path: str) -> LoadedRun:
    """Parse and validate a run file's text (schema only; see plan/validate.py for the rest)."""
    name = default_name(path)
    try:
        document = yamlsafe.load(text)
    except yamlsafe.YamlError as exc:
        return LoadedRun(path, None, name, [Problem(exc.message, exc.line, exc.column, dotted(exc.path))])
    data = document.data
    if data is None:
        return LoadedRun(path, None, name, [Problem("the file is empty: a run needs at least model and data", 1, 1)], document)
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else f"a single value ({type(data).__name__})"
        return LoadedRun(
            path, None, name, [Problem(f"the file holds {kind}: a run file is a mapping of keys (model:, data:, ...)", 1, 1)], document
        )
    try:
        spec = RunSpec.model_validate(data)
    except ValidationError as exc:
        return LoadedRun(path, None, name, problems_from_validation(exc, data, document), document)
    if spec.name is None and not re.match(_SLUG, name):
        line, col = document.locate(())
        return LoadedRun(
            path,
            None,
            name,
            [Problem(f"the file name '{name}' is not a slug: add name: with lowercase letters, digits and '-'", line, col, "name")],
            document,
        )
    return LoadedRun(path, spec, spec.name or name, [], document)


# ---------------------------------------------------------------------------------------------
# Canonical form and run key


@dataclass(frozen=True)
class Resolved:
    """Facts from outside the file that enter the key: content hashes and resolved revisions."""

    model_revision: str
    model_content: str | None  # sha256 of a local model directory's files
    sources: tuple[dict[str, Any], ...]  # per train source then eval source: {"sha256"} or {"revision"}


def canonical(spec: RunSpec, resolved: Resolved) -> dict[str, Any]:
    """Everything that determines the trained weights, with defaults filled and nothing else."""
    model = spec.model.model_dump(mode="json")
    model["revision"] = resolved.model_revision
    if spec.model.is_local:
        model["id"] = None  # a local model is known by its content, not by where it sits
        model["content_sha256"] = resolved.model_content
    sources = iter(resolved.sources)

    def source(src: LocalSource | HubSource) -> dict[str, Any]:
        out = src.model_dump(mode="json")
        out.update(next(sources))
        out.pop("path", None)  # a moved file with the same bytes trains the same model
        return out

    # data.policy only judges the data (see data/check.py), so it is left out: a stricter or
    # looser policy trains the same model.
    data = {
        "train": [source(s) for s in spec.data.train],
        "eval": [source(s) for s in spec.data.eval],
        "eval_split": spec.data.eval_split,
    }
    return {
        "training_format": TRAINING_FORMAT,
        "model": model,
        "data": data,
        "method": _keyed(spec.method),
        # report_to only says where the curves go: a tracked run trains the same model, so it is
        # left out (and run files written before it existed keep their keys).
        "training": spec.training.model_dump(mode="json", exclude={"report_to"}),
        "output": {"save": spec.output.canonical_save()},
    }


KEY_LATER_FIELDS = {"beta", "precompute_ref_log_probs"}
"""Fields added after run keys were first published. They enter the canonical form only when set,
so a run file that does not use them keeps the key, and so the version, it always had."""


def _keyed(section: BaseModel) -> dict[str, Any]:
    out = section.model_dump(mode="json")
    return {k: v for k, v in out.items() if not (k in KEY_LATER_FIELDS and v is None)}


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def run_key(spec: RunSpec, resolved: Resolved) -> str:
    """sha256 of the canonical form: same key, same model."""
    return hashlib.sha256(canonical_json(canonical(spec, resolved)).encode("utf-8")).hexdigest()
