"""Benchmark: validate and plan 1,000 run files, against check-jsonschema on the same files.

tuneform checks more than a JSON Schema can (files exist, keys, estimates), and must still be no
slower than check-jsonschema validating the same files with `tuneform schema`'s output. Both are
run as the commands a user would type, in one temporary git repository, best of three.

    python bench/plan_speed.py [--files 1000]

Prints a table and writes bench/results/plan_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def make_repo(path: Path, count: int) -> None:
    """A training repo (the demo's data, model and suite) with `count` distinct run files."""
    for folder in ("data", "evals", "models"):
        shutil.copytree(ROOT / folder, path / folder)
    shutil.copy(ROOT / "pyproject.toml", path / "pyproject.toml")
    base = (ROOT / "runs/demo.yaml").read_text()
    (path / "runs").mkdir()
    for i in range(count):
        text = base.replace("name: demo", f"name: run-{i:04d}").replace("seed: 42", f"seed: {i}")
        (path / "runs" / f"run-{i:04d}.yaml").write_text(text)
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@b"}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "base"], ["checkout", "-qb", "pr"]):
        subprocess.run(["git", *args], cwd=path, check=True, env=env)
    for i in range(0, count, 2):  # half the runs change in the "PR"
        run = path / "runs" / f"run-{i:04d}.yaml"
        run.write_text(run.read_text().replace("num_train_epochs: 3", "num_train_epochs: 2"))


def best_of(command: list[str], cwd: Path, runs: int = 3, ok_codes: tuple[int, ...] = (0,)) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run(command, cwd=cwd, capture_output=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        elapsed = time.perf_counter() - start
        if proc.returncode not in ok_codes:
            raise SystemExit(
                f"{' '.join(command)} failed ({proc.returncode}):\n{proc.stdout.decode()[-2000:]}{proc.stderr.decode()[-2000:]}"
            )
        best = min(best, elapsed)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp)
        make_repo(repo, args.files)
        files = sorted(str(p.relative_to(repo)) for p in (repo / "runs").glob("*.yaml"))
        schema = repo / "run.schema.json"
        schema.write_text(subprocess.run([str(BIN / "tuneform"), "schema"], capture_output=True, check=True, text=True).stdout)
        results = {
            "check_jsonschema_s": best_of([str(BIN / "check-jsonschema"), "--schemafile", str(schema), *files], repo),
            "tuneform_validate_s": best_of([str(BIN / "tuneform"), "validate", "runs"], repo),
            "tuneform_plan_s": best_of([str(BIN / "tuneform"), "plan", "--format", "json"], repo),
            "tuneform_validate_one_s": best_of([str(BIN / "tuneform"), "validate", files[0]], repo, runs=5),
            "tuneform_help_s": best_of([str(BIN / "tuneform"), "--help"], repo, runs=5),
        }
    results["validate_vs_check_jsonschema"] = results["tuneform_validate_s"] / results["check_jsonschema_s"]
    results.update(files=args.files, python=platform.python_version(), machine=platform.machine(), cpus=os.cpu_count())
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "plan_speed.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"{args.files} run files (half changed for plan)")
    print(f"  check-jsonschema (schema only)  {results['check_jsonschema_s']:.2f} s")
    print(
        f"  tuneform validate (everything)  {results['tuneform_validate_s']:.2f} s   ratio {results['validate_vs_check_jsonschema']:.2f}x"
    )
    print(f"  tuneform plan vs git base       {results['tuneform_plan_s']:.2f} s")
    print(f"  tuneform validate, one file     {results['tuneform_validate_one_s']:.3f} s")
    print(f"  tuneform --help                 {results['tuneform_help_s']:.3f} s")


if __name__ == "__main__":
    main()
