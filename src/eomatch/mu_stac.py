"""Seed-compatible module name for :class:`eomatch.io.catalogue.MatchupCatalogue`."""

from eomatch.io.catalogue import MatchupCatalogue

__all__ = ["MatchupCatalogue"]
