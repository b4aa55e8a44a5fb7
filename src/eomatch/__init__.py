"""eomatch: find, catalogue and serve Earth-observation satellite matchups."""

from eomatch._version import __version__
from eomatch.context import EOMatchContext
from eomatch.core.crossovers import Crossover, CrossoverParams
from eomatch.core.satellites import Satellite, SatelliteRegistry, Sensor
from eomatch.errors import EomatchError
from eomatch.workflows.crossovers import find_crossovers

__all__ = [
    "Crossover",
    "EOMatchContext",
    "CrossoverParams",
    "EomatchError",
    "Satellite",
    "SatelliteRegistry",
    "Sensor",
    "__version__",
    "find_crossovers",
]
