"""Backends run the job somewhere and keep its versions in a registry.

`local` runs the job as a subprocess on this machine and keeps versions in a folder; `hf-jobs`
runs it on Hugging Face Jobs and keeps versions in a Hub model repo.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..registry import LocalRegistry, Registry, default_home
from ..settings import Settings, SettingsError
from ..trees import WorkTree

BACKENDS = ("local", "hf-jobs")


def registry_for(root: Path) -> Callable[[str], Registry | None]:
    """A lookup from backend name to the registry plan may read (None: not readable here)."""
    from ..plan import load_settings

    try:
        settings = load_settings(WorkTree(root))
    except SettingsError:
        settings = Settings()
    local = LocalRegistry(default_home(root, settings.registry))

    def lookup(backend: str) -> Registry | None:
        if backend == "local":
            return local
        return None  # the Hub registry arrives with the hf-jobs backend

    return lookup
