"""eomatch: find, catalogue and serve Earth-observation satellite matchups.

The public names below are loaded on first use (PEP 562), so ``import eomatch`` and every
``import eomatch.core.*`` stay cheap: the pure layers must not pay for pydantic, the catalogue
or the HTTP stack they never use.

``find_and_catalogue`` lives in :mod:`eomatch.find_and_catalogue` (the previous generation's
import path), so it is not re-exported here: a same-named attribute would be shadowed by that
module as soon as it is imported.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from eomatch._version import __version__

if TYPE_CHECKING:  # the same names, eagerly, for type checkers and IDEs
    from eomatch.context import EOMatchContext
    from eomatch.core.crossovers import Crossover, CrossoverParams
    from eomatch.core.satellites import Satellite, SatelliteRegistry, Sensor
    from eomatch.errors import EomatchError
    from eomatch.io.catalogue import MatchupCatalogue
    from eomatch.workflows.crossovers import find_crossovers

_LAZY: dict[str, str] = {
    "Crossover": "eomatch.core.crossovers",
    "CrossoverParams": "eomatch.core.crossovers",
    "EOMatchContext": "eomatch.context",
    "EomatchError": "eomatch.errors",
    "MatchupCatalogue": "eomatch.io.catalogue",
    "Satellite": "eomatch.core.satellites",
    "SatelliteRegistry": "eomatch.core.satellites",
    "Sensor": "eomatch.core.satellites",
    "find_crossovers": "eomatch.workflows.crossovers",
}
"""Public name -> the module that defines it."""

__all__ = [
    "Crossover",
    "EOMatchContext",
    "CrossoverParams",
    "EomatchError",
    "MatchupCatalogue",
    "Satellite",
    "SatelliteRegistry",
    "Sensor",
    "__version__",
    "find_crossovers",
]


def __getattr__(name: str) -> Any:
    """Import a public name's module on first access and cache the name here."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'eomatch' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
