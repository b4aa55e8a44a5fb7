"""Pictures: crossover maps and matchup footprints (matplotlib, offline coastlines).

Behind the ``plot`` extra: without it, importing this package raises a one-line
:class:`~eomatch.errors.MissingExtraError` naming the install command.
"""

from eomatch.extras import require_extra

require_extra("plot", "plotting (--plot)")
