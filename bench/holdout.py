#!/usr/bin/env python3
"""Held-out error of the estimator: fit its calibration on some shapes' GPU runs, predict the others.

A plan's price is only as good as the estimate on a model nobody measured. This reads every
recorded GPU bench result (bench/results/gpu-*.json, whatever files are there: new runs are
picked up with no code change), and for each card type on its own (an H100's numbers never
calibrate an H200's) and each model shape measured on it:

1. fits what `tuneform calibrate` fits for a repository (estimate/calibrate.py: a speed factor, the
   geometric mean of measured over estimated steady rates, and a memory factor, the largest
   measured over estimated peak) plus the warm-up offset (the mean of the measured warm-ups, the
   loop's seconds less its tokens at the steady rate, less the estimate's) on the card's other shapes;
2. predicts the held-out shape's runs with the estimator and that calibration: the steady rate,
   the whole training loop's seconds (warm-up + tokens at the steady rate), torch's peak memory,
   and the setup before the loop (the job's "training" line to the loop's start: tokenising,
   loading and the engine's setup, which nothing fits);
3. reports predicted over measured, minus one.

The estimator is re-run on each result's recorded workload (shape, tokens, lengths, batch, what
ran), so the error is today's estimator's, not the one the bench ran with. A result the estimator
cannot price as it ran (a route it does not model, a job that did not finish) is listed as
skipped, with why.

    python bench/holdout.py                     # or: python bench/gpu.py --holdout
    python bench/holdout.py --results bench/results --out bench/results

Writes bench/results/holdout.md and holdout.json (docs/calibration.md, "Held-out error", quotes
the table). Needs no GPU and no torch.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
try:  # tuneform installed, or run from a checkout
    import tuneform  # noqa: F401
except ImportError:
    sys.path.insert(0, str(ROOT / "src"))

from tuneform.estimate import calibrate  # noqa: E402
from tuneform.estimate.catalog import FLAVORS, Flavor, ModelShape  # noqa: E402
from tuneform.estimate.estimator import DEFAULT_CALIBRATION, Calibration, Estimate, Workload, estimate, fused_when_uncompiled  # noqa: E402

# What the result files cannot say about a run, from docs/calibration.md: keyed by file stem and
# config ("*": every config of the file). "compile": what Unsloth compiled when an environment
# variable, not the run file, decided it ("none": UNSLOTH_COMPILE_DISABLE=1; "off":
# UNSLOTH_BLOCK_COMPILE=0 before compute.compile recorded it); "packing": what ran where the
# manifest did not record it; "warm_cache": the warm-up is not a fresh machine's; "skip": why
# the estimator cannot price it.
NOTES: dict[str, dict[str, dict[str, Any]]] = {
    "gpu-lfm2-layout": {"tuneform-default": {"packing": False, "why": "run 15: Unsloth trained padded ('packing=True ignored')"}},
    "gpu-lfm2-trl-packed": {
        "tuneform-default": {
            "warm_cache": True,
            "why": "run 16, after run 15 on one machine (inferred: its warm-up took 8 s, run 15's 41 s)",
        }
    },
    "gpu-lfm2-dynamic-2026-12-06": {
        "*": {"skip": "run 20: torch._dynamo dynamic shapes (sitecustomize.py), a setting the estimator does not model"}
    },
    "gpu-lfm2-noblockcompile-2026-12-06": {
        "*": {"compile": "off", "warm_cache": True, "why": "run 21a: UNSLOTH_BLOCK_COMPILE=0 after run 20"}
    },
    "gpu-lfm2-nocompile-2026-12-06": {
        "*": {"compile": "none", "warm_cache": True, "why": "run 21b: UNSLOTH_COMPILE_DISABLE=1 after run 21a"}
    },
    "gpu-llama-nocompile-2026-12-06": {
        "*": {"compile": "none", "warm_cache": True, "why": "run 22: UNSLOTH_COMPILE_DISABLE=1 after run 21b"}
    },
    "gpu-lfm2-1m-eager-cold-2026-12-06": {"*": {"compile": "none", "why": "run 24: UNSLOTH_COMPILE_DISABLE=1 on a fresh machine"}},
}
# Attention routes the estimator prices for packed Unsloth rows; "n/a" is an unpacked run.
PRICED_ROUTES = {"varlen-aten", "varlen", "n/a"}


@dataclass(frozen=True)
class Point:
    """One finished bench job: the workload the estimator prices and what was measured."""

    source: str  # "<file stem>: <config>"
    card: str  # the GPU model, e.g. "H100"
    shape: str  # the bench's shape name, what is held out
    workload: Workload
    flavor: Flavor
    steady_tokens_per_second: float
    loop_seconds: float | None  # None: the warm-up is not a fresh machine's
    peak_gib: float | None  # torch's peak allocation
    setup_seconds: float | None = None  # the job's "training" line to the loop's start

    @property
    def warmup_seconds(self) -> float | None:
        """The loop's seconds beyond its tokens at the steady rate: what the estimate's warm-up prices."""
        if not self.loop_seconds:
            return None
        return self.loop_seconds - self.workload.train_tokens / self.steady_tokens_per_second

    def predict(self, calibration: Calibration) -> Estimate:
        return estimate(self.workload, self.flavor, calibration)


@dataclass(frozen=True)
class Fit:
    """A card's calibration from its training points: calibrate.py's factors and the warm-up offset."""

    card: str
    shapes: tuple[str, ...]
    speed: float
    memory: float | None
    warmup_offset_s: float

    def calibration(self, base: Calibration = DEFAULT_CALIBRATION) -> Calibration:
        memory = {} if self.memory is None else {self.card: self.memory}
        return dataclasses.replace(base, speed_by_gpu={self.card: self.speed}, memory_by_gpu=memory)


@dataclass(frozen=True)
class Error:
    """Predicted and measured for one held-out point; errors are predicted / measured - 1."""

    point: Point
    fit: Fit | None  # None: no other shape on this card to fit on (unit factors, no offset)
    steady_predicted: float
    loop_predicted: float | None
    peak_predicted: float | None
    setup_predicted: float | None = None

    @property
    def steady(self) -> float:
        return self.steady_predicted / self.point.steady_tokens_per_second - 1

    @property
    def loop(self) -> float | None:
        if self.loop_predicted is None or not self.point.loop_seconds:
            return None
        return self.loop_predicted / self.point.loop_seconds - 1

    @property
    def peak(self) -> float | None:
        if self.peak_predicted is None or not self.point.peak_gib:
            return None
        return self.peak_predicted / self.point.peak_gib - 1

    @property
    def setup(self) -> float | None:
        if self.setup_predicted is None or not self.point.setup_seconds:
            return None
        return self.setup_predicted / self.point.setup_seconds - 1


def card_of(gpu_name: str) -> str:
    """The GPU model of a device name: "NVIDIA H100 80GB HBM3" -> "H100"."""
    words = re.sub(r"^(nvidia|aws)\s+", "", gpu_name.strip(), flags=re.IGNORECASE).split()
    return words[0].split("-")[0].upper() if words else gpu_name


def _flavor(card: str, gpus: int, memory_gib: float) -> Flavor:
    """The catalog's flavor of this card and GPU count, else one made for it (HF Jobs has no H100)."""
    for flavor in FLAVORS.values():
        if flavor.gpu_model == card and flavor.gpus == gpus:
            return flavor
    return Flavor(
        name=f"{card.lower()}x{gpus}-bench",
        pretty_name=f"{gpus}x {card}",
        gpu_model=card,
        gpus=gpus,
        gpu_memory_gb=memory_gib,
        usd_per_hour=0.0,
        bf16=True,
    )


def _compile(note: dict[str, Any], report: dict[str, Any], settings: dict[str, Any]) -> str:
    """What Unsloth compiled, as Workload.compile spells it."""
    if "compile" in note:
        return str(note["compile"])
    if (report.get("environment") or {}).get("UNSLOTH_COMPILE_DISABLE") == "1":
        return "none"
    recorded = settings.get("compile")
    if recorded is None:
        return "on"  # before compute.compile existed, Unsloth compiled every decoder block
    return {"on": "on", "blocks": "on", "none": "none"}.get(recorded, "off")


def points_of(path: Path) -> tuple[list[Point], list[tuple[str, str]]]:
    """The priced points of one result file, and (source, why) for each result left out."""
    report = json.loads(path.read_text())
    if report.get("device") != "cuda":
        return [], []
    machine = report["machine"]
    card = card_of(str(machine.get("gpu") or "unknown"))
    field_names = {f.name for f in dataclasses.fields(ModelShape)}
    shape = ModelShape(**{k: v for k, v in report["shape"].items() if k in field_names})
    data = report["data"]
    points: list[Point] = []
    skipped: list[tuple[str, str]] = []
    for result in report["results"]:
        source = f"{path.stem}: {result['config']}"
        notes = NOTES.get(path.stem, {})
        note = {**notes.get("*", {}), **notes.get(result["config"], {})}
        measured = result["measured"]
        settings = result.get("settings") or {}
        route = result.get("attention")
        why = note.get("skip")
        if why is None and result["status"] != "ok":
            why = f"the job did not finish ({result['status']})"
        elif why is None and not measured.get("steady_tokens_per_second"):
            why = "no steady rate (too few steps)"
        elif why is None and route not in PRICED_ROUTES:
            why = (
                "attention route not recorded: ran before the varlen route, which the estimator prices"
                if route is None
                else f"attention route {route!r}: the estimator prices the varlen route"
            )
        elif (
            why is None
            and result["engine"] == "unsloth"
            and _compile(note, report, settings) == "none"
            and shape.architecture in DEFAULT_CALIBRATION.unsloth_zoo_architectures
            and (settings.get("kernels") == "fused") != fused_when_uncompiled(report.get("method", "lora"))
        ):
            why = (
                "nothing compiled, fused kernels recorded where the estimator prices this method unfused"
                if settings.get("kernels") == "fused"
                else "nothing compiled, before LFM2's fused kernels (train/fused_lfm2.py), which the estimator prices"
            )
        if why is not None:
            skipped.append((source, why))
            continue
        processes = int(result.get("processes") or 1)
        checkpointing = bool(result["gradient_checkpointing"])
        workload = Workload(
            shape=shape,
            train_tokens=int(measured["tokens_bench"]),
            seq_len=int(report["max_seq_length"]),
            method=report.get("method", "lora"),
            lora_r=16,
            target_modules="all-linear",
            batch_size=int(result["batch_size"]),
            grad_accum=int(result["gradient_accumulation_steps"]),
            gradient_checkpointing=checkpointing,
            packing=bool(note.get("packing", result["packing"])),
            engine=result["engine"],
            mean_example_tokens=round(data["mean_tokens"]),
            max_example_tokens=int(data["max_tokens"]),
            compile=_compile(note, report, settings),  # type: ignore[arg-type]
        )
        peak = measured.get("peak_torch_allocated_gib") if measured.get("peak_torch_kind") == "cuda_max_allocated" else None
        marks = measured.get("phase_seconds") or {}
        loop = measured.get("train_loop_seconds")
        setup = None
        if loop and "training (" in marks and "scoring the new model" in marks:
            setup = marks["scoring the new model"] - loop - marks["training ("]
        points.append(
            Point(
                source=source,
                card=card,
                shape=str(report["shape"]["name"]),
                workload=workload,
                flavor=_flavor(card, processes, float(machine.get("gpu_memory_gib") or 80.0)),
                steady_tokens_per_second=float(measured["steady_tokens_per_second"]),
                loop_seconds=None if note.get("warm_cache") else loop,
                peak_gib=peak,
                setup_seconds=setup if setup and setup > 0 else None,
            )
        )
    return points, skipped


def load(results: Path) -> tuple[list[Point], list[tuple[str, str]]]:
    """Every GPU result under `results` (gpu-*.json), in name order."""
    points: list[Point] = []
    skipped: list[tuple[str, str]] = []
    for path in sorted(results.glob("gpu-*.json")):
        found, left = points_of(path)
        points += found
        skipped += left
    return points, skipped


def _loop_seconds(prediction: Estimate) -> float:
    """The estimate's training loop: warm-up, then the tokens at the steady rate."""
    return prediction.seconds_breakdown["warmup"] + prediction.seconds_breakdown["train"]


def fit(card: str, points: Sequence[Point], base: Calibration = DEFAULT_CALIBRATION) -> Fit:
    """Calibrate on `points` (one card): calibrate.factors' speed and memory, then the warm-up offset."""
    records = []
    for point in points:
        prediction = point.predict(base)
        context = prediction.memory_breakdown.get("cuda_context", 0.0)
        records.append(
            calibrate.Record(
                run=point.source,
                version="bench",
                gpu=card,
                device=card,
                estimated_tokens_per_second=prediction.tokens_per_second,
                measured_tokens_per_second=point.steady_tokens_per_second,
                steady=True,
                estimated_peak_gb=prediction.peak_vram_gb - context,
                measured_peak_gb=point.peak_gib,
            )
        )
    (factors,) = calibrate.factors(records)
    residuals = [w - p.predict(base).seconds_breakdown["warmup"] for p in points if (w := p.warmup_seconds) is not None]
    offset = sum(residuals) / len(residuals) if residuals else 0.0
    return Fit(card, tuple(sorted({p.shape for p in points})), factors.speed, factors.memory, offset)


def predict(point: Point, fitted: Fit | None, base: Calibration = DEFAULT_CALIBRATION) -> Error:
    """The held-out point's prediction under `fitted` (None: the estimator as it is)."""
    calibration = fitted.calibration(base) if fitted else base
    prediction = point.predict(calibration)
    context = prediction.memory_breakdown.get("cuda_context", 0.0)
    offset = fitted.warmup_offset_s if fitted else 0.0
    return Error(
        point=point,
        fit=fitted,
        steady_predicted=prediction.tokens_per_second,
        loop_predicted=_loop_seconds(prediction) + offset,
        peak_predicted=prediction.peak_vram_gb - context,
        setup_predicted=prediction.seconds_breakdown["tokenize"] + prediction.seconds_breakdown["load"],
    )


def leave_one_shape_out(points: Iterable[Point], base: Calibration = DEFAULT_CALIBRATION) -> list[Error]:
    """For each card and each shape measured on it: fit on the card's other shapes, predict this one.

    A shape is the model's size and layout (its ModelShape), not its name: a model built under two
    names (LFM2-1.2B and LFM2.5-1.2B share one shape) is held out as one."""
    by_card: dict[str, list[Point]] = {}
    for point in points:
        by_card.setdefault(point.card, []).append(point)
    errors = []
    for card, group in sorted(by_card.items()):
        shapes = sorted({p.workload.shape for p in group}, key=lambda shape: min(p.shape for p in group if p.workload.shape == shape))
        for shape in shapes:
            training = [p for p in group if p.workload.shape != shape]
            fitted = fit(card, training, base) if training else None
            errors += [predict(p, fitted, base) for p in group if p.workload.shape == shape]
    return errors


# ---------------------------------------------------------------------------------------------
# Report


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:+.0%}"


def _worst(values: Iterable[float | None]) -> float | None:
    present = [abs(v) for v in values if v is not None]
    return max(present) if present else None


def summary(errors: Sequence[Error]) -> dict[str, dict[str, Any]]:
    """Per card and engine ("H100 unsloth"): points, shapes, and the largest and mean absolute
    error of each quantity. Engines apart: a plan prices Unsloth on a GPU unless the run says trl."""
    out: dict[str, dict[str, Any]] = {}
    for label in sorted({f"{e.point.card} {e.point.workload.engine}" for e in errors}):
        group = [e for e in errors if f"{e.point.card} {e.point.workload.engine}" == label]
        row: dict[str, Any] = {"points": len(group), "shapes": sorted({e.point.shape for e in group})}
        for key in ("steady", "loop", "peak", "setup"):
            values = [abs(v) for e in group if (v := getattr(e, key)) is not None]
            row[key] = {"max": max(values) if values else None, "mean": sum(values) / len(values) if values else None, "n": len(values)}
        out[label] = row
    return out


def markdown(errors: Sequence[Error], skipped: Sequence[tuple[str, str]]) -> str:
    lines = [
        "# Held-out error of the estimator (leave one shape out, per card)",
        "",
        "Written by `python bench/gpu.py --holdout` (bench/holdout.py) from bench/results/gpu-*.json. For each card and",
        "shape: the card's other shapes fit the speed and memory factors (estimate/calibrate.py) and the warm-up",
        "offset; the table is this shape's prediction against its measurement (predicted / measured - 1).",
        "Loop: the training loop's seconds, warm-up included. Peak: torch's peak allocation, GiB. Setup: the",
        "job's training line to the loop's start (tokenising, loading, the engine's setup; not fitted).",
        "",
        "| card | held-out shape | run: config | compile | fitted on (speed, memory, warm-up s) | steady tok/s measured | predicted | error | loop s measured | predicted | error | peak GiB measured | predicted | error | setup s measured | predicted | error |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for e in errors:
        p, f = e.point, e.fit
        fitted = (
            "nothing: no other shape on this card"
            if f is None
            else f"{', '.join(f.shapes)} (x{f.speed:.3f}, x{f.memory or 1:.3f}, {f.warmup_offset_s:+.1f})"
        )
        loop = (
            f"{p.loop_seconds:.1f} | {e.loop_predicted:.1f} | {_pct(e.loop)}"
            if p.loop_seconds and e.loop_predicted is not None
            else "- | - | -"
        )
        peak = f"{p.peak_gib:.1f} | {e.peak_predicted:.1f} | {_pct(e.peak)}" if p.peak_gib and e.peak_predicted is not None else "- | - | -"
        setup = (
            f"{p.setup_seconds:.1f} | {e.setup_predicted:.1f} | {_pct(e.setup)}"
            if p.setup_seconds and e.setup_predicted is not None
            else "- | - | -"
        )
        compiled = p.workload.compile_mode if p.workload.engine == "unsloth" else "-"
        lines.append(
            f"| {p.card} | {p.shape} | {p.source} | {compiled} | {fitted} | {p.steady_tokens_per_second:,.0f} | {e.steady_predicted:,.0f} | {_pct(e.steady)} | {loop} | {peak} | {setup} |"
        )
    lines += ["", "Per card and engine (absolute error: largest / mean, over the held-out points that measured it):", ""]
    lines += ["| card, engine | points | shapes | steady rate | whole loop | peak memory | setup |", "|---|---|---|---|---|---|---|"]
    for card, row in summary(errors).items():
        cells = []
        for key in ("steady", "loop", "peak", "setup"):
            stat = row[key]
            cells.append("-" if stat["max"] is None else f"{stat['max']:.0%} / {stat['mean']:.0%} ({stat['n']})")
        lines.append(f"| {card} | {row['points']} | {', '.join(row['shapes'])} | {' | '.join(cells)} |")
    if skipped:
        lines += ["", "Not priced:", ""]
        lines += [f"- {source}: {why}" for source, why in skipped]
    lines += ["", "Loop errors leave out runs whose warm-up found an earlier run's compiled kernels (NOTES in bench/holdout.py)."]
    return "\n".join(lines) + "\n"


def as_json(errors: Sequence[Error], skipped: Sequence[tuple[str, str]]) -> dict[str, Any]:
    def finite(value: float | None) -> float | None:
        return None if value is None or not math.isfinite(value) else round(value, 4)

    return {
        "method": "leave one shape out, per card",
        "summary": summary(errors),
        "points": [
            {
                "card": e.point.card,
                "shape": e.point.shape,
                "source": e.point.source,
                "compile": e.point.workload.compile_mode,
                "fitted_on": None
                if e.fit is None
                else {
                    "shapes": list(e.fit.shapes),
                    "speed": e.fit.speed,
                    "memory": e.fit.memory,
                    "warmup_offset_s": round(e.fit.warmup_offset_s, 2),
                },
                "steady": {
                    "measured": round(e.point.steady_tokens_per_second),
                    "predicted": round(e.steady_predicted),
                    "error": finite(e.steady),
                },
                "loop_seconds": {"measured": e.point.loop_seconds, "predicted": finite(e.loop_predicted), "error": finite(e.loop)},
                "peak_gib": {"measured": e.point.peak_gib, "predicted": finite(e.peak_predicted), "error": finite(e.peak)},
                "setup_seconds": {"measured": e.point.setup_seconds, "predicted": finite(e.setup_predicted), "error": finite(e.setup)},
            }
            for e in errors
        ],
        "skipped": [{"source": s, "why": w} for s, w in skipped],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results", help="folder of gpu-*.json results")
    parser.add_argument("--out", type=Path, default=None, help="where holdout.md and holdout.json go (default: --results)")
    args = parser.parse_args(argv)
    points, skipped = load(args.results)
    if not points:
        print(f"no GPU result the estimator can price in {args.results}", file=sys.stderr)
        return 1
    errors = leave_one_shape_out(points)
    out = args.out or args.results
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(errors, skipped)
    (out / "holdout.md").write_text(text)
    (out / "holdout.json").write_text(json.dumps(as_json(errors, skipped), indent=2) + "\n")
    print(text)
    print(f"wrote {out / 'holdout.md'} and {out / 'holdout.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
