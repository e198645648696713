"""Training checkpoints of a Hub job on a work branch, so that a retried job resumes instead of restarting.

While a job trains, `checkpoint_callback` has the trainer save a full checkpoint (weights,
optimizer, scheduler, RNG and trainer state) every `[tool.tuneform] checkpoint_minutes`, and
uploads it to branch `tuneform/work-<key12>` of the output repo under `checkpoint/`, in one
commit that also deletes the previous checkpoint's files: the branch holds the newest checkpoint
and never a mix of two. `checkpoint/tuneform.json` beside it records the run key, the step and
the settings a resume must share: step N means the same rows seen only with the same batch size,
gradient accumulation, process count and engine. The run's tracker files (`logs/`: tensorboard's
event files, train/tracking.py) travel in the same commit, so a resumed job's published curve
starts at step 1, not at the step it resumed from.

A job that trains the run again (HF Jobs retried it, or apply resubmitted it after a crash)
continues from that checkpoint when it matches, and says why it does not when it does not.
The registry deletes the branch once the version is published; a failed job leaves it for the
next one.

Only the Hub registry checkpoints. A local job (LocalRegistry) has nothing that retries it on
another machine, and the local runs are the small ones: it trains from the start.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneform.core.hub import hub_failures, retry

if TYPE_CHECKING:
    from tuneform.registry.hub import HubRegistry
    from tuneform.runfile.spec import RunSpec

CHECKPOINT = "checkpoint"  # the folder on the work branch
STATE = "tuneform.json"  # what the checkpoint is, inside that folder
LOGS = "logs"  # the tracker files up to the checkpoint, on the work branch


def work_branch(key: str) -> str:
    """The branch of run `key`'s checkpoints in its output repo."""
    return f"tuneform/work-{key[:12]}"


def resume_settings(spec: RunSpec, processes: int, batch_size: int | None, gradient_checkpointing: bool | None) -> dict[str, Any]:
    """The resolved settings that decide what a step is: a checkpoint saved under others cannot be
    continued (its step count would mean other rows, its optimizer state another batch).

    Resolved as the engine will resolve them for this job (same function, same inputs)."""
    import torch

    from tuneform.train.engine import choose_engine, resolve_settings

    cuda = torch.cuda.is_available()
    settings = resolve_settings(
        spec,
        engine=choose_engine(spec.compute.engine, cuda=cuda),
        cuda=cuda,
        bf16_supported=cuda and torch.cuda.is_bf16_supported(),
        batch_size=batch_size,
        gradient_checkpointing=gradient_checkpointing,
        processes=processes,
    )
    return {
        "batch_size": settings.batch_size,
        "gradient_accumulation_steps": spec.training.gradient_accumulation_steps,
        "processes": settings.processes,
        "engine": settings.engine,
    }


@dataclass(frozen=True)
class Resume:
    """A checkpoint downloaded from the work branch: the trainer continues from `folder` at `step`."""

    folder: Path
    step: int


class WorkBranch:
    """The work branch of one run in its output repo: upload, find and download its checkpoint."""

    def __init__(self, hub: HubRegistry, repo: str, key: str, settings: dict[str, Any], scratch: Path, private: bool = True):
        self.hub = hub
        self.repo = repo
        self.key = key
        self.settings = settings
        self.scratch = scratch  # where the checkpoint is downloaded; never inside the staged version
        self.private = private
        self.branch = work_branch(key)
        self._branch_ready = False

    def _say(self, line: str) -> None:
        if self.hub.say:
            self.hub.say(line)

    def saved(self) -> dict[str, Any] | None:
        """The branch's checkpoint/tuneform.json; None when there is no branch, file or repo."""
        from huggingface_hub.errors import (
            EntryNotFoundError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )

        try:
            path = self.hub.api.hf_hub_download(
                self.repo, f"{CHECKPOINT}/{STATE}", revision=self.branch, local_dir=str(self.scratch / "state")
            )
        except (EntryNotFoundError, RevisionNotFoundError, RepositoryNotFoundError):
            return None
        try:
            state = json.loads(Path(path).read_text(encoding="utf-8"))
        except ValueError:
            return None
        return state if isinstance(state, dict) else None

    def mismatch(self, state: dict[str, Any]) -> str | None:
        """Why a saved checkpoint cannot be continued by this job; None when it can."""
        if state.get("run_key") != self.key:
            return f"it belongs to run-{str(state.get('run_key'))[:12]}, not run-{self.key[:12]}"
        saved = state.get("settings") or {}
        for name, value in self.settings.items():
            if saved.get(name) != value:
                return f"it was saved with {name} {saved.get(name)}, this job trains with {value}"
        if not isinstance(state.get("step"), int) or state["step"] < 1:
            return f"its step {state.get('step')!r} is not a step count"
        return None

    def resume(self, logs: Path | None = None) -> Resume | None:
        """The branch's checkpoint, downloaded, when it matches this run and its settings; else None,
        with a line saying why it is ignored (a read error too: training from the start is always safe).
        The tracker files saved with it go back into `logs`, where the trainer's tracker appends."""
        try:
            state = self.saved()
            if state is None:
                return None
            why = self.mismatch(state)
            if why:
                self._say(f"ignoring the checkpoint on branch {self.branch}: {why}; training from the start")
                return None
            self.hub.api.snapshot_download(
                self.repo, revision=self.branch, allow_patterns=[f"{CHECKPOINT}/*", f"{LOGS}/*"], local_dir=str(self.scratch)
            )
            if logs is not None and (self.scratch / LOGS).is_dir():
                shutil.copytree(self.scratch / LOGS, logs, dirs_exist_ok=True)
        except Exception as exc:  # broad on purpose: any unreadable checkpoint means training from the start, never a failed job
            self._say(
                f"ignoring the checkpoint on branch {self.branch}: reading it failed ({type(exc).__name__}: {exc}); training from the start"
            )
            return None
        self._say(f"resuming from step {state['step']} (checkpoint on branch {self.branch})")
        return Resume(self.scratch / CHECKPOINT, int(state["step"]))

    def upload(self, folder: Path, step: int, logs: Path | None = None) -> None:
        """One commit on the branch: `folder` (a trainer checkpoint) as checkpoint/ and the tracker
        files in `logs` as logs/, the previous checkpoint's other files deleted. A failure is
        reported, not raised: training goes on, and the branch keeps the last checkpoint that did land."""
        from huggingface_hub import CommitOperationAdd, CommitOperationDelete

        (folder / STATE).write_text(
            json.dumps({"run_key": self.key, "step": step, "settings": self.settings}, indent=2) + "\n", encoding="utf-8"
        )
        api = self.hub.api
        try:
            if not self._branch_ready:
                self.hub.ensure_repo(self.repo, self.private)
                retry(
                    lambda: api.create_branch(self.repo, branch=self.branch, exist_ok=True),
                    what=f"create branch {self.branch}",
                    say=self._say,
                )
                self._branch_ready = True
            ours = {f"{CHECKPOINT}/{p.relative_to(folder).as_posix()}": p for p in sorted(folder.rglob("*")) if p.is_file()}
            if logs is not None and logs.is_dir():
                ours |= {f"{LOGS}/{p.relative_to(logs).as_posix()}": p for p in sorted(logs.rglob("*")) if p.is_file()}
            stale = [
                p
                for p in api.list_repo_files(self.repo, revision=self.branch)
                if p.startswith((f"{CHECKPOINT}/", f"{LOGS}/")) and p not in ours
            ]
            operations = [CommitOperationDelete(p) for p in stale] + [CommitOperationAdd(rel, str(p)) for rel, p in ours.items()]
            retry(
                lambda: str(
                    api.create_commit(self.repo, operations, commit_message=f"checkpoint at step {step}", revision=self.branch).oid
                ),
                what=f"upload the checkpoint at step {step}",
                landed=lambda: "landed" if (self.saved() or {}).get("step") == step else None,
                say=self._say,
            )
        except Exception as exc:  # broad on purpose: a lost checkpoint must not stop a paid training
            self._say(f"  warning: the checkpoint at step {step} was not uploaded ({type(exc).__name__}: {exc}); training goes on")
            return
        self._say(f"  checkpoint at step {step} -> branch {self.branch}")


def delete_work_branch(hub: HubRegistry, repo: str, key: str) -> None:
    """Drop the run's checkpoints once its version is published; best effort (a branch left behind
    costs storage, not correctness: its checkpoint names a published key, which never trains again)."""
    branch = work_branch(key)

    from huggingface_hub.errors import RevisionNotFoundError

    def call() -> bool:
        try:
            hub.api.delete_branch(repo, branch=branch)
        except RevisionNotFoundError:  # no checkpoint was ever pushed
            return False
        return True

    try:
        deleted = retry(call, what=f"delete branch {branch}", say=hub.say)
    except hub_failures() as exc:
        if hub.say:
            hub.say(f"  warning: could not delete the checkpoint branch {branch} ({type(exc).__name__}: {exc}); delete it by hand")
        return
    if deleted and hub.say:
        hub.say(f"deleted the checkpoint branch {branch}")


def checkpoint_callback(work: WorkBranch | None, interval_seconds: float) -> Any:
    """A TrainerCallback that saves a trainer checkpoint every `interval_seconds` of training and
    uploads it to the work branch, then removes the local copy: the trainer writes checkpoints
    into the folder the model is saved to, which must hold the model alone.

    Under DDP every process saves (each writes its own RNG state), so all must decide to save at
    the same step: the first process decides by its clock and tells the others over a gloo group
    (CPU tensors: no GPU synchronisation in the training loop), and only it, holding `work`,
    uploads, once every process has written its part. The other processes pass `work` None.

    The trainer's own save_strategy stays "no" (engine.sft_config): saving is by time, since a
    step's length varies by orders of magnitude between runs. transformers is imported here, not
    at module import, so that unsloth can be imported before it."""
    import torch
    import torch.distributed as dist
    from transformers import TrainerCallback
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    from tuneform.train.tracking import logs_dir

    class _Checkpoints(TrainerCallback):
        last = time.monotonic()
        group: Any = None  # the gloo group of a DDP run; None in one process

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
                self.group = dist.new_group(backend="gloo")  # every process, in the same order
            self.last = time.monotonic()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            # the last step needs no checkpoint: the model is saved and published right after it
            due = state.global_step < state.max_steps and time.monotonic() - self.last >= interval_seconds
            if self.group is not None:
                flag = torch.tensor([1 if due else 0], dtype=torch.int32)
                dist.broadcast(flag, src=0, group=self.group)
                due = bool(flag.item())
            if due:
                control.should_save = True

        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.group is not None:
                dist.barrier(group=self.group)  # every process has written its files
            if work is not None and state.is_world_process_zero:
                folder = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
                work.upload(folder, state.global_step, logs_dir(Path(args.output_dir)))
                shutil.rmtree(folder, ignore_errors=True)
            self.last = time.monotonic()  # the interval counts training time, not the upload's

    return _Checkpoints()
