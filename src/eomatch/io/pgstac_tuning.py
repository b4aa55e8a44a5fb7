"""What makes pgSTAC answer fast at a million items, installed at ``eomatch db init``/migrate.

All of it is pgSTAC's own means or PostgreSQL settings, measured on a 2-core machine with the
1M-item synthetic catalogue of ``benchmarks/catalogue_synth.py`` (docs/service.md, "Scale",
has the figures):

* **Queryables with property indexes.** The matchup properties cal/val users filter on most
  (``matchup:time_diff_abs``, ``matchup:collocation_area_km2``) are registered in
  ``pgstac.queryables`` with a type and ``property_index_type = 'BTREE'``: pgSTAC then reads
  them through ``to_float`` and keeps a btree on that expression in the items partitions
  they apply to, existing and future (``maintain_partitions`` runs when a queryable changes
  and when a partition is created). A selective CQL2 filter is then an index scan, not a
  walk through the partition in datetime order. Listing them also documents them at ``/queryables``.
  Their ``collection_ids`` are the matchup collections (events and products never hold
  these properties): a trigger on ``pgstac.collections`` keeps the list as collections come
  and go, so the partitions of events and products carry no such index. Every search over
  all collections plans every partition's indexes; the ~87 event and product partitions'
  pair cost ~2 ms of each (1M items: pgSTAC ``search()`` p50, bbox+datetime 23.9 -> 22.0 ms,
  sortby datetime 19.0 -> 16.1 ms). While no matchup collection exists the list is NULL
  (every collection, pgSTAC's meaning), so ``/queryables`` always lists them.
* **A (geometry, time range) GiST index** on ``pgstac.items``, ``eomatch_items_geometry_time``
  on ``(geometry, tstzrange(datetime, end_datetime, '[]'))`` (exactly:
  :data:`~eomatch.io.thirdparty.ITEM_TIME_RANGE`): a partitioned index, so
  PostgreSQL makes it on every partition, present and future. pgSTAC's own indexes answer a
  bbox + datetime search with a geometry scan ANDed with a scan of every item older than the
  window's end (a btree on ``datetime`` cannot bound an overlap from below); with this index
  and the range clause :data:`eomatch.io.thirdparty.OPEN_INTERVAL` adds to a closed interval,
  it is one descent per partition (1M items, pgSTAC's SQL for the benchmark's searches, p50
  24.5 -> 13.9 ms). It costs ~1 ms of planning for searches that cannot use it (sortby
  datetime from a date, 17.6 -> 18.7 ms) and is built in seconds (4 s at 1M items).
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

import orjson
import psycopg
from psycopg import sql

from eomatch.core.products import EVENTS_PREFIX, PAIR_SEPARATOR
from eomatch.core.vocabulary import COLLOCATION_AREA_PROP, TIME_DIFF_ABS_PROP
from eomatch.io.thirdparty import ITEM_TIME_RANGE, sql_literal

__all__ = [
    "GEOMETRY_TIME_INDEX_SQL",
    "INDEXED_QUERYABLES",
    "MATCHUP_QUERYABLES_SQL",
    "ROLE_SETTINGS",
    "Queryable",
    "install_tuning",
]


@dataclass(frozen=True)
class Queryable:
    """A matchup property registered in ``pgstac.queryables`` (for the matchup collections)."""

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
"""Queryables with a btree on every matchup collection's items partition."""

ROLE_SETTINGS: dict[str, str] = {"max_parallel_workers_per_gather": "0", "jit": "off"}
"""Session defaults of the API roles (``ALTER ROLE ... SET``)."""
API_ROLES = ("eomatch_api", "eomatch_reader")
PGSTAC_SETTINGS: dict[str, str] = {"context": "off"}


def _matchup_queryables_sql() -> str:
    defs = orjson.dumps(
        [
            {"name": q.name, "definition": q.definition, "index_type": q.index_type}
            for q in INDEXED_QUERYABLES
        ]
    ).decode()
    return f"""
-- Runs as pgstac_admin (pgSTAC's owner, not a superuser): it must update pgstac.queryables and
-- drop indexes of partitions whoever writes a collection, and pgstac_ingest may create objects
-- in schema pgstac, so nothing here may run with more than pgSTAC's own rights.
CREATE OR REPLACE FUNCTION eomatch.sync_matchup_queryables() RETURNS text[]
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pgstac, public AS $fn$
DECLARE
    defs jsonb := {sql_literal(defs)};
    wanted text[];
    q record;
    r record;
    changed text[] := '{{}}';
    locked boolean := false;
BEGIN
    LOOP
        -- the matchup collections (eomatch.core.stac_items.collection_kind); NULL: none yet
        wanted := (
            SELECT pgstac.canonical_collection_ids(pg_catalog.array_agg(c.id))
            FROM pgstac.collections c
            WHERE NOT pg_catalog.starts_with(c.id, {sql_literal(EVENTS_PREFIX)})
              AND pg_catalog.strpos(c.id, {sql_literal(PAIR_SEPARATOR)}) > 0
        );
        EXIT WHEN locked OR NOT EXISTS (
            SELECT FROM pg_catalog.jsonb_to_recordset(defs)
                AS x(name text)
            WHERE NOT EXISTS (
                SELECT FROM pgstac.queryables g
                WHERE g.name = x.name
                  AND pg_catalog.array_to_string(g.collection_ids, chr(1))
                      IS NOT DISTINCT FROM pg_catalog.array_to_string(wanted, chr(1))
            )
        );
        -- a change to make: lock the rows (in id order, as pgSTAC's own updates meet them),
        -- then read the list again, so two pairs added at once both end up in it
        PERFORM FROM pgstac.queryables g
        WHERE g.name IN (
            SELECT x.name FROM pg_catalog.jsonb_to_recordset(defs)
                AS x(name text)
        )
        ORDER BY g.id FOR UPDATE;
        locked := true;
    END LOOP;
    IF NOT locked THEN
        RETURN changed;  -- nothing to do: no lock taken (most collection writes)
    END IF;
    FOR q IN SELECT * FROM pg_catalog.jsonb_to_recordset(defs)
                 AS x(name text, definition jsonb, index_type text) LOOP
        SELECT * INTO r FROM pgstac.queryables g WHERE g.name = q.name ORDER BY g.id LIMIT 1;
        IF NOT FOUND OR r.definition::text IS DISTINCT FROM q.definition::text
           OR r.property_index_type IS DISTINCT FROM q.index_type
           OR r.property_wrapper IS NOT NULL OR r.property_path IS NOT NULL THEN
            PERFORM pgstac.upsert_queryable(q.name, q.definition, NULL, q.index_type, wanted);
            changed := pg_catalog.array_append(changed, q.name);
        ELSIF pg_catalog.array_to_string(r.collection_ids, chr(1))
              IS DISTINCT FROM pg_catalog.array_to_string(wanted, chr(1)) THEN
            UPDATE pgstac.queryables SET collection_ids = wanted WHERE id = r.id;
            changed := pg_catalog.array_append(changed, q.name);
        END IF;
    END LOOP;
    IF pg_catalog.cardinality(changed) > 0 AND wanted IS NOT NULL THEN
        -- pgSTAC indexes the partitions a queryable gains, and leaves those it loses
        PERFORM pgstac.maintain_index(i.partition, i.indexname, NULL, true, false)
        FROM pgstac.queryable_indexes('items', false) i
        WHERE i.queryable_id IS NULL AND EXISTS (
            SELECT FROM pg_catalog.jsonb_to_recordset(defs)
                AS x(name text)
            WHERE pg_catalog.strpos(i.existing_idx, pg_catalog.quote_literal(x.name)) > 0
        );
    END IF;
    RETURN changed;
END
$fn$;
REVOKE ALL ON FUNCTION eomatch.sync_matchup_queryables() FROM PUBLIC;

CREATE OR REPLACE FUNCTION eomatch.follow_matchup_collections() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pgstac, public AS $fn$
BEGIN
    PERFORM eomatch.sync_matchup_queryables();
    RETURN NULL;
END
$fn$;
REVOKE ALL ON FUNCTION eomatch.follow_matchup_collections() FROM PUBLIC;
GRANT USAGE ON SCHEMA eomatch TO pgstac_admin;
ALTER FUNCTION eomatch.sync_matchup_queryables() OWNER TO pgstac_admin;
ALTER FUNCTION eomatch.follow_matchup_collections() OWNER TO pgstac_admin;

CREATE OR REPLACE TRIGGER eomatch_matchup_queryables
AFTER INSERT OR UPDATE OR DELETE ON pgstac.collections
FOR EACH STATEMENT EXECUTE FUNCTION eomatch.follow_matchup_collections();
"""


MATCHUP_QUERYABLES_SQL = _matchup_queryables_sql()
"""``eomatch.sync_matchup_queryables()`` (registers :data:`INDEXED_QUERYABLES` for the matchup
collections, drops their indexes from other partitions) and the statement trigger on
``pgstac.collections`` that runs it after every insert, update and delete of collections."""


GEOMETRY_TIME_INDEX_SQL = (
    "CREATE INDEX IF NOT EXISTS eomatch_items_geometry_time ON pgstac.items "
    f"USING gist (geometry, ({ITEM_TIME_RANGE}))"
)
"""The partitioned (geometry, time range) index bbox + datetime searches use."""


def install_tuning(conn: psycopg.Connection[Any]) -> list[str]:
    """Register the queryables, the API roles' settings and pgSTAC's settings (idempotent).

    Runs in the caller's transaction, as a role that may alter roles and write
    ``pgstac.queryables`` (the ``db init`` superuser). Returns the queryables (re)registered.
    """
    conn.execute(GEOMETRY_TIME_INDEX_SQL)
    conn.execute(MATCHUP_QUERYABLES_SQL)
    row = conn.execute("SELECT eomatch.sync_matchup_queryables()").fetchone()
    changed = list(row[0]) if row else []
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
