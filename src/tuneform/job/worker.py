"""One training process of a multi-process (DDP) job: `python -m tuneform.job.worker REQUEST`.

Started by `accelerate launch` (see train/launch.py), once per GPU. Every process reads the same
bundle and data (the split and shuffle are seeded, so all agree), trains its share of each step,
and the first process saves the model and writes the result for the job. The other processes'
output goes to `rank-<n>.log` in the request's scratch folder, so the job's log reads like a
single-process one (a failure quotes their last lines).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from tuneform.train.launch import TrainRequest


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    request = TrainRequest.read(Path(args[0]))
    rank = int(os.environ.get("RANK", "0"))
    if rank != 0:
        _redirect_output(Path(request.result).parent / f"rank-{rank}.log")

    from tuneform.data.reader import DataError, load_data
    from tuneform.job.bundle import read_bundle
    from tuneform.job.pipeline import (
        import_engine_first,
        progress_printer,
        quiet_libraries,
    )
    from tuneform.train.engine import (  # none of these imports an ML library yet
        TrainError,
        train,
    )
    from tuneform.train.format import FormatError

    bundle = read_bundle(Path(request.bundle))
    try:
        import_engine_first(bundle)  # unsloth before transformers, as in the job
        quiet_libraries()
        data = load_data(bundle.spec, bundle.files)
        on_log = progress_printer(lambda line: print(line, flush=True)) if rank == 0 else None
        result = train(
            bundle.spec,
            request.model,
            data.train,
            data.eval,
            Path(request.out_dir),
            on_log=on_log,
            batch_size=request.batch_size,
            gradient_checkpointing=request.gradient_checkpointing,
            compile=request.compile,
            resume_from=Path(request.resume_from) if request.resume_from else None,
            callbacks=_checkpoint_callbacks(request, bundle, rank),
        )
    except (TrainError, DataError, FormatError) as exc:
        _report_error(request, rank, str(exc))
        print(f"error: {exc}", flush=True)
        return 1
    except Exception as exc:  # a bug or a library failure: the job says which, the traceback follows in the log
        _report_error(request, rank, f"training process {rank} failed: {type(exc).__name__}: {exc}")
        raise
    if rank == 0:
        Path(request.result).write_text(json.dumps(result.as_json()), encoding="utf-8")
    _leave_group()
    return 0


def _checkpoint_callbacks(request: TrainRequest, bundle: Any, rank: int) -> list[Any]:
    """Every process takes part in a checkpoint (each saves its own RNG state); only the first
    talks to the Hub, so only it opens the work branch."""
    if request.checkpoint_minutes <= 0 or request.checkpoint_settings is None:
        return []
    from tuneform.job.checkpoints import checkpoint_callback

    work = None
    if rank == 0:
        from tuneform.job.pipeline import open_registry

        registry = open_registry("hub", bundle, lambda line: print(line, flush=True))
        work = registry.work_branch(bundle.run.output_repo, bundle.key, request.checkpoint_settings)
    return [checkpoint_callback(work, request.checkpoint_minutes * 60)]


def _report_error(request: TrainRequest, rank: int, message: str) -> None:
    """The first process's error becomes the job's error message (not the launcher's summary)."""
    if rank == 0:
        Path(request.result).write_text(json.dumps({"error": message}), encoding="utf-8")


def _redirect_output(log: Path) -> None:
    """Send this process's stdout and stderr (Python's and the C libraries') to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _leave_group() -> None:
    """Tear the process group down cleanly (torch warns at exit when it is left open)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
