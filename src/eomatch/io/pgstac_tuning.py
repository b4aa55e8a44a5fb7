"""What makes pgSTAC answer fast at a million items, installed at ``eomatch db init``/migrate.

All of it is pgSTAC's own means or PostgreSQL settings, measured on a 2-core machine with the
1M-item synthetic catalogue of ``benchmarks/catalogue_synth.py`` (docs/service.md, "Scale",
has the figures):

* **Queryables with property indexes.** The matchup properties cal/val users filter on most
  (``matchup:time_diff_abs``, ``matchup:collocation_area_km2``) are registered in
  ``pgstac.queryables`` with a type and ``property_index_type = 'BTREE'``: pgSTAC then reads
  them through ``to_float`` and keeps a btree on that expression in every items partition,
  existing and future (``maintain_partitions`` runs when a queryable is added and when a
  partition is created). A selective CQL2 filter is then an index scan, not a walk through
  the partition in datetime order. Listing them also documents them at ``/queryables``.
* **No parallel query and no JIT for the API roles.** A search is ``LIMIT 10``-sized work
  over up to ~170 partitions (one per collection); PostgreSQL planned parallel bitmap scans
  for the bbox + datetime search, and on 2 shared cores starting the workers cost more than
  the scans (pgSTAC ``search()`` for that shape at 200 000 items: p50 231 -> 62 ms).
* **Counts stay off** (pgSTAC's ``context`` setting, its default): ``numberMatched`` would
  cost a count per page, and ``eomatch query`` does not need it.

Idempotent: a queryable already registered as wanted is left alone (re-registering would
drop and rebuild its indexes on every partition).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from eomatch.core.vocabulary import COLLOCATION_AREA_PROP, TIME_DIFF_ABS_PROP

__all__ = ["INDEXED_QUERYABLES", "ROLE_SETTINGS", "Queryable", "install_tuning"]


@dataclass(frozen=True)
class Queryable:
    """A property registered in ``pgstac.queryables`` (for every collection)."""

    name: str
    definition: dict[str, Any]
    index_type: str | None = "BTREE"


INDEXED_QUERYABLES: tuple[Queryable, ...] = (
    Queryable(
        TIME_DIFF_ABS_PROP,
        {
            "title": "Matchup time difference",
            "description": "Absolute time between the two acquisitions of a matchup, seconds",
            "type": "number",
            "minimum": 0,
        },
    ),
    Queryable(
        COLLOCATION_AREA_PROP,
        {
            "title": "Matchup collocation area",
            "description": "Area where the two acquisitions of a matchup overlap, km2",
            "type": "number",
            "minimum": 0,
        },
    ),
)
"""Queryables with a btree on every items partition."""

ROLE_SETTINGS: dict[str, str] = {"max_parallel_workers_per_gather": "0", "jit": "off"}
"""Session defaults of the API roles (``ALTER ROLE ... SET``)."""
API_ROLES = ("eomatch_api", "eomatch_reader")
PGSTAC_SETTINGS: dict[str, str] = {"context": "off"}


def install_tuning(conn: psycopg.Connection[Any]) -> list[str]:
    """Register the queryables, the API roles' settings and pgSTAC's settings (idempotent).

    Runs in the caller's transaction, as a role that may alter roles and write
    ``pgstac.queryables`` (the ``db init`` superuser). Returns the queryables (re)registered.
    """
    changed = []
    for q in INDEXED_QUERYABLES:
        row = conn.execute(
            "SELECT definition, property_wrapper, property_index_type, collection_ids, "
            "property_path FROM pgstac.queryables WHERE name = %s",
            (q.name,),
        ).fetchall()
        if row == [(q.definition, None, q.index_type, None, None)]:
            continue
        conn.execute(
            "SELECT pgstac.upsert_queryable(%s, %s, NULL, %s)",
            (q.name, Jsonb(q.definition), q.index_type),
        )
        changed.append(q.name)
    for role in API_ROLES:
        for name, value in ROLE_SETTINGS.items():
            conn.execute(
                sql.SQL("ALTER ROLE {} SET {} = {}").format(
                    sql.Identifier(role), sql.Identifier(name), sql.Literal(value)
                )
            )
    for name, value in PGSTAC_SETTINGS.items():
        conn.execute(
            "INSERT INTO pgstac.pgstac_settings (name, value) VALUES (%s, %s) "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (name, value),
        )
    return changed
