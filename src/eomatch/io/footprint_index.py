"""Every item's footprint in one table beside pgSTAC's partitions: searches of all collections.

pgSTAC keeps items in one partition per collection (165 in the 1M-item benchmark catalogue). A
search that names no collection (a bbox and a time window, ``ids``, the newest items, a
``datetime`` sort) is planned and run over every partition: at 1M items ~12 ms of planning
and ~6 ms of execution, whatever it returns (docs/service.md, "Scale"). Measured there,
pgSTAC's ``search()`` for the benchmark's bbox + datetime searches took 23.9 ms; read from
this table, 3.6 ms, the same answers.

``eomatch.item_footprints`` holds what those searches filter and sort on, under the same column
names and types as ``pgstac.items``: ``collection``, ``id``, ``datetime``, ``end_datetime``,
``geometry``. So the WHERE and ORDER BY that pgSTAC writes for a search run on it unchanged,
and any search that reads ``content`` (a property filter or sort) is left to pgSTAC. Its
indexes are the partitions' own: the key (``id``, ``collection``), the (geometry, time range)
GiST, pgSTAC's ``(datetime DESC, end_datetime)`` btree.

* **Kept by the database.** A row trigger on ``pgstac.items`` (cloned by PostgreSQL to every
  partition, present and future, so pypgstac's ``COPY`` into a partition fires it too) writes
  each insert, update and delete through; a trigger on ``pgstac.collections`` drops a deleted
  collection's rows (pgSTAC drops its partition, which fires no row trigger; those rows are
  found by a scan of the table: deleting a collection is rare). TRUNCATE of items is refused
  and of a partition not granted (:mod:`eomatch.io.history_schema`,
  :data:`eomatch.io.thirdparty.PARTITION_GRANTS`). Every door that writes items (ingest, the
  APIs' transactions, ``--push``, jobs, harvests, rollback, plain SQL) keeps it current in the
  same transaction; nothing else writes it (the API roles may only read it, and may not hang
  its SECURITY DEFINER trigger functions on tables of their own).
* **Used by pgSTAC's own search.** ``search()`` (:data:`eomatch.io.thirdparty.FOOTPRINT_ROUTE`)
  calls ``eomatch.search_rows_routed`` where it called ``search_rows``. That asks
  ``eomatch.footprints_serve`` of the search's own WHERE clause (before a paging token adds
  its comparisons of collection and id, so every page takes the same path) and, for a search
  that restricts no collection and reads only these columns, takes the first ``limit`` keys
  in order from this table, then the items from their own partitions, grouped by collection
  so that each is an index probe in a partition known when the query is planned. The WHERE
  clause is applied again to those items, and the order and limit: the rows are pgSTAC's,
  by construction.
  Searches naming collections stay on the partitions: a page of 1000 over 156 collections was
  34 ms there and 92 ms here.
* **Switch.** ``SET eomatch.footprints = off`` (a session, a role, the database) sends every
  search to the partitions: the tests compare both paths with it.

Made and filled by ``eomatch db init``/migrate in one transaction. Migrate holds items and
collections locked until it commits (its trigger definitions need it, as the history's do), so
reads wait too: the first migrate of a 1M-item catalogue fills the table in ~15 s.
"""

from __future__ import annotations

from eomatch.io.thirdparty import ITEM_TIME_RANGE

__all__ = ["FOOTPRINT_SETTING", "FOOTPRINT_SQL"]

FOOTPRINT_SETTING = "eomatch.footprints"
"""The session setting that turns the footprint path off (``off``); anything else leaves it on."""

FOOTPRINT_SQL = f"""
DO $do$
BEGIN
    IF to_regclass('eomatch.item_footprints') IS NULL THEN
        -- no item may be written between the fill and the trigger below
        LOCK TABLE pgstac.items, pgstac.collections IN SHARE ROW EXCLUSIVE MODE;
        CREATE TABLE eomatch.item_footprints (
            collection text NOT NULL,
            id text NOT NULL,
            datetime timestamptz NOT NULL,
            end_datetime timestamptz NOT NULL,
            geometry geometry NOT NULL,
            -- id first: it also answers ids across collections (one index, not two: 1M
            -- items, 132 + 67 MB as (collection, id) and (id))
            PRIMARY KEY (id, collection)
        );
        INSERT INTO eomatch.item_footprints (collection, id, datetime, end_datetime, geometry)
        SELECT collection, id, datetime, end_datetime, geometry FROM pgstac.items;
    END IF;
END
$do$;
CREATE INDEX IF NOT EXISTS item_footprints_geometry_time ON eomatch.item_footprints
    USING gist (geometry, ({ITEM_TIME_RANGE}));
-- pgSTAC's own (datetime DESC, end_datetime): a sort by datetime walks it, and a bound on
-- end_datetime (an open interval) is tested in the index, not on the table
CREATE INDEX IF NOT EXISTS item_footprints_datetime
    ON eomatch.item_footprints (datetime DESC, end_datetime);
REVOKE ALL ON eomatch.item_footprints FROM PUBLIC;
-- every role that searches reads it (pgSTAC's search runs as its caller); nothing in eomatch
-- that USAGE opens to them writes or reveals more (the history's tables stay closed)
GRANT USAGE ON SCHEMA eomatch TO pgstac_read;
GRANT SELECT ON eomatch.item_footprints TO pgstac_read, pgstac_admin;

CREATE OR REPLACE FUNCTION eomatch.item_footprint() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $fn$
BEGIN
    IF TG_OP = 'DELETE' THEN
        DELETE FROM eomatch.item_footprints WHERE collection = OLD.collection AND id = OLD.id;
        RETURN NULL;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        IF OLD.collection <> NEW.collection OR OLD.id <> NEW.id THEN
            DELETE FROM eomatch.item_footprints
            WHERE collection = OLD.collection AND id = OLD.id;
        END IF;
    END IF;
    INSERT INTO eomatch.item_footprints AS f (collection, id, datetime, end_datetime, geometry)
    VALUES (NEW.collection, NEW.id, NEW.datetime, NEW.end_datetime, NEW.geometry)
    ON CONFLICT (id, collection) DO UPDATE SET
        datetime = EXCLUDED.datetime,
        end_datetime = EXCLUDED.end_datetime,
        geometry = EXCLUDED.geometry
    WHERE (f.datetime, f.end_datetime, ST_AsEWKB(f.geometry))
        IS DISTINCT FROM (EXCLUDED.datetime, EXCLUDED.end_datetime, ST_AsEWKB(EXCLUDED.geometry));
    RETURN NULL;
END
$fn$;
-- CREATE TRIGGER asks only for EXECUTE: a role holding it could hang this SECURITY DEFINER
-- function on a table of its own and write footprints. pgstac_admin keeps it: it creates the
-- partitions (pgstac.check_partition), which clones the trigger onto each.
REVOKE EXECUTE ON FUNCTION eomatch.item_footprint() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION eomatch.item_footprint() TO pgstac_admin;
CREATE OR REPLACE TRIGGER eomatch_item_footprint
    AFTER INSERT OR UPDATE OR DELETE ON pgstac.items
    FOR EACH ROW EXECUTE FUNCTION eomatch.item_footprint();

CREATE OR REPLACE FUNCTION eomatch.collection_footprints() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $fn$
BEGIN
    -- pgSTAC drops the collection's partition: no row trigger tells us of its items
    DELETE FROM eomatch.item_footprints WHERE collection = OLD.id;
    RETURN NULL;
END
$fn$;
REVOKE EXECUTE ON FUNCTION eomatch.collection_footprints() FROM PUBLIC;
CREATE OR REPLACE TRIGGER eomatch_collection_footprints
    AFTER DELETE ON pgstac.collections
    FOR EACH ROW EXECUTE FUNCTION eomatch.collection_footprints();

-- Whether a search reads the footprints, asked of its own WHERE clause (without a paging
-- token's): not switched off, no collection restriction (pgSTAC writes "collections" as
-- collection = ANY (...); a CQL2 filter on collection alike), and no column the table lacks.
-- A false "no" only costs speed; a "yes" is safe because the clause runs on the table's own
-- columns, by the items' names.
CREATE OR REPLACE FUNCTION eomatch.footprints_serve(_where text, _orderby text) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog AS $fn$
    SELECT coalesce(current_setting('{FOOTPRINT_SETTING}', true), '') <> 'off'
       AND _where !~* '\\mcollection\\s*(=|in\\M)'
       AND concat(_where, ' ', _orderby) !~* '\\m(content|private)\\M';
$fn$;

-- pgSTAC's search() calls this where it called search_rows (thirdparty.FOOTPRINT_ROUTE):
-- _search_where is the search's clause, _where that with the paging token's comparisons.
CREATE OR REPLACE FUNCTION eomatch.search_rows_routed(
    _search_where text, _where text, _orderby text, partitions text[], _limit integer
) RETURNS SETOF pgstac.items
LANGUAGE plpgsql SET search_path = pgstac, public AS $fn$
BEGIN
    IF nullif(btrim(_where), '') IS NULL THEN
        _where := 'TRUE';
    END IF;
    IF eomatch.footprints_serve(coalesce(nullif(btrim(_search_where), ''), 'TRUE'), _orderby) THEN
        RETURN QUERY SELECT * FROM eomatch.search_footprints(_where, _orderby, _limit);
    ELSE
        RETURN QUERY SELECT * FROM pgstac.search_rows(_where, _orderby, partitions, _limit);
    END IF;
END
$fn$;

-- The first _limit keys in order from the footprints, then those items from their partitions
-- (one branch per collection, so each is pruned to its partition at planning), the WHERE
-- applied again and the order and limit too: the rows are the ones the partitions give.
CREATE OR REPLACE FUNCTION eomatch.search_footprints(_where text, _orderby text, _limit integer)
RETURNS SETOF pgstac.items
-- STABLE: both queries read the calling query's snapshot. With a snapshot each (VOLATILE), an
-- item deleted between them would leave a short page and search() would give no next link.
LANGUAGE plpgsql STABLE SET search_path = pgstac, public AS $fn$
DECLARE
    branches text;
BEGIN
    EXECUTE format(
        $q$
        SELECT string_agg(pg_catalog.format(%L, c, ids), ' UNION ALL ')
        FROM (
            SELECT collection AS c, pg_catalog.array_agg(id) AS ids
            FROM (
                SELECT collection, id FROM eomatch.item_footprints
                WHERE %s ORDER BY %s LIMIT %L
            ) k
            GROUP BY collection
        ) g
        $q$,
        'SELECT * FROM pgstac.items WHERE collection = %L AND id = ANY (%L::text[])',
        _where, _orderby, _limit
    ) INTO branches;
    IF branches IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY EXECUTE format(
        'SELECT * FROM (%s) items WHERE %s ORDER BY %s LIMIT %L',
        branches, _where, _orderby, _limit
    );
END
$fn$;
"""
"""The table, its triggers, and the functions pgSTAC's edited ``search()`` calls
(``search_rows_routed``, which asks ``footprints_serve`` and runs ``search_footprints`` or
pgSTAC's ``search_rows``); idempotent. Run by the ``db init`` superuser, after the history
schema (whose grants keep writers from truncating the partitions this table mirrors)."""
