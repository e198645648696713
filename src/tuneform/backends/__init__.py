"""Backends run the job somewhere and keep its versions in a registry.

`local` runs the job as a subprocess on this machine and keeps versions in a folder; `hf-jobs`
runs it on Hugging Face Jobs and keeps versions in a Hub model repo. Each implements the Backend
protocol (protocol.py), whose `registry` is the backend's Registry (registry/protocol.py). apply
(apply.py) executes a plan through them. Imports every stage below it except `github` and `cli`.

`BACKENDS` is the one table of backend names: the CLI's `--backend` choices, apply, status, logs
and cancel look names up here, and tests tie the run file's `compute.backend`, the settings'
`default_backend` and the workflows' TUNEFORM_BACKEND check to its keys. Adding a backend is one
module implementing the protocol and one entry here. Entries load their module on first use, so
importing this table (the CLI does, for its choices) stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tuneform.backends.protocol import Backend
    from tuneform.registry.protocol import Registry


def _local() -> Backend:
    from tuneform.backends.local import LocalBackend

    return LocalBackend()


def _hf_jobs() -> Backend:
    from tuneform.backends.hfjobs import HfJobsBackend

    return HfJobsBackend()


#: Backend name -> its implementation (loaded on first use). The first is the default.
BACKENDS: dict[str, Callable[[], Backend]] = {"local": _local, "hf-jobs": _hf_jobs}


def backend(name: str) -> Backend:
    """The backend called `name` (a key of BACKENDS: the run file's schema admits no other)."""
    return BACKENDS[name]()


def registry_for(root: Path) -> Callable[[str], Registry | None]:
    """A lookup from backend name to the registry plan may read (None: not readable here); each
    registry is opened once, when a run first asks for it."""
    opened: dict[str, Registry | None] = {}

    def lookup(name: str) -> Registry | None:
        if name not in opened:
            opened[name] = backend(name).registry(root)
        return opened[name]

    return lookup
