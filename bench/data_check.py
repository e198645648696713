"""Benchmark: the data check of a 100,000-row chat dataset, on one core.

`tuneform plan` checks the data of every run it creates or updates, so the check must take
seconds, not minutes. This generates a chat dataset with known flaws (exact and near duplicates,
eval prompts copied into training, a few malformed rows), commits a base revision of it in a
temporary git repository, changes it as a pull request would, and times `check_data`:

- alone, counting tokens by bytes/4 (no tokenizer on the machine);
- alone, with the demo model's tokenizer.json (the `tokenizers` package);
- against the git base (both revisions checked, then diffed), as plan does for an update.

Each is the best of three on a cold cache, pinned to one CPU where the OS allows it.

    python bench/data_check.py [--rows 100000] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from tuneform.data import check as datacheck  # noqa: E402
from tuneform.data.check import DataReport, check_data  # noqa: E402
from tuneform.runfile.settings import Settings  # noqa: E402
from tuneform.runfile.spec import RunSpec, load_run_text  # noqa: E402
from tuneform.runfile.trees import GitTree, WorkTree  # noqa: E402

LABELS = ["billing", "refund", "cancel_order", "track_order", "change_address", "reset_password", "complaint", "other"]
OPENERS = ["Hi,", "Hello.", "Good morning,", "Excuse me,", "Hey there!", ""]
ASKS = [
    "my invoice for order #{n} shows the wrong amount of {amount} dollars",
    "I want my money back for the {item} I returned on {day}",
    "please cancel order {n}, I ordered the {item} by mistake",
    "where is my parcel {n}? it was due on {day}",
    "I moved to {city}, please ship order {n} to my new address",
    "I cannot log in to {email}, the reset link never arrives",
    "the {item} arrived broken and nobody answers my mails",
    "do you sell gift cards for the {item}?",
]
ITEMS = ["running shoes", "smart watch", "coffee grinder", "desk lamp", "backpack", "headphones", "rain jacket", "blender"]
CITIES = ["Lyon", "Osaka", "Porto", "Denver", "Krakow", "Nairobi", "Halifax", "Perth"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
SYSTEM = "Classify the customer message. Reply with one intent label."
SUITE_ROWS = 500


def message(rng: random.Random) -> tuple[str, str]:
    intent = rng.randrange(len(ASKS))
    text = ASKS[intent].format(
        n=rng.randrange(10_000, 99_999),
        amount=rng.randrange(5, 900),
        item=rng.choice(ITEMS),
        day=rng.choice(DAYS),
        city=rng.choice(CITIES),
        email=f"user{rng.randrange(10**6)}@example.com",
    )
    closing = rng.choice(["Thanks.", "This is urgent.", "Please help.", ""])
    return f"{rng.choice(OPENERS)} {text}. Ticket {rng.randrange(10**8):08d}. {closing}".strip(), LABELS[intent]


def chat(user: str, label: str) -> str:
    return json.dumps(
        {"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}, {"role": "assistant", "content": label}]}
    )


def make_dataset(rows: int, seed: int) -> tuple[list[str], list[dict[str, Any]]]:
    """JSONL lines with ~2% exact and ~1% near duplicates, 50 leaked eval prompts and 0.05% broken
    rows; and the eval suite's rows."""
    rng = random.Random(seed)
    suite: list[dict[str, Any]] = []
    for i in range(SUITE_ROWS):
        user, label = message(rng)
        suite.append(
            {"id": f"e{i}", "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}], "expected": label}
        )
    lines: list[str] = []
    users: list[tuple[str, str]] = []
    for _ in range(rows):
        roll = rng.random()
        if roll < 0.02 and users:
            lines.append(chat(*rng.choice(users)))
        elif roll < 0.03 and users:
            user, label = rng.choice(users)
            lines.append(chat(user.upper().replace(",", "").replace(".", " ."), label))
        elif roll < 0.0305:
            lines.append('{"messages": [{"role": "user", "content": "unterminated')
        else:
            user, label = message(rng)
            users.append((user, label))
            lines.append(chat(user, label))
    for i, row in enumerate(rng.sample(suite, 50)):
        lines[i * 997 % rows] = chat(row["messages"][1]["content"], row["expected"])
    return lines, suite


def make_repo(path: Path, rows: int) -> None:
    """A git repo whose base holds 98% of the rows and whose working tree all of them."""
    lines, suite = make_dataset(rows, seed=1)
    (path / "data").mkdir()
    (path / "evals").mkdir()
    (path / "runs").mkdir()
    shutil.copytree(ROOT / "models" / "demo-tiny", path / "models" / "demo-tiny")
    (path / "evals" / "intents.jsonl").write_text("".join(json.dumps(r) + "\n" for r in suite))
    (path / "evals" / "intents.yaml").write_text("name: intents\ndata: evals/intents.jsonl\nmetrics: [exact_match]\n")
    run = "model: {{id: {model}, max_seq_length: 64}}\ndata:\n  train:\n    - path: data/chat.jsonl\n  eval_split: 0.05\nevals:\n  - suite: evals/intents.yaml\n"
    (path / "runs" / "bytes.yaml").write_text(run.format(model="HuggingFaceTB/SmolLM2-135M-Instruct"))
    (path / "runs" / "tokenizer.yaml").write_text(run.format(model="./models/demo-tiny"))
    (path / "data" / "chat.jsonl").write_text("".join(line + "\n" for line in lines[: int(rows * 0.98)]))
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@b"}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "base"]):
        subprocess.run(["git", *args], cwd=path, check=True, env=env)
    (path / "data" / "chat.jsonl").write_text("".join(line + "\n" for line in lines))


def best_of(fn: Callable[[], DataReport], runs: int = 3) -> tuple[float, DataReport]:
    best, report = float("inf"), None
    for _ in range(runs):
        datacheck._SCANS.clear()  # cold: every file read, parsed and hashed again
        start = time.perf_counter()
        report = fn()
        best = min(best, time.perf_counter() - start)
    assert report is not None
    return best, report


def load(repo: Path, name: str) -> RunSpec:
    spec = load_run_text((repo / "runs" / f"{name}.yaml").read_bytes(), f"runs/{name}.yaml").spec
    assert spec is not None
    return spec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--json", type=Path, default=None, help="Also write the results to this file.")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    os.environ["RAYON_NUM_THREADS"] = "1"  # the tokenizers package's thread pool
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp)
        make_repo(repo, args.rows)
        tree, base = WorkTree(repo), GitTree(repo, "main")
        specs = {name: load(repo, name) for name in ("bytes", "tokenizer")}
        settings = Settings()
        timings = {
            "bytes/4": best_of(lambda: check_data(specs["bytes"], tree, settings)),
            "tokenizer": best_of(lambda: check_data(specs["tokenizer"], tree, settings)),
            "bytes/4 + diff vs base": best_of(lambda: check_data(specs["bytes"], tree, settings, base_tree=base)),
        }
        size_mb = (repo / "data" / "chat.jsonl").stat().st_size / 1e6
    results: dict[str, Any] = {name: {"seconds": round(s, 3), "rows_per_s": round(args.rows / s)} for name, (s, _) in timings.items()}
    report = timings["bytes/4 + diff vs base"][1]
    results["report"] = {
        "summary": report.summary(),
        "diff": report.diff.summary() if report.diff else None,
        "findings": {f.rule: f.count for f in report.findings},
    }
    results.update(
        rows=args.rows,
        file_mb=round(size_mb, 1),
        python=platform.python_version(),
        machine=platform.machine(),
        cpus_used=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
    )
    print(f"{args.rows:,} chat rows ({size_mb:.1f} MB JSONL), one core, best of 3")
    for name, (seconds, _) in timings.items():
        print(f"  {name:24} {seconds:6.2f} s  {args.rows / seconds:>9,.0f} rows/s")
    print(f"  {report.summary()}")
    print(f"  vs base: {results['report']['diff']}")
    print(f"  findings: {results['report']['findings']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
