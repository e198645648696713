"""Recalibrate the estimator from the repository's own finished runs.

The estimator's constants were measured on one H200 with synthetic chat data (docs/calibration.md).
A repository's models, data and GPUs differ, and every trained version's manifest already keeps
both sides: what the plan estimated (`estimate`, with the repository factors it applied) and what
the job measured (`training`: the steady tokens/s after warm-up, torch's peak memory, the GPU's
name). This module turns those into one factor per GPU model:

- speed: the geometric mean of measured over estimated training rate (a ratio, so a run twice as
  fast and one half as fast cancel out);
- memory: the largest measured over estimated peak (memory decides whether a run fits, so the
  factor follows the worst case, not the typical one).

Each ratio is taken against the estimate without the factors that were applied to it, so running
`tuneform calibrate` again after pasting its table does not compound. A version is left out, with
the reason, when its manifest predates these fields, when it trained on another GPU than the one
it was planned for (a bench or a local run on a GPU), or with another batch than the estimate's.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tuneform.core.manifest import Manifest
from tuneform.estimate.catalog import FLAVORS
from tuneform.runfile.settings import FACTOR_MAX, FACTOR_MIN
from tuneform.runfile.spec import LoadedRun, RunFileError, load_run_text


@dataclass(frozen=True)
class Record:
    """One trained version: estimated and measured, the repository factors taken out."""

    run: str
    version: str
    gpu: str  # the flavor's GPU model, or "cpu"
    device: str  # what the job saw ("NVIDIA H200", "cpu")
    estimated_tokens_per_second: float
    measured_tokens_per_second: float
    steady: bool  # measured after warm-up (else the whole training loop's rate)
    estimated_peak_gb: float | None  # torch's allocations, GPU runs only
    measured_peak_gb: float | None

    @property
    def speed(self) -> float:
        return self.measured_tokens_per_second / self.estimated_tokens_per_second

    @property
    def memory(self) -> float | None:
        if self.estimated_peak_gb is None or self.measured_peak_gb is None or self.estimated_peak_gb <= 0:
            return None
        return self.measured_peak_gb / self.estimated_peak_gb


@dataclass(frozen=True)
class Skipped:
    run: str
    version: str
    reason: str


@dataclass(frozen=True)
class GpuFactors:
    gpu: str
    runs: int
    speed: float
    memory: float | None  # None when no run on this GPU measured GPU memory


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) else None


def _ran_on(gpu: str, device: str) -> bool:
    """Whether the job's device is the flavor's GPU model ("L4" is not "NVIDIA L40S")."""
    if gpu == "cpu":
        return device == "cpu"
    return re.search(rf"(?<![A-Za-z0-9]){re.escape(gpu)}(?![A-Za-z0-9])", device, re.IGNORECASE) is not None


def record_of(run: str, manifest: Manifest) -> Record | Skipped | None:
    """The calibration record of one version's manifest; None for a version that trained nothing."""
    version = f"run-{manifest.run_key[:12]}"
    training, estimate = manifest.training, manifest.estimate
    if training is None:
        return None
    device = training.device
    if estimate is None or device is None:
        return Skipped(run, version, "no estimate or device in its manifest (trained before tuneform recorded them)")
    applied = estimate.calibration
    flavor = FLAVORS.get(str(estimate.flavor))
    gpu = applied.get("gpu") or (flavor.gpu_model or "cpu" if flavor else None)
    if not gpu:
        return Skipped(run, version, f"flavor {estimate.flavor!r} is not in the catalog")
    if not _ran_on(gpu, device):
        return Skipped(run, version, f"planned for {gpu} ({estimate.flavor}) but trained on {device}")
    trained_batch = training.settings.get("batch_size")
    if estimate.batch_size is not None and trained_batch not in (None, estimate.batch_size):
        return Skipped(run, version, f"trained with batch {trained_batch}, estimated for batch {estimate.batch_size}")
    estimated = estimate.tokens_per_second
    steady = training.steady_tokens_per_second
    measured = steady if steady is not None else training.tokens_per_second
    if not estimated or not measured:
        return Skipped(run, version, "no training rate recorded")
    estimated /= _number(applied.get("speed")) or 1.0

    estimated_peak = measured_peak = None
    peak = estimate.peak_vram_gb
    context = estimate.breakdown.get("memory_gb", {}).get("cuda_context")
    if gpu != "cpu" and training.peak_memory_kind == "cuda_max_allocated" and peak is not None and context is not None:
        estimated_peak = (peak - context) / (_number(applied.get("memory")) or 1.0)
        measured_peak = training.peak_memory_gb
    return Record(run, version, gpu, device, estimated, measured, steady is not None, estimated_peak, measured_peak)


def collect(versions: Iterable[tuple[str, Manifest]]) -> tuple[list[Record], list[Skipped]]:
    """Records from (run name, manifest) pairs, and the versions left out with why."""
    records: list[Record] = []
    skipped: list[Skipped] = []
    for run, manifest in versions:
        found = record_of(run, manifest)
        if isinstance(found, Record):
            records.append(found)
        elif isinstance(found, Skipped):
            skipped.append(found)
    return records, skipped


def factors(records: Iterable[Record]) -> list[GpuFactors]:
    """One speed and one memory factor per GPU model, rounded as they go into pyproject.toml."""
    by_gpu: dict[str, list[Record]] = {}
    for record in records:
        by_gpu.setdefault(record.gpu, []).append(record)
    out = []
    for gpu, group in sorted(by_gpu.items()):
        speed = math.exp(sum(math.log(r.speed) for r in group) / len(group))
        memories = [m for m in (r.memory for r in group) if m is not None]
        out.append(GpuFactors(gpu, len(group), round(speed, 3), round(max(memories), 3) if memories else None))
    return out


def clamp_factor(value: float) -> float:
    """A factor as settings accept it: the table never writes what pyproject.toml would refuse."""
    return min(FACTOR_MAX, max(FACTOR_MIN, value))


def toml_table(found: Iterable[GpuFactors]) -> str:
    """The `[tool.tuneform.calibration]` table for these factors, clamped to what settings accept."""
    found = list(found)

    def inline(pairs: list[tuple[str, float]]) -> str:
        return "{" + ", ".join(f'"{gpu}" = {clamp_factor(value):g}' for gpu, value in pairs) + "}"

    lines = ["[tool.tuneform.calibration]", f"speed = {inline([(f.gpu, f.speed) for f in found])}"]
    memory = [(f.gpu, value) for f in found if (value := f.memory) is not None]
    if memory:
        lines.append(f"memory = {inline(memory)}")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Calibration:
    """What `tuneform calibrate` reports: the records, the versions left out, the factors."""

    records: list[Record]
    skipped: list[Skipped]
    invalid: list[str]  # run files that did not load
    factors: list[GpuFactors]

    @classmethod
    def of(cls, versions: Iterable[tuple[str, Manifest]], invalid: list[str]) -> Calibration:
        records, skipped = collect(versions)
        return cls(records, skipped, invalid, factors(records))

    @property
    def toml(self) -> str | None:
        return toml_table(self.factors) if self.factors else None

    def as_json(self) -> dict[str, Any]:
        return {
            "records": [asdict(r) | {"speed": r.speed, "memory": r.memory} for r in self.records],
            "skipped": [asdict(s) for s in self.skipped],
            "invalid": self.invalid,
            "factors": {f.gpu: {"runs": f.runs, "speed": f.speed, "memory": f.memory} for f in self.factors},
            "toml": self.toml,
        }

    def text(self) -> str:
        lines = [f"skipped {path}: invalid run file (tuneform validate says why)" for path in self.invalid]
        lines += [f"skipped {s.run} {s.version}: {s.reason}" for s in self.skipped]
        if not self.records:
            lines.append("no trained version records an estimate and a measurement yet: apply a run, then calibrate")
            return "\n".join(lines) + "\n"
        lines.append(
            f"{'run':20} {'version':16} {'gpu':6} {'tok/s est':>10} {'measured':>10} {'x':>6} {'GiB est':>8} {'measured':>8} {'x':>6}"
        )
        for r in self.records:
            memory = (
                f"{r.estimated_peak_gb:8.2f} {r.measured_peak_gb:8.2f} {r.memory:6.2f}"
                if r.memory is not None
                else f"{'-':>8} {'-':>8} {'-':>6}"
            )
            lines.append(
                f"{r.run[:20]:20} {r.version:16} {r.gpu:6} {r.estimated_tokens_per_second:10,.0f} {r.measured_tokens_per_second:10,.0f}"
                f"{'' if r.steady else '*'} {r.speed:6.2f} {memory}"
            )
        if not all(r.steady for r in self.records):
            lines.append("* the whole training loop's rate, warm-up included: the run was too short for a steady rate")
        lines += ["", "Add to pyproject.toml (it replaces any [tool.tuneform.calibration] there):", ""]
        return "\n".join(lines) + "\n" + (self.toml or "")


def calibrate_runs(root: Path, paths: Sequence[str], manifests_of: Callable[[LoadedRun], Iterable[Manifest]]) -> Calibration:
    """What `tuneform calibrate` reports for the run files at `paths` (relative to `root`).

    `manifests_of` reads the manifests of a run's trained versions from its registry (registries
    live above this package, so the caller passes the reader). A run file that does not load is
    listed, not fatal: calibrating the others is still useful. A path that is no file raises
    RunFileError.
    """
    versions: list[tuple[str, Manifest]] = []
    invalid: list[str] = []
    for rel in paths:
        path = root / rel
        if not path.is_file():
            raise RunFileError(f"no run file {rel}", fix="pass a run file or the name of one in runs/")
        loaded = load_run_text(path.read_bytes(), rel)
        if loaded.spec is None:
            invalid.append(loaded.path)
            continue
        versions += [(loaded.name, manifest) for manifest in manifests_of(loaded)]
    return Calibration.of(versions, invalid)
