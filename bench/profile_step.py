#!/usr/bin/env python3
"""Where a training step's time goes: torch.profiler over a few steps of tuneform's own trainer.

bench/gpu.py says how fast the job trains; this says why. It builds the same model, data and run
file as bench/gpu.py (config `tuneform-batch16` by default), trains it in this process through
`tuneform.train.engine.train` (the function the job calls), and profiles steps `--start` to
`--start + --steps` with a TrainerCallback. GPU kernel time is summed per category (matrix
products, attention, loss, LoRA/elementwise, optimizer, communication, copies) and set against the
profiled wall time: the gap is time the GPU waited on the host (kernel launches, Python, data).

    python bench/profile_step.py --examples 600 --out bench/results

Writes <name>.json and <name>.md (default profile-<date>) with the top kernels.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# (category, pattern on the kernel name), first match wins
CATEGORIES = [
    ("communication (NCCL)", r"nccl"),
    # Before matrix products: flash kernels name cutlass types in their template arguments.
    ("attention", r"flash|fmha|attention|sdpa|efficient_attention|flex"),
    ("matrix products", r"gemm|cutlass|xmma|nvjet|cublas|wgmma|sm90_|sm80_|ampere_|hopper_"),
    ("loss (logits, cross-entropy)", r"cross_entropy|logsumexp|log_softmax|softmax|nll"),
    ("optimizer", r"adam|multi_tensor|foreach"),
    ("copies and casts", r"copy|memcpy|memset|cast|convert|to_copy|cat"),
    ("fused Triton (Unsloth)", r"^triton_|_kernel$"),
]


# With nothing compiled (UNSLOTH_COMPILE_DISABLE=1), unsloth_zoo's chunked loss also runs its
# per-chunk math (an fp32 copy of each chunk of logits, its softmax, the one-hot gradient) as
# separate PyTorch operations: the suspect for the eager LFM2 step's "copies and casts"
# (docs/calibration.md, runs 29-31). Two ways around it, to measure against each other:
# - as-is: what the job does;
# - compiled-loss: compile only those two chunk functions (unsloth_zoo reads its flag per call);
# - logits: the forward returns the logits and the model's loss_function, Unsloth's Triton
#   cross-entropy, scores them (more memory: the whole batch's logits at once).
LOSS_ROUTES = ("as-is", "compiled-loss", "logits")


def loss_route(route: str) -> None:
    """Set `route` (LOSS_ROUTES) for this process; call after Unsloth is imported."""
    import os

    if route == "compiled-loss":
        from unsloth_zoo.fused_losses import chunked_logprob

        chunked_logprob._COMPILE = True
    elif route == "logits":
        os.environ["UNSLOTH_RETURN_LOGITS"] = "1"


def _gpu_bench() -> Any:
    spec = importlib.util.spec_from_file_location("bench_gpu", ROOT / "bench" / "gpu.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_gpu"] = module
    spec.loader.exec_module(module)
    return module


def category(name: str) -> str:
    lowered = name.lower()
    for label, pattern in CATEGORIES:
        if re.search(pattern, lowered):
            return label
    return "other elementwise and reductions"


def profiler_callback(start: int, steps: int, record: dict[str, Any], callers: bool = False) -> Any:
    """A TrainerCallback that profiles optimizer steps start+1 .. start+steps into `record`; with
    `callers`, also the operators by input shapes and Python caller (slower to record, so the step
    times are not comparable with a run without it)."""
    import torch
    from transformers import TrainerCallback

    class StepProfiler(TrainerCallback):
        profile: Any = None
        began = 0.0

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step == start and self.profile is None:
                torch.cuda.synchronize()
                self.profile = torch.profiler.profile(
                    activities=[torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA],
                    record_shapes=callers,
                    with_stack=callers,
                )
                self.profile.__enter__()
                self.began = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.profile is not None and state.global_step == start + steps and "wall_seconds" not in record:
                torch.cuda.synchronize()
                record["wall_seconds"] = time.perf_counter() - self.began
                self.profile.__exit__(None, None, None)
                # Kernels (device events) carry the GPU's time; the aten ops that launched them
                # report the same time again, so they are kept apart, as "which op launched it".
                record["events"] = [
                    {
                        "name": e.key,
                        "count": e.count,
                        "device_us": e.self_device_time_total,
                        "kernel": e.device_type == torch.autograd.DeviceType.CUDA,
                    }
                    for e in self.profile.key_averages()
                    if e.self_device_time_total > 0
                ]
                if callers:
                    grouped = self.profile.key_averages(group_by_input_shape=True, group_by_stack_n=8)
                    record["callers"] = [
                        {
                            "name": e.key,
                            "count": e.count,
                            "device_us": e.self_device_time_total,
                            "shapes": str(e.input_shapes)[:200],
                            "stack": [f for f in (e.stack or []) if "/torch/" not in f][:4],
                        }
                        for e in sorted(grouped, key=lambda e: -e.self_device_time_total)[:40]
                        if e.device_type != torch.autograd.DeviceType.CUDA
                    ]

    return StepProfiler()


def summarise(record: dict[str, Any], steps: int) -> dict[str, Any]:
    wall_ms = record["wall_seconds"] * 1000 / steps
    kernels = [e for e in record["events"] if e["kernel"]]
    per_category: dict[str, float] = {}
    for event in kernels:
        per_category[category(event["name"])] = per_category.get(category(event["name"]), 0.0) + event["device_us"] / 1000 / steps
    busy = sum(per_category.values())
    top = sorted(kernels, key=lambda e: -e["device_us"])[:25]
    ops = sorted((e for e in record["events"] if not e["kernel"]), key=lambda e: -e["device_us"])[:15]
    return {
        "step_wall_ms": wall_ms,
        "gpu_busy_ms": busy,
        "gpu_idle_ms": max(0.0, wall_ms - busy),
        "categories_ms_per_step": dict(sorted(per_category.items(), key=lambda kv: -kv[1])),
        "top_kernels": [
            {
                "name": e["name"][:160],
                "category": category(e["name"]),
                "ms_per_step": e["device_us"] / 1000 / steps,
                "calls_per_step": e["count"] / steps,
            }
            for e in top
        ],
        "top_ops": [
            {"name": e["name"][:160], "ms_per_step": e["device_us"] / 1000 / steps, "calls_per_step": e["count"] / steps} for e in ops
        ],
        "callers": [
            {**e, "ms_per_step": e["device_us"] / 1000 / steps, "calls_per_step": e["count"] / steps} for e in record.get("callers", [])
        ],
    }


def markdown(report: dict[str, Any]) -> str:
    s = report["summary"]
    lines = [
        f"# Where a training step's time goes, {report['date']}",
        "",
        f"`{report['command']}` on {report['gpu']}: config {report['config']} ({report['settings']}), "
        f"steps {report['start'] + 1}-{report['start'] + report['steps']} of {report['total_steps']}; "
        f"{report['tokens_per_step']:,.0f} tokens per step on average; torch's peak allocation {report['peak_gib']:.1f} GiB.",
        "",
        f"Step wall time {s['step_wall_ms']:.0f} ms; GPU kernels {s['gpu_busy_ms']:.0f} ms; GPU idle (waiting on the host) {s['gpu_idle_ms']:.0f} ms.",
        "",
        "| category | ms per step | share of wall time |",
        "|---|---|---|",
    ]
    for name, ms in s["categories_ms_per_step"].items():
        lines.append(f"| {name} | {ms:.1f} | {ms / s['step_wall_ms']:.1%} |")
    lines.append(f"| idle (host-bound) | {s['gpu_idle_ms']:.1f} | {s['gpu_idle_ms'] / s['step_wall_ms']:.1%} |")
    lines += ["", "Top kernels:", "", "| kernel | category | ms per step | calls per step |", "|---|---|---|---|"]
    for k in s["top_kernels"]:
        lines.append(f"| `{k['name']}` | {k['category']} | {k['ms_per_step']:.2f} | {k['calls_per_step']:.0f} |")
    lines += [
        "",
        "Operators that launched the most GPU time (the same time as the kernels above, by caller):",
        "",
        "| operator | ms per step | calls per step |",
        "|---|---|---|",
    ]
    for k in s["top_ops"]:
        lines.append(f"| `{k['name']}` | {k['ms_per_step']:.2f} | {k['calls_per_step']:.0f} |")
    if s["callers"]:
        lines += [
            "",
            "Operators by input shapes and caller (`--callers`):",
            "",
            "| operator | shapes | caller | ms per step | calls per step |",
            "|---|---|---|---|---|",
        ]
        for k in s["callers"]:
            caller = " < ".join(k["stack"]) or "(autograd)"
            lines.append(f"| `{k['name']}` | {k['shapes']} | {caller} | {k['ms_per_step']:.2f} | {k['calls_per_step']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="tuneform-batch16")
    parser.add_argument("--shape", default="llama-1b")
    parser.add_argument("--examples", type=int, default=600)
    parser.add_argument("--start", type=int, default=3, help="optimizer steps to run before profiling (compilation, warm-up)")
    parser.add_argument("--steps", type=int, default=3, help="optimizer steps to profile")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--name", default=None)
    parser.add_argument("--callers", action="store_true", help="also group operators by input shapes and Python caller")
    parser.add_argument(
        "--loss",
        choices=LOSS_ROUTES,
        default="as-is",
        help="an experiment on an Unsloth job with nothing compiled: how its loss over the vocabulary runs (LOSS_ROUTES)",
    )
    args = parser.parse_args(argv)

    bench = _gpu_bench()  # sets the offline environment and finds tuneform
    import torch

    if not torch.cuda.is_available():
        parser.error("profiling a step needs a CUDA GPU")
    shape = bench.SHAPES[args.shape]
    work = Path(tempfile.mkdtemp(prefix="tuneform-profile-"))
    repo = work / "repo"
    (repo / "data").mkdir(parents=True)
    rows = bench.conversations(args.examples, seed=1)
    (repo / "data/train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (repo / "data/eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in bench.conversations(4, seed=2)))
    bench.build_model_folder(repo / "models" / shape.name, shape, rows, cuda=True)
    lengths = bench.count_tokens(repo / "models" / shape.name, rows, 2048)
    bench.write_repo(repo, shape, [args.config], "hf-jobs", 2048, "lora")
    bench.make_bundle(repo, args.config, work / "bundle", "hf-jobs")

    import os

    os.environ["UNSLOTH_COMPILE_LOCATION"] = str(work / "unsloth_compiled")
    from tuneform.job.bundle import read_bundle
    from tuneform.job.pipeline import (
        import_engine_first,
        planned_compile,
        quiet_libraries,
        sized_auto_settings,
    )

    bundle = read_bundle(work / "bundle")
    import_engine_first(bundle)
    quiet_libraries()
    loss_route(args.loss)
    from tuneform.data.reader import load_data
    from tuneform.train.engine import train

    data = load_data(bundle.spec, bundle.files)
    batch, checkpointing = sized_auto_settings(bundle.run.estimate)
    record: dict[str, Any] = {}
    result = train(
        bundle.spec,
        bundle.model_path(),
        data.train,
        data.eval,
        work / "out",
        batch_size=batch,
        gradient_checkpointing=checkpointing,
        compile=planned_compile(bundle.run.estimate),
        callbacks=[profiler_callback(args.start, args.steps, record, args.callers)],
    )
    if "events" not in record:
        raise SystemExit(f"the run had {result.steps} steps: too few to profile steps {args.start + 1}-{args.start + args.steps}")
    date = time.strftime("%Y-%m-%d", time.gmtime())
    report = {
        "date": date,
        "command": " ".join(["python", "bench/profile_step.py", *(argv if argv is not None else sys.argv[1:])]),
        "gpu": torch.cuda.get_device_name(0),
        "config": args.config,
        "loss": args.loss,
        "settings": result.settings.__dict__,
        "start": args.start,
        "steps": args.steps,
        "total_steps": result.steps,
        "tokens_per_step": sum(lengths) / result.steps,
        "tokens_per_second_run": result.tokens_per_second,
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30,
        "summary": summarise(record, args.steps),
    }
    name = args.name or f"profile-{date}"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (args.out / f"{name}.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
