"""Seed-compatible module name for the matchup catalogue (with ``download_products``).

See :mod:`eomatch.workflows.catalogue`.
"""

from eomatch.workflows.catalogue import MatchupCatalogue

__all__ = ["MatchupCatalogue"]
