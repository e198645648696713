"""Training on several GPUs: the job's training step under `accelerate launch` (DDP).

Only the training step runs once per GPU. The rest of the job (scoring the base model and the
version it replaces, scoring the new model, publishing) stays one process: run on every rank it
would score N times or need barriers that time out while one rank scores a large suite. So with
more than one process the job writes a `TrainRequest`, runs

    accelerate launch --multi_gpu --num_processes N -m tuneform.job.worker REQUEST

streams the first process's output into its own log, and reads back the `TrainResult` that the
first process wrote. Each process trains `per_device_train_batch_size` rows per step, so a step
covers N times the rows of a single-GPU step, as the estimator assumes.

On a machine without CUDA the same launch trains on CPU processes over gloo: that is how the
tests run this path.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tuneform.estimate.estimator import CompileMode
from tuneform.train.engine import TrainError, TrainResult

Echo = Callable[[str], None]


@dataclass(frozen=True)
class TrainRequest:
    """What the training processes need: the bundle, the model to start from, where to save, the
    sized `auto` values."""

    bundle: str
    model: str  # the job's starting model: the bundle's, or the tuneform version it starts from, made ready
    out_dir: str
    result: str  # the first process writes the TrainResult (or {"error": message}) here; its folder is scratch
    batch_size: int | None = None
    gradient_checkpointing: bool | None = None
    compile: CompileMode | None = None
    resume_from: str | None = None
    # Hub jobs: minutes between checkpoints the first process uploads to the run's work branch
    # (0: none), and the settings a resume must share, recorded beside each checkpoint.
    checkpoint_minutes: float = 0.0
    checkpoint_settings: dict[str, Any] | None = None

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2), encoding="utf-8")

    @classmethod
    def read(cls, path: Path) -> TrainRequest:
        return cls(**json.loads(path.read_text(encoding="utf-8")))


def training_processes(requested: int | None) -> int:
    """How many processes train: `requested`, else one per visible CUDA GPU (1 on CPU)."""
    if requested is not None:
        if requested < 1:
            raise TrainError(f"--processes {requested}: train with at least one process")
        return requested
    import torch

    return max(1, torch.cuda.device_count()) if torch.cuda.is_available() else 1


def launch_command(request_path: Path, processes: int, port: int) -> list[str]:
    """The `accelerate launch` command line for `processes` processes on this machine.

    Mixed precision is left to the trainer's own arguments (bf16/fp16 from the run), which
    override the launcher's; `--multi_gpu` on a machine without CUDA gives CPU processes (gloo)."""
    return [
        sys.executable, "-m", "accelerate.commands.launch",
        "--multi_gpu", "--num_processes", str(processes), "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_ip", "127.0.0.1", "--main_process_port", str(port),
        "-m", "tuneform.job.worker", str(request_path),
    ]  # fmt: skip


def train_distributed(request: TrainRequest, processes: int, echo: Echo) -> TrainResult:
    """Run the training step on `processes` processes and return the first one's result.

    The request, the result and the other processes' logs live in the folder of
    `request.result`, which is removed afterwards (it must not be published with the model).
    A failure in any process stops them all (torch's launcher tears the group down) and raises
    TrainError with the error the first process reported, or the last lines of every process's
    output. An interrupt (Ctrl-C, SIGTERM from cancel) stops the whole process group first."""
    work = Path(request.result).parent
    work.mkdir(parents=True, exist_ok=True)
    try:
        request.write(work / "request.json")
        return _launch(request, work, processes, echo)
    finally:
        shutil.rmtree(work, ignore_errors=True)


# A process's own error: tuneform's "error: ..." line, or the last line of a Python traceback.
_ERROR_LINE = re.compile(r"^(error: |[A-Za-z_][\w.]*(Error|Exception): )")


def _launch(request: TrainRequest, work: Path, processes: int, echo: Echo) -> TrainResult:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    child = subprocess.Popen(
        launch_command(work / "request.json", processes, _free_port()),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        env=env,
        start_new_session=True,
    )
    tail: deque[str] = deque(maxlen=8)
    cause = None  # the first error line: torchrun's own traceback and summary follow it
    try:
        assert child.stdout is not None
        for line in child.stdout:
            line = line.rstrip("\n")
            tail.append(line)
            echo(line)
            if cause is None and _ERROR_LINE.match(line):
                cause = line
        code = child.wait()
    except BaseException:
        _stop(child)
        raise
    result = Path(request.result)
    reported = json.loads(result.read_text(encoding="utf-8")) if result.exists() else None
    if reported and "error" in reported:
        raise TrainError(reported["error"])
    if code != 0 or reported is None:
        first = f": {cause.strip()}" if cause else ""
        parts = [f"the {processes} training processes failed (exit {code}){first}; last output:", *(f"    {line}" for line in tail)]
        for log in sorted(work.glob("rank-*.log")):
            parts += [f"  {log.stem}:", *(f"    {line}" for line in log.read_text(errors="replace").splitlines()[-5:])]
        raise TrainError("\n".join(parts))
    return TrainResult.from_json(reported)


def _stop(child: subprocess.Popen[str]) -> None:
    """Stop the launcher and every training process it started (one session, one group)."""
    try:
        os.killpg(child.pid, signal.SIGTERM)
        child.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    except ProcessLookupError:
        pass


def _free_port() -> int:
    """A free TCP port on 127.0.0.1 for the processes' rendezvous (two jobs on one machine must not share one)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
