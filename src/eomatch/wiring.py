"""Wiring: the run's satellite registry and TLE store, built from configuration and settings.

One place for every entry point (the Python API context, the use cases, the maps, the CLI)
so they all see the same satellites and the same TLE sources. It sits between ``io`` and the
use cases: it may assemble ``core``, ``config`` and ``io`` objects, and nothing below it may
import it (see docs/design/layers.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from eomatch.config.models import EomatchConfig
from eomatch.config.settings import Settings
from eomatch.core.satellites import SatelliteRegistry
from eomatch.io.tle_store import TleStore


def build_registry(config: EomatchConfig | None = None) -> SatelliteRegistry:
    """Built-in satellites plus those added in configuration."""
    reg = SatelliteRegistry()
    if config is not None:
        for spec in config.satellites:
            reg.add(spec.to_satellite(config.base_dir))
    return reg


def build_store(
    config: EomatchConfig | None = None,
    tle_dirs: Sequence[Path] = (),
    settings: Settings | None = None,
) -> TleStore:
    """The TLE sources for a run: archive, config and CLI directories, env dirs, update cache."""
    settings = settings or Settings()
    dirs = [*settings.tle_dirs, *(config.resolved_tle_dirs() if config else []), *tle_dirs]
    return TleStore(extra_dirs=[Path(d) for d in dirs], cache_dir=settings.tle_cache_dir)
