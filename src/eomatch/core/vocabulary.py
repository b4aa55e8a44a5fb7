"""The names eomatch writes into STAC documents, and the bbox type, defined once.

Modelled on pystac's extension modules (``eo.py``: ``CLOUD_COVER_PROP = "eo:cloud_cover"``):
every reader and writer uses these constants, so a field cannot be misspelt in one place and the
schema (``eomatch/schemas/eomatch-extension-v1.0.0.json``) has one list to agree with.

Two prefixes:

* ``matchup:`` — the previous generation's fields (kept, so its catalogues and users read ours):
  on event and matchup items, and ``matchup:role`` on their ``related`` links.
* ``eomatch:`` — fields this generation added: item kind, predicted products, the crossover
  record on event items, versioned analysis assets, the source of a copied asset.
"""

from __future__ import annotations

from typing import Final

EXTENSION_URI: Final = "https://eomatch.github.io/stac-extension/v1.0.0/schema.json"
"""Schema URI of the shipped extension, listed in every item's ``stac_extensions``."""
EXTENSION_SCHEMA_FILE: Final = "eomatch-extension-v1.0.0.json"
"""The schema's file in ``eomatch/schemas/``."""

MATCHUP_PREFIX: Final = "matchup:"
EOMATCH_PREFIX: Final = "eomatch:"

# --- matchup:* ------------------------------------------------------------------------------

COLLECTIONS_PROP: Final = "matchup:collections"
"""Event and matchup items: product collections, sorted by sensor (collection, platform)."""
PLATFORMS_PROP: Final = "matchup:platforms"
"""Event and matchup items: platforms, paired by position with ``matchup:collections``."""
EVENT_ID_PROP: Final = "matchup:event_id"
"""Matchup items: id of the event the matchup belongs to."""
TIME_DIFF_ABS_PROP: Final = "matchup:time_diff_abs"
"""Matchup items: max(start) - min(start) over the products, in seconds."""
COLLOCATION_AREA_PROP: Final = "matchup:collocation_area_km2"
"""Matchup items: area of the collocation region (the footprints' intersection), km²."""
ROLE_FIELD: Final = "matchup:role"
"""On ``related`` links: what the target is (:data:`ROLE_EVENT` or :data:`ROLE_MATCHUP`)."""
ROLE_EVENT: Final = "event"
ROLE_MATCHUP: Final = "matchup"

# --- eomatch:* ------------------------------------------------------------------------------

KIND_PROP: Final = "eomatch:kind"
"""Every item: ``product``, ``event`` or ``matchup``."""
PREDICTED_PROP: Final = "eomatch:predicted"
"""Product items: true when the footprint was predicted from the orbit (nothing to download)."""
VERSION_PROP: Final = "eomatch:version"
"""Versioned analysis assets: the version date (``comparison:YYYY-MM-DD``...)."""
SOURCE_HREF_FIELD: Final = "eomatch:source_href"
"""On an asset copied into the catalogue: where it was copied from."""
START_B_PROP: Final = "eomatch:start_b"
"""Event items: start of the second sensor's run over the event."""
END_B_PROP: Final = "eomatch:end_b"
"""Event items: end of the second sensor's run over the event."""


def crossover_prop(name: str) -> str:
    """The event-item property holding crossover record field ``name`` (``eomatch:{name}``)."""
    return EOMATCH_PREFIX + name


# --- types ----------------------------------------------------------------------------------

BBox = tuple[float, float, float, float]
"""``(west, south, east, north)`` in degrees; west > east crosses the antimeridian."""
