"""Job kinds for the durable queue: the registry (:mod:`.registry`) and the built-in kinds.

:func:`load_kinds` imports every built-in kind module once; each registers itself. A module
that is missing (another kind's optional dependency) is skipped, so the queue works with
whatever kinds this installation has.
"""

from __future__ import annotations

import importlib

from eomatch.errors import MissingExtraError
from eomatch.workflows.jobs.registry import (
    KINDS,
    JobCancelled,
    JobContext,
    JobKind,
    JobParams,
    JobResult,
    get_kind,
    register,
)

__all__ = [
    "BUILTIN_MODULES",
    "KINDS",
    "JobCancelled",
    "JobContext",
    "JobKind",
    "JobParams",
    "JobResult",
    "get_kind",
    "load_kinds",
    "register",
]

BUILTIN_MODULES = (
    "eomatch.workflows.jobs.ingest_kind",
    "eomatch.workflows.jobs.diagnostic_kinds",
    "eomatch.workflows.jobs.raster_kind",
    "eomatch.workflows.jobs.catalogue_kind",
    "eomatch.workflows.jobs.process_kind",
    "eomatch.workflows.jobs.harvest_kind",
)
"""Modules of the built-in kinds (each calls :func:`register` on import)."""

_loaded = False


def load_kinds() -> dict[str, JobKind]:
    """Import the built-in kinds (once) and return the registry."""
    global _loaded
    if not _loaded:
        _loaded = True
        for name in BUILTIN_MODULES:
            try:
                importlib.import_module(name)
            except MissingExtraError:
                continue  # a kind behind an extra this installation lacks
            except ModuleNotFoundError as exc:
                if exc.name != name:  # a broken kind module: say so
                    raise
    return KINDS
