"""Backends run the job somewhere and keep its versions in a registry.

`local` runs the job as a subprocess on this machine and keeps versions in a folder; `hf-jobs`
runs it on Hugging Face Jobs and keeps versions in a Hub model repo.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..registry import LocalRegistry, Registry, default_home
from ..settings import settings_or_defaults
from ..trees import WorkTree

def registry_for(root: Path) -> Callable[[str], Registry | None]:
    """A lookup from backend name to the registry plan may read (None: not readable here)."""

    local = LocalRegistry(default_home(root, settings_or_defaults(WorkTree(root)).registry))

    hub: list[Registry | None] = []

    def lookup(backend: str) -> Registry | None:
        if backend == "local":
            return local
        if backend == "hf-jobs":
            if not hub:
                hub.append(hub_registry())
            return hub[0]
        return None

    return lookup


def hub_registry() -> Registry | None:
    """The Hub registry (HF_TOKEN when set: public repos are readable without), or None offline
    (the client's HF_HUB_OFFLINE): plan then decides from git alone."""
    from ..hubregistry import HubRegistry, hub_api, hub_offline

    if hub_offline():
        return None
    return HubRegistry(hub_api())
