"""Benchmark: how long `tuneform validate runs/demo.yaml` takes from the shell, start to exit.

An agent or a pre-commit hook runs validate after every edit, so its start-up is most of its
cost. The target is at most 0.3 s on a 2-core machine. The interpreter's own start (`python -c
pass`) and the import of tuneform's CLI are measured in the same run as baselines, so a slow or
busy machine shows as a slow baseline rather than as a regression. Best of N runs each.

    python bench/startup.py [--runs 15]

Prints a table and writes bench/results/startup.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_SECONDS = 0.3


def best_of(command: list[str], runs: int) -> float:
    """The fastest of `runs` wall-clock times of `command`, run from the repository root."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - started)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args(argv)
    tuneform = str(Path(sys.executable).parent / "tuneform")
    rows = {
        "python -c pass": best_of([sys.executable, "-c", "pass"], args.runs),
        "import tuneform.cli": best_of([sys.executable, "-c", "import tuneform.cli"], args.runs),
        "tuneform validate runs/demo.yaml": best_of([tuneform, "validate", "runs/demo.yaml"], args.runs),
    }
    validate = rows["tuneform validate runs/demo.yaml"]
    for name, seconds in rows.items():
        print(f"{name:36s} {seconds:6.3f} s")
    verdict = "meets" if validate <= TARGET_SECONDS else "misses"
    print(f"validate {verdict} the {TARGET_SECONDS} s target; {validate / rows['python -c pass']:.1f}x the interpreter's own start")
    out = ROOT / "bench" / "results" / "startup.json"
    out.write_text(
        json.dumps(
            {
                "seconds": rows,
                "target_seconds": TARGET_SECONDS,
                "meets_target": validate <= TARGET_SECONDS,
                "runs": args.runs,
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
            },
            indent=2,
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
