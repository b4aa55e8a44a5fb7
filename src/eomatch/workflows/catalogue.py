"""The matchup catalogue with its use cases: ``cat.download_products(event_set=events)``.

:class:`MatchupCatalogue` is :class:`eomatch.io.catalogue.MatchupCatalogue` plus
``download_products``, as the seed documents print it. The method lives in this layer, not in
``io``: downloading is a use case, which the storage layer must not import. The seed module
``eomatch.mu_stac`` and ``find_and_catalogue``'s result use this class.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from eomatch.context import EOMatchContext
from eomatch.core.products import MatchupEvent, Product
from eomatch.io import catalogue as _catalogue
from eomatch.io.credentials import CredentialStore
from eomatch.io.downloads import DownloadJob, DownloadReport
from eomatch.timeparse import TimeLike
from eomatch.workflows.products import Selection, credential_store, download_products


@dataclass
class _EventSet(Selection):
    """A selection given as events (from :meth:`MatchupCatalogue.get_events`)."""

    events: Sequence[MatchupEvent] = field(default_factory=list)

    def products(self, cat: _catalogue.MatchupCatalogue) -> list[Product]:
        """Distinct products of the events' matchups, read back from the catalogue (current
        assets: a product downloaded since the events were read is not fetched again)."""
        ids = sorted({p.id for e in self.events for m in e.matchups for p in m.products})
        return cat.products(ids)


class MatchupCatalogue(_catalogue.MatchupCatalogue):
    """:class:`eomatch.io.catalogue.MatchupCatalogue` with :meth:`download_products`."""

    def download_products(
        self,
        event_set: Iterable[MatchupEvent] | None = None,
        *,
        collections: Sequence[str] | None = None,
        platforms: Sequence[str] | None = None,
        start_time: TimeLike | None = None,
        stop_time: TimeLike | None = None,
        bbox: Sequence[float] | None = None,
        filter: str | None = None,
        concurrency: int = 4,
        progress: Callable[[DownloadJob, int, int | None], None] | None = None,
        context: EOMatchContext | None = None,
        products_root: str | os.PathLike[str] | None = None,
        credentials: CredentialStore | None = None,
    ) -> DownloadReport:
        """Download every product of ``event_set`` once and register it as its ``data`` asset.

        Without ``event_set`` the events are selected by the filters of :meth:`get_events`.
        Products already on disk are registered without downloading; each product item is
        saved as soon as its file is in place. Returns the report (``failed`` lists what
        could not be fetched).

        Credentials come from ``context``'s ``credentials:`` section (else ``credentials``,
        else the environment and ``~/.netrc``); files go under ``products_root`` (else the
        context's ``downloads.products_root``, else the catalogue's ``data/``).
        """
        selection: Selection
        if event_set is not None:
            selection = _EventSet(events=list(event_set))
        else:
            selection = Selection(collections, platforms, start_time, stop_time, bbox, filter)
        config = context.config if context is not None else None
        if products_root is None and config is not None:
            products_root = config.downloads.products_root
        owned = credential_store(config) if credentials is None else None
        with contextlib.nullcontext() if owned is None else owned:
            return download_products(
                self,
                selection,
                concurrency=concurrency,
                progress=progress,
                products_root=products_root,
                credentials=credentials or owned,
            )
