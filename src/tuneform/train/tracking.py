"""Experiment trackers (`training.report_to`): where a tracker's local files go, and the tracked run's link.

The trainer's own integrations do the logging (transformers' TensorBoardCallback, WandbCallback,
MLflowCallback, TrackioCallback): tuneform passes `report_to` through and adds two things.

- Files: tensorboard writes event files into `logs/tensorboard/` beside the model folder the job
  trains into, so they are published with the version (job/pipeline.py lists them in the
  manifest). transformers writes with torch.utils.tensorboard when the `tensorboard` package is
  installed, else with tensorboardX (the `train` extra: protobuf is its one dependency).
- The link: the remote trackers (wandb, mlflow, trackio) open a run when training begins; the
  callback made here reads its web address then, for the manifest and the results comment.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

LOGS = "logs"  # beside the model folder; in the version as logs/ (local) or tuneform/logs/ (Hub)
# Where transformers' TensorBoardCallback writes (read when the trainer builds its callbacks).
TENSORBOARD_DIR_ENV = "TENSORBOARD_LOGGING_DIR"
TRACKIO_SPACE_URL = "https://huggingface.co/spaces/{space_id}"


# The modules transformers' integration of each tracker imports (either one, for tensorboard).
CLIENTS = {"tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",), "mlflow": ("mlflow",), "trackio": ("trackio",)}


def missing_client(report_to: str) -> str | None:
    """Why the run's tracker cannot log from this environment (its client is not installed), as
    the fix; None when it can. transformers would raise deep inside the trainer's constructor."""
    import importlib.util

    modules = CLIENTS.get(report_to, ())
    if not modules or any(importlib.util.find_spec(module) for module in modules):
        return None
    return f"training.report_to {report_to}: its client is not installed here: pip install 'tuneform[{report_to}]', or set report_to: none"


def logs_dir(out_dir: Path) -> Path:
    """The folder a run's tracker files go to: `logs/` beside the model folder `out_dir`."""
    return out_dir.parent / LOGS


def point_tracker_at(report_to: str, out_dir: Path) -> None:
    """Send tensorboard's event files to logs/tensorboard beside `out_dir` (not into the model
    folder, transformers' default, nor wherever the caller's environment pointed): call before
    the trainer is built."""
    if report_to == "tensorboard":
        os.environ[TENSORBOARD_DIR_ENV] = str(logs_dir(out_dir) / "tensorboard")


def link_callback(handler: Any, found: list[str]) -> Any:
    """A TrainerCallback that appends to `found` the web address of the run a tracker callback
    of `handler` (the trainer's callback_handler) opened, when training begins: add it after the
    trackers' callbacks, which open their run then (and may close it when training ends).

    Defined in a function because TrainerCallback comes from transformers, which must not be
    imported before the engine is chosen (train/engine.py)."""
    from transformers import TrainerCallback

    class _Link(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            found.extend(url for url in map(run_url, handler.callbacks) if url)

    return _Link()


def whole_logs_callback(handler: Any) -> Any:
    """A TrainerCallback that, at each step a checkpoint is saved, closes the tensorboard writer
    of `handler` (the trainer's callback_handler) once the step is logged and opens a new one on
    the same folder: add it after the trackers' callbacks.

    Why: tensorboard's writer queues events to a background thread, and its flush does not wait
    for that queue, so a checkpoint taken right after a step is logged (job/checkpoints.py uploads
    logs/ with it) could miss that step's values, leaving a gap in a resumed job's curve. Closing
    drains the queue. The new writer's file is suffixed with the step: event files are named by
    the second they were opened, and two in one second would be one file written twice."""
    from transformers import TrainerCallback

    class _WholeLogs(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if not control.should_save:
                return
            for callback in handler.callbacks:
                writer = getattr(callback, "tb_writer", None) if type(callback).__name__ == "TensorBoardCallback" else None
                if writer is not None:
                    folder = writer.get_logdir() if hasattr(writer, "get_logdir") else writer.logdir  # torch's, tensorboardX's
                    writer.close()
                    callback.tb_writer = type(writer)(log_dir=folder, filename_suffix=f".step{state.global_step}")

    return _WholeLogs()


def run_url(callback: Any) -> str | None:
    """The web address of the run a transformers tracker callback opened, when it has one: a
    wandb run's page, an MLflow run on an http(s) tracking server, a Trackio Space. None for
    tensorboard, offline runs and file stores, which have no page."""
    kind = type(callback).__name__
    if kind == "WandbCallback":
        run = getattr(getattr(callback, "_wandb", None), "run", None)
        url = getattr(run, "url", None)
        return url if isinstance(url, str) and url.startswith("http") else None
    if kind == "MLflowCallback":
        mlflow = getattr(callback, "_ml_flow", None)
        if mlflow is None:
            return None
        active = mlflow.active_run()
        uri = str(mlflow.get_tracking_uri())
        if active is None or not uri.startswith(("http://", "https://")):
            return None
        return f"{uri.rstrip('/')}/#/experiments/{active.info.experiment_id}/runs/{active.info.run_id}"
    if kind == "TrackioCallback":
        space = getattr(callback, "_space_id", None)
        return TRACKIO_SPACE_URL.format(space_id=space) if isinstance(space, str) and space else None
    return None
