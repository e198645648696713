"""Backends run the job somewhere and keep its versions in a registry.

`local` runs the job as a subprocess on this machine and keeps versions in a folder; `hf-jobs`
runs it on Hugging Face Jobs and keeps versions in a Hub model repo. apply (apply.py) executes a
plan through them. Imports every stage below it except `github` and `cli`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tuneform.registry.local import LocalRegistry, Registry, default_home
from tuneform.runfile.settings import settings_or_defaults
from tuneform.runfile.trees import WorkTree


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
    from tuneform.core.hub import hub_api, hub_offline
    from tuneform.registry.hub import HubRegistry

    if hub_offline():
        return None
    return HubRegistry(hub_api())
