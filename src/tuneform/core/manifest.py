"""The manifest: what a trained version records about itself, the lineage record of a model.

The job writes it (`manifest.json` in a local version folder, `tuneform/manifest.json` on a Hub
tag); registries, calibrate, the reports, the GitHub comments and `tuneform history` read it.
It lives in `core` because readers sit in every layer from `estimate` up.

Read leniently, write strictly: `Manifest.read` accepts a manifest written by any earlier
tuneform (unknown keys are dropped, missing sections take their defaults), so versions already
published stay readable; building one in code forbids unknown fields, so a typo in the job is an
error, not a silently missing fact. `manifest_format` says which shape wrote it:

    1  tuneform 0.1.0: no `lineage`, `git` without `run_file`
    2  adds `lineage` (data and local model hashes, resolved model revision, GPU) and
       `git.run_file` (whether the run file was committed unchanged)
    3  adds `lineage.parent` (the tuneform version a run started from) and `exports` (each
       export of output.save: where it sits in the version, its size)
"""

from __future__ import annotations

import json
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, model_validator

MANIFEST_FORMAT = 3
HUB_MANIFEST = "tuneform/manifest.json"  # where a version on the Hub keeps it (registry/hub.py)
PASSED = "passed"
FAILED_GATES = "failed_gates"

# A score as the job writes it: a float, or "nan"/"inf" (JSON has no such numbers), or None.
Score = float | str | None


class Record(BaseModel):
    """Base of a published contract (the manifest and its sections, a plan entry): strict when
    built, lenient when read with `read` (keys a later or earlier tuneform wrote are dropped, at
    every level)."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _drop_unknown(cls, data: Any, info: ValidationInfo) -> Any:
        if isinstance(data, dict) and info.context and info.context.get("lenient"):
            return {key: value for key, value in data.items() if key in cls.model_fields}
        return data

    @classmethod
    def read(cls, data: Any) -> Self:
        """From parsed JSON written by any tuneform; ValueError (pydantic's) when it is not one."""
        return cls.model_validate(data, context={"lenient": True})


class GitFacts(Record):
    """Where the run file came from. `dirty` is True unless the run file was committed unchanged
    and no tracked file differed from `commit`; `run_file` says which of the first two held."""

    commit: str | None = None
    dirty: bool | None = None
    pr: int | None = None
    run_file: str | None = None  # "committed", "modified", "untracked"; None: not a git repository

    @property
    def clean(self) -> bool | None:
        """True when the version is exactly `commit`'s run file. None when unknown: outside git,
        or in a format-1 manifest, whose `dirty` looked at tracked files only (a run file git did
        not track was recorded as `dirty: false`)."""
        return None if self.dirty is None or self.run_file is None else not self.dirty


class FileHash(Record):
    """One data file the job read, by repository path, and the sha256 of its bytes."""

    path: str
    sha256: str


class ParentVersion(Record):
    """The tuneform version a run started from (`model.revision: run-<key12>` of an output repo):
    a DPO run's SFT version. Its weights were the run's base model (an adapter version merged into
    its own base first), and the reference of a preference objective."""

    repo: str
    run_key: str
    save: str | None = None  # what the parent published (its output.save, comma-separated: adapter, merged, gguf:<quant>)


class Lineage(Record):
    """What exactly trained the version, beyond the run file: content, revisions, hardware."""

    model_id: str
    model_revision: str | None = None  # a Hub model's commit as resolved at plan time
    model_sha256: str | None = None  # a local model folder: names and bytes of its files
    data: list[FileHash] = Field(default_factory=list)
    datasets: dict[str, str] = Field(default_factory=dict)  # Hub dataset id -> revision
    gpu: str | None = None  # the CUDA device name; None on CPU
    gpu_count: int = 0
    parent: ParentVersion | None = None  # None: the run started from model.id itself


class DataCounts(Record):
    train_rows: int = 0
    eval_rows: int = 0
    bad_rows: int = 0
    train_tokens: int | None = None


class Training(Record):
    """What the training step measured (None in a manifest of an `evaluate` job)."""

    seconds: float
    tokens_per_second: float
    steady_tokens_per_second: float | None = None
    warmup_seconds: float | None = None  # the loop's seconds beyond its tokens at the steady rate
    device: str | None = None
    steps: int
    train_loss: float | None = None  # the mean over the run, as the trainer reports it; the final loss is loss_history's last
    loss_history: list[tuple[int, float]] = Field(default_factory=list)
    peak_memory_gb: float | None = None
    peak_memory_kind: str | None = None
    tokens: int | None = None
    trained_tokens: int | None = None
    settings: dict[str, Any] = Field(default_factory=dict)
    resumed_from_step: int | None = None


class Tracking(Record):
    """Where the training curves went beyond the manifest (training.report_to)."""

    report_to: str
    url: str | None = None  # the tracked run's page (wandb, mlflow, trackio), when the tracker gave one
    # Tracker files published with the version (tensorboard's event files), relative to the folder
    # the reports are in: the version folder (local registry), tuneform/ (Hub).
    files: list[str] = Field(default_factory=list)


class Cost(Record):
    estimated_usd: float | None = None
    actual_usd: float | None = None
    estimated_seconds: float | None = None
    job_seconds: float | None = None
    job_id: str | None = None
    billed_minutes: int | None = None
    usd_per_hour: float | None = None


class EstimateRecord(Record):
    """What the plan predicted, kept beside `training`'s measurements for `tuneform calibrate`."""

    flavor: str | None = None
    engine: str | None = None
    batch_size: int | None = None
    gradient_checkpointing: bool | None = None
    tokens_per_second: float | None = None
    peak_vram_gb: float | None = None
    breakdown: dict[str, dict[str, float]] = Field(default_factory=dict)
    calibration: dict[str, Any] = Field(default_factory=dict)


class PlannedEstimate(Record):
    """The plan's whole estimate (estimate/estimator.py `Estimate.as_json`, the fields in its
    order: the plan prints them so), as a plan entry shows it and the bundle carries it to the job."""

    tokens: int
    seconds: int | float
    usd: float
    peak_vram_gb: float
    flavor: str
    memory_gb: float
    fits: bool
    engine: str
    dtype: str
    batch_size: int | None
    gradient_checkpointing: bool | None
    flops: int | float
    tokens_per_second: float
    mfu: float | None
    billed_minutes: int
    breakdown: dict[str, dict[str, float]]
    problems: list[str]
    calibration: dict[str, Any]
    # Added in schema 1 (defaults: a bundle an earlier tuneform wrote has none): what scoring
    # costs within the job, and what a scoring-only `evaluate` job costs.
    eval_seconds: int | float = 0
    eval_usd: float = 0.0
    evaluate_seconds: int | float = 0
    evaluate_usd: float = 0.0
    # What Unsloth compiles (estimate/estimator.py compile_mode), decided by the plan and applied
    # by the job; None for the trl engine, CPUs and bundles written before it.
    compile: str | None = None

    def recorded(self) -> EstimateRecord:
        """The part a manifest keeps."""
        return EstimateRecord.model_validate(self.model_dump(include=set(EstimateRecord.model_fields)))


class EvalRow(Record):
    metric: str
    better: str = "higher"
    base: Score = None
    previous: Score = None
    new: Score = None
    delta_base: Score = None
    delta_previous: Score = None


class Gate(Record):
    metric: str
    op: str | None = None
    threshold: float | None = None
    condition: str
    value: Score = None
    passed: bool


class Miss(Record):
    suite: str = ""
    id: str = ""
    expected: Any = None
    prediction: str | None = None
    base_prediction: str | None = None
    scores: dict[str, Score] = Field(default_factory=dict)


class EvalTable(Record):
    rows: list[EvalRow] = Field(default_factory=list)
    gates: list[Gate] = Field(default_factory=list)
    passed: bool = True
    misses: list[Miss] = Field(default_factory=list)


class Evals(Record):
    table: EvalTable = Field(default_factory=EvalTable)
    gates: list[Gate] = Field(default_factory=list)
    previous: str | None = None  # run key of the version this one replaced
    scores: dict[str, Any] = Field(default_factory=dict)  # per model: every suite's predictions

    def headline(self) -> dict[str, float]:
        """The new version's finite score per metric."""
        return {row.metric: row.new for row in self.table.rows if isinstance(row.new, float)}


class ExportRecord(Record):
    """One export of a version (output.save): its name (adapter, merged, gguf:q4_k_m), where it
    sits in the model repo ('' is the root) and its size on disk."""

    name: str
    path: str
    bytes: int


class Manifest(Record):
    """One trained version. `spec` stays plain data: it is the run as that tuneform resolved it,
    and a later run-file schema must not reject an old version."""

    manifest_format: int = MANIFEST_FORMAT
    run_key: str = ""  # absent only in hand-made fragments; every job writes it
    name: str = "run"
    path: str = ""
    output_repo: str = ""
    status: str | None = None  # PASSED or FAILED_GATES; a registry reads a missing one as PASSED
    created: str | None = None
    backend: str | None = None
    flavor: str | None = None
    git: GitFacts = Field(default_factory=GitFacts)
    lineage: Lineage | None = None  # None in manifests of format 1
    spec: dict[str, Any] = Field(default_factory=dict)
    eval_hash: str | None = None
    data: DataCounts | None = None
    training: Training | None = None
    tracking: Tracking | None = None  # None: not tracked (report_to none), or an evaluate job
    cost: Cost | None = None
    estimate: EstimateRecord | None = None
    evals: Evals = Field(default_factory=Evals)
    versions: dict[str, str] = Field(default_factory=dict)
    python: str | None = None
    exports: list[ExportRecord] = Field(default_factory=list)  # empty before format 3

    @classmethod
    def read_text(cls, text: str) -> Manifest:
        """A manifest from its JSON text; ValueError (pydantic's or json's) when it is not one."""
        return cls.read(json.loads(text))

    def to_json(self) -> dict[str, Any]:
        """Plain data, as manifest.json holds it. Python mode, not pydantic's JSON mode, which
        would turn a NaN loss into null: the JSON writer decides (report.py writes "nan")."""
        return self.model_dump()

    def text(self) -> str:
        """manifest.json's text."""
        return json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n"

    @property
    def passed(self) -> bool:
        return self.status == PASSED

    @property
    def model_id(self) -> str | None:
        """The base model as the run file named it (an id on the Hub, or a local folder)."""
        model = self.spec.get("model")
        value = model.get("id") if isinstance(model, dict) else None
        return value if isinstance(value, str) else None

    @property
    def hub_model_id(self) -> str | None:
        """The base model's Hub id; None when the run named a local folder (`.` or `/` first, the
        run-file contract), which only the machine that trained it could read."""
        base = self.model_id
        return None if base is None or base.startswith((".", "/")) else base

    @property
    def model_revision(self) -> str | None:
        """The base model's revision: the resolved commit when lineage has it, else as written."""
        if self.lineage and self.lineage.model_revision:
            return self.lineage.model_revision
        model = self.spec.get("model")
        value = model.get("revision") if isinstance(model, dict) else None
        return value if isinstance(value, str) else None

    @property
    def saves(self) -> tuple[str, ...]:
        """spec.output.save: what the version holds (adapter, merged, gguf:<quant>). Manifests
        written before it took a list hold one name."""
        output = self.spec.get("output")
        value = output.get("save") if isinstance(output, dict) else None
        if isinstance(value, str):
            return (value,)
        return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()
