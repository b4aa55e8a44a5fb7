"""eomatch: find, catalogue and serve Earth-observation satellite matchups.

``find_and_catalogue`` lives in :mod:`eomatch.find_and_catalogue` (the previous generation's
import path), so it is not re-exported here: a same-named attribute would be shadowed by that
module as soon as it is imported.
"""

from eomatch._version import __version__
from eomatch.context import EOMatchContext
from eomatch.core.crossovers import Crossover, CrossoverParams
from eomatch.core.satellites import Satellite, SatelliteRegistry, Sensor
from eomatch.errors import EomatchError
from eomatch.io.catalogue import MatchupCatalogue
from eomatch.workflows.crossovers import find_crossovers

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
