"""The seed documents' ``find_and_catalogue``: run the finder, return the catalogue.

::

    ctx = EOMatchContext("my_config.yaml")
    catalogue = find_and_catalogue(context=ctx, path="/data/my_catalogue")
    events = catalogue.get_events()
    print(catalogue.last_run)        # what the run found and added (a FindSummary)

The use case itself (:func:`eomatch.workflows.find.find_and_catalogue`, used by ``eomatch find``)
returns only the summary; this entry point opens the catalogue it wrote, as the previous
generation's function did, and keeps the summary as :attr:`FoundCatalogue.last_run`.
"""

from __future__ import annotations

from pathlib import Path

from eomatch.config.models import RunConfig
from eomatch.context import EOMatchContext
from eomatch.workflows.catalogue import MatchupCatalogue
from eomatch.workflows.find import FindSummary, Progress
from eomatch.workflows.find import find_and_catalogue as _run

__all__ = ["FindSummary", "FoundCatalogue", "find_and_catalogue"]


class FoundCatalogue(MatchupCatalogue):
    """The catalogue a run wrote, open, with what that run did (:attr:`last_run`)."""

    last_run: FindSummary | None = None
    """The run's summary: crossovers, events, matchups, products found and new, warnings."""


def find_and_catalogue(
    context: EOMatchContext | RunConfig,
    path: str | Path | None = None,
    *,
    progress: Progress | None = None,
) -> FoundCatalogue:
    """Find the configured matchups, merge them into the catalogue at ``path``, and open it.

    Args:
        context: the run configuration (``EOMatchContext(file)`` or a ``RunConfig``).
        path: catalogue root (or its ``catalog.json``); default ``matchup_catalogue.path``.
        progress: ``(stage, done, total)`` callback.

    Returns:
        The catalogue, open (close it, or use it in a ``with`` block, to release its index);
        ``catalogue.last_run`` holds the run's :class:`FindSummary`.

    Raises:
        EomatchError: incomplete configuration, no TLE coverage, unreachable product source.
    """
    summary = _run(context, path, progress=progress)
    catalogue = FoundCatalogue.open(summary.catalogue)
    if not isinstance(catalogue, FoundCatalogue):  # open() always builds ``cls``; be explicit
        raise TypeError(f"MatchupCatalogue.open returned {type(catalogue).__name__}")
    catalogue.last_run = summary
    return catalogue
