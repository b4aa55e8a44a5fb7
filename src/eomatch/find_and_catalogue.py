"""Seed-compatible module name for :func:`eomatch.workflows.find.find_and_catalogue`."""

from eomatch.workflows.find import FindSummary, find_and_catalogue

__all__ = ["FindSummary", "find_and_catalogue"]
