"""Catalogue history captured by the database itself: no write path can bypass it.

Row triggers on ``pgstac.items`` (cloned by PostgreSQL to every partition, present and future)
and on ``pgstac.collections`` record each change into ``eomatch.change_log`` (read through the
view ``eomatch.changes``), grouped into one ``eomatch.transactions`` row per database
transaction. A caller *describes* its transaction by
setting ``eomatch.actor``, ``eomatch.kind``, ``eomatch.message`` and ``eomatch.run`` (see
:func:`describe_sql`); a writer that sets nothing (psql, a script) is still recorded, as
``db:<role>`` of kind ``sql``.

What is stored is the state *before* each change (an item's row as pgSTAC stored it, hydrated
into its STAC document when read; nothing for an insert). The state after a change is the state
before the next change of the same document, or the current row: so an insert costs one small
row, and no past state is lost. A deferred
constraint trigger stamps each transaction with its commit time and a commit sequence number
just before it commits; "the catalogue at T" is the effect of every transaction committed by T.

The history tables belong to the installing (admin) role. The trigger functions run as that
role (SECURITY DEFINER); the ingest and API roles can only read the history, so they add to it
by writing items and never change or delete it. ``purge`` is the admin's, and is itself logged.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass, replace

__all__ = ["HISTORY_GRANTS_SQL", "HISTORY_SQL", "KINDS", "WriteNote", "describe_sql"]

KINDS = ("ingest", "prune", "push", "api", "rollback", "purge", "job", "harvest", "process", "sql")
"""Kinds of transaction: ``sql`` is a writer that did not describe itself."""


@dataclass(frozen=True)
class WriteNote:
    """Who writes, why: what the history records for the transactions of one command."""

    actor: str
    kind: str
    message: str | None = None
    run: str | None = None

    @classmethod
    def cli(cls, kind: str, message: str | None = None, run: str | None = None) -> WriteNote:
        """A command run by the OS user (``user:<name>``)."""
        try:
            user = getpass.getuser()
        except (KeyError, OSError):  # no passwd entry (some containers)
            user = "unknown"
        return cls(f"user:{user}", kind, message, run)

    def as_kind(self, kind: str) -> WriteNote:
        """The same writer, another kind of change (an ingest's prune)."""
        return replace(self, kind=kind)

    def params(self) -> tuple[str, str, str | None, str | None]:
        """The parameters of :func:`describe_sql`."""
        return (self.actor, self.kind, self.message, self.run)


HISTORY_SQL = r"""
CREATE TABLE IF NOT EXISTS eomatch.history_meta (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    began_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    purged_before timestamptz
);
INSERT INTO eomatch.history_meta (singleton) VALUES (true) ON CONFLICT DO NOTHING;

CREATE SEQUENCE IF NOT EXISTS eomatch.history_commit_seq;

CREATE TABLE IF NOT EXISTS eomatch.transactions (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    xid xid8 NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    committed_at timestamptz,
    commit_seq bigint UNIQUE,
    actor text NOT NULL,
    kind text NOT NULL,
    message text,
    run text,
    db_user text NOT NULL DEFAULT session_user
);
CREATE INDEX IF NOT EXISTS transactions_committed ON eomatch.transactions (committed_at);
CREATE INDEX IF NOT EXISTS transactions_run ON eomatch.transactions (run) WHERE run IS NOT NULL;

-- One row per document changed by a transaction: what it was before the transaction (nothing
-- for an insert). ``id`` is '' for a collection's own row. An item's old row is kept as pgSTAC
-- stored it (b_*: dehydrated content tagged with its base item, binary geometry): copying it
-- costs what the insert path costs, where hydrating it in the trigger made updates 7-10x
-- slower. ``before`` holds collections, and items hydrated at once when their base item is
-- about to go (their collection is deleted). The view ``eomatch.changes`` hydrates on read.
DO $$
BEGIN  -- the first layout (before b_*) had the table under the view's name
    IF to_regclass('eomatch.changes') IS NOT NULL AND (
        SELECT relkind FROM pg_class WHERE oid = to_regclass('eomatch.changes')) = 'r' THEN
        ALTER TABLE eomatch.changes RENAME TO change_log;
    END IF;
END $$;
CREATE TABLE IF NOT EXISTS eomatch.change_log (
    seq bigint GENERATED ALWAYS AS IDENTITY,
    tx bigint NOT NULL,
    kind text NOT NULL CHECK (kind IN ('item', 'collection')),
    collection text NOT NULL,
    id text NOT NULL,
    op text NOT NULL CHECK (op IN ('insert', 'update', 'delete')),
    before jsonb,
    PRIMARY KEY (tx, kind, collection, id)
);
ALTER TABLE eomatch.change_log
    ADD COLUMN IF NOT EXISTS b_geometry geometry,
    ADD COLUMN IF NOT EXISTS b_datetime timestamptz,
    ADD COLUMN IF NOT EXISTS b_end_datetime timestamptz,
    ADD COLUMN IF NOT EXISTS b_content jsonb,
    ADD COLUMN IF NOT EXISTS b_private jsonb;
CREATE INDEX IF NOT EXISTS changes_document ON eomatch.change_log (kind, collection, id, seq);

-- An item's kept old row as a pgstac.items row again (NULL when ``before`` holds the document).
CREATE OR REPLACE FUNCTION eomatch.history_row(c eomatch.change_log) RETURNS pgstac.items
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pgstac, public, pg_temp AS $$
DECLARE
    it pgstac.items;
BEGIN
    IF c.b_content IS NULL THEN
        RETURN NULL;
    END IF;
    it.id := c.id;
    it.collection := c.collection;
    it.geometry := c.b_geometry;
    it.datetime := c.b_datetime;
    it.end_datetime := c.b_end_datetime;
    it.content := c.b_content;
    it.private := c.b_private;
    RETURN it;
END $$;

-- That row as the STAC document the API served (pgSTAC's own hydration, with the base item the
-- row was dehydrated against).
CREATE OR REPLACE FUNCTION eomatch.history_before(c eomatch.change_log) RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pgstac, public, pg_temp AS $$
    SELECT CASE WHEN c.b_content IS NULL THEN c.before
                ELSE content_hydrate(eomatch.history_row(c)) END
$$;

-- The same row not hydrated (pgSTAC's content_nonhydrated, tagged with its base item), for
-- readers that hydrate in Python as the API does: ~14x cheaper than content_hydrate in plpgsql.
CREATE OR REPLACE FUNCTION eomatch.history_before_stored(c eomatch.change_log) RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pgstac, public, pg_temp AS $$
    SELECT CASE WHEN c.b_content IS NULL THEN c.before
                ELSE content_nonhydrated(eomatch.history_row(c)) END
$$;

-- ``before_stored``/``before_hydrated``: ``before`` as kept (hydrate it when not hydrated); a
-- reader selecting only these never runs content_hydrate (unselected view columns are not
-- computed).
CREATE OR REPLACE VIEW eomatch.changes AS
    SELECT c.seq, c.tx, c.kind, c.collection, c.id, c.op,
           CASE WHEN c.b_content IS NULL THEN c.before ELSE eomatch.history_before(c) END
               AS before,
           CASE WHEN c.b_content IS NULL THEN c.before
                ELSE eomatch.history_before_stored(c) END AS before_stored,
           c.b_content IS NULL AS before_hydrated
    FROM eomatch.change_log c;

CREATE TABLE IF NOT EXISTS eomatch.history_purges (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    purged_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    before timestamptz NOT NULL,
    transactions bigint NOT NULL,
    changes bigint NOT NULL,
    actor text NOT NULL,
    db_user text NOT NULL DEFAULT session_user
);

-- The history transaction of the current database transaction, created on its first change.
-- The id is cached in a transaction-local setting; a client can set that too (to append to an
-- old transaction), so it is believed only when that row was made by this very transaction.
CREATE OR REPLACE FUNCTION eomatch.history_tx() RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    cached text := current_setting('eomatch.history_tx', true);
    me text := pg_current_xact_id()::text;
    tx bigint;
BEGIN
    IF cached IS NOT NULL AND split_part(cached, ':', 1) = me THEN
        tx := nullif(split_part(cached, ':', 2), '')::bigint;
        -- a client can set this value too: believe it only for this transaction's own row
        IF EXISTS (SELECT 1 FROM eomatch.transactions t WHERE t.id = tx AND t.xid = me::xid8) THEN
            RETURN tx;
        END IF;
    END IF;
    INSERT INTO eomatch.transactions (xid, actor, kind, message, run)
    VALUES (
        me::xid8,
        left(coalesce(nullif(current_setting('eomatch.actor', true), ''),
                      'db:' || session_user), 200),
        left(coalesce(nullif(current_setting('eomatch.kind', true), ''), 'sql'), 40),
        left(nullif(current_setting('eomatch.message', true), ''), 2000),
        left(nullif(current_setting('eomatch.run', true), ''), 100)
    )
    RETURNING id INTO tx;
    PERFORM set_config('eomatch.history_tx', me || ':' || tx, true);
    RETURN tx;
END $$;

-- Just before commit: the commit time and order, or nothing left (changes that cancelled out).
CREATE OR REPLACE FUNCTION eomatch.history_commit() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM eomatch.change_log WHERE tx = NEW.id) THEN
        UPDATE eomatch.transactions
        SET committed_at = clock_timestamp(), commit_seq = nextval('eomatch.history_commit_seq')
        WHERE id = NEW.id;
    ELSE
        DELETE FROM eomatch.transactions WHERE id = NEW.id;
    END IF;
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS history_commit ON eomatch.transactions;
CREATE CONSTRAINT TRIGGER history_commit AFTER INSERT ON eomatch.transactions
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION eomatch.history_commit();

DROP FUNCTION IF EXISTS eomatch.history_record(text, text, text, text, jsonb);  -- first layout

-- Record one document change, merging with an earlier change of the same transaction:
-- delete + insert is an update (pgSTAC's update_item is exactly that), insert + delete is
-- nothing, and the first ``before`` is kept.
CREATE OR REPLACE FUNCTION eomatch.history_record(
    _kind text, _collection text, _id text, _op text, _before jsonb, _row pgstac.items DEFAULT NULL
) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_tx bigint := eomatch.history_tx();
    prev text;
BEGIN
    IF _op = 'insert' THEN
        INSERT INTO eomatch.change_log AS c (tx, kind, collection, id, op)
        VALUES (v_tx, _kind, _collection, _id, 'insert')
        ON CONFLICT (tx, kind, collection, id) DO UPDATE SET op = 'update' WHERE c.op = 'delete';
    ELSIF _op = 'update' THEN
        INSERT INTO eomatch.change_log (tx, kind, collection, id, op, before,
            b_geometry, b_datetime, b_end_datetime, b_content, b_private)
        VALUES (v_tx, _kind, _collection, _id, 'update', _before,
            _row.geometry, _row.datetime, _row.end_datetime, _row.content, _row.private)
        ON CONFLICT (tx, kind, collection, id) DO NOTHING;
    ELSE
        SELECT c.op INTO prev FROM eomatch.change_log c
        WHERE c.tx = v_tx AND c.kind = _kind AND c.collection = _collection AND c.id = _id;
        IF NOT FOUND THEN
            INSERT INTO eomatch.change_log (tx, kind, collection, id, op, before,
                b_geometry, b_datetime, b_end_datetime, b_content, b_private)
            VALUES (v_tx, _kind, _collection, _id, 'delete', _before,
                _row.geometry, _row.datetime, _row.end_datetime, _row.content, _row.private);
        ELSIF prev = 'insert' THEN
            DELETE FROM eomatch.change_log c
            WHERE c.tx = v_tx AND c.kind = _kind AND c.collection = _collection AND c.id = _id;
        ELSIF _before IS NOT NULL THEN  -- the base item goes: keep the document hydrated
            UPDATE eomatch.change_log c SET op = 'delete', before = eomatch.history_before(c),
                b_geometry = NULL, b_datetime = NULL, b_end_datetime = NULL, b_content = NULL,
                b_private = NULL
            WHERE c.tx = v_tx AND c.kind = _kind AND c.collection = _collection AND c.id = _id;
        ELSE
            UPDATE eomatch.change_log c SET op = 'delete'
            WHERE c.tx = v_tx AND c.kind = _kind AND c.collection = _collection AND c.id = _id;
        END IF;
    END IF;
    -- a rollback makes the ingest state of what it touched stale: the next ingest must compare
    -- those items again instead of trusting their files' hashes (API edits and pushes keep the
    -- state: re-ingesting an unchanged file must not undo them)
    IF current_setting('eomatch.kind', true) = 'rollback' THEN  -- a collection's row: id ''
        DELETE FROM eomatch.ingest_state s WHERE s.collection = _collection AND s.id = _id;
    END IF;
END $$;

CREATE OR REPLACE FUNCTION eomatch.history_item() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pgstac, public, pg_temp AS $$
DECLARE
    v_tx bigint;
BEGIN
    IF TG_OP = 'INSERT' THEN
        -- pgSTAC's repartition moves rows by re-inserting them: not a change of the catalogue
        IF current_setting('eomatch.history_moving', true) IS NOT DISTINCT FROM NEW.collection THEN
            RETURN NULL;
        END IF;
        -- the hot path of every ingest, inlined: one small row
        v_tx := eomatch.history_tx();
        INSERT INTO eomatch.change_log AS c (tx, kind, collection, id, op)
        VALUES (v_tx, 'item', NEW.collection, NEW.id, 'insert')
        ON CONFLICT (tx, kind, collection, id) DO UPDATE SET op = 'update' WHERE c.op = 'delete';
        IF current_setting('eomatch.kind', true) = 'rollback' THEN
            DELETE FROM eomatch.ingest_state s
            WHERE s.collection = NEW.collection AND s.id = NEW.id;
        END IF;
    ELSIF TG_OP = 'UPDATE' THEN
        IF OLD IS DISTINCT FROM NEW THEN
            IF OLD.id = NEW.id AND OLD.collection = NEW.collection THEN
                PERFORM eomatch.history_record(
                    'item', OLD.collection, OLD.id, 'update', NULL, OLD);
            ELSE
                PERFORM eomatch.history_record('item', OLD.collection, OLD.id, 'delete', NULL, OLD);
                PERFORM eomatch.history_record('item', NEW.collection, NEW.id, 'insert', NULL);
            END IF;
        END IF;
    ELSE
        PERFORM eomatch.history_record('item', OLD.collection, OLD.id, 'delete', NULL, OLD);
    END IF;
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS eomatch_history ON pgstac.items;
CREATE TRIGGER eomatch_history AFTER INSERT OR UPDATE OR DELETE ON pgstac.items
    FOR EACH ROW EXECUTE FUNCTION eomatch.history_item();

-- BEFORE DELETE, and named to run before pgSTAC's collection_delete_trigger, which drops the
-- collection's partitions (no row trigger sees those items go): record them here first.
CREATE OR REPLACE FUNCTION eomatch.history_collection_before() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pgstac, public, pg_temp AS $$
DECLARE
    it pgstac.items;
BEGIN
    IF TG_OP = 'DELETE' THEN
        -- hydrated now: the collection's base items go with it, for these items and for the
        -- old rows of its items that earlier transactions kept
        UPDATE eomatch.change_log c SET before = eomatch.history_before(c), b_geometry = NULL,
            b_datetime = NULL, b_end_datetime = NULL, b_content = NULL, b_private = NULL
        WHERE c.kind = 'item' AND c.collection = OLD.id AND c.b_content IS NOT NULL;
        FOR it IN SELECT * FROM pgstac.items WHERE collection = OLD.id LOOP
            PERFORM eomatch.history_record('item', it.collection, it.id, 'delete',
                                           content_hydrate(it));
        END LOOP;
        PERFORM eomatch.history_record('collection', OLD.id, '', 'delete', OLD.content);
        RETURN OLD;
    END IF;
    IF NEW.partition_trunc IS DISTINCT FROM OLD.partition_trunc THEN
        PERFORM set_config('eomatch.history_moving', NEW.id, true);
    END IF;
    RETURN NEW;
END $$;

DROP TRIGGER IF EXISTS a_eomatch_history ON pgstac.collections;
CREATE TRIGGER a_eomatch_history BEFORE UPDATE OR DELETE ON pgstac.collections
    FOR EACH ROW EXECUTE FUNCTION eomatch.history_collection_before();

-- AFTER, named to run after pgSTAC's collections_trigger (the repartition).
CREATE OR REPLACE FUNCTION eomatch.history_collection_after() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pgstac, public, pg_temp AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM eomatch.history_record('collection', NEW.id, '', 'insert', NULL);
    ELSIF OLD.content IS DISTINCT FROM NEW.content THEN
        PERFORM eomatch.history_record('collection', OLD.id, '', 'update', OLD.content);
    END IF;
    IF TG_OP = 'UPDATE' THEN
        PERFORM set_config('eomatch.history_moving', '', true);
    END IF;
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS z_eomatch_history ON pgstac.collections;
CREATE TRIGGER z_eomatch_history AFTER INSERT OR UPDATE ON pgstac.collections
    FOR EACH ROW EXECUTE FUNCTION eomatch.history_collection_after();

-- TRUNCATE would empty the catalogue behind every row trigger's back.
CREATE OR REPLACE FUNCTION eomatch.history_no_truncate() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'TRUNCATE of %.% is refused: it would bypass the catalogue history; '
        'delete the rows instead', TG_TABLE_SCHEMA, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END $$;
DROP TRIGGER IF EXISTS eomatch_history_truncate ON pgstac.items;
CREATE TRIGGER eomatch_history_truncate BEFORE TRUNCATE ON pgstac.items
    FOR EACH STATEMENT EXECUTE FUNCTION eomatch.history_no_truncate();
DROP TRIGGER IF EXISTS eomatch_history_truncate ON pgstac.collections;
CREATE TRIGGER eomatch_history_truncate BEFORE TRUNCATE ON pgstac.collections
    FOR EACH STATEMENT EXECUTE FUNCTION eomatch.history_no_truncate();
"""

HISTORY_GRANTS_SQL = """
REVOKE ALL ON eomatch.transactions, eomatch.changes, eomatch.change_log, eomatch.history_meta,
    eomatch.history_purges FROM PUBLIC;
REVOKE ALL ON FUNCTION eomatch.history_tx(),
    eomatch.history_record(text, text, text, text, jsonb, pgstac.items),
    eomatch.history_before(eomatch.change_log),
    eomatch.history_before_stored(eomatch.change_log) FROM PUBLIC;
-- the view hydrates through it, and a view's functions run with the reader's EXECUTE rights
GRANT EXECUTE ON FUNCTION eomatch.history_before(eomatch.change_log),
    eomatch.history_before_stored(eomatch.change_log) TO eomatch_ingest, eomatch_api;
GRANT SELECT ON eomatch.transactions, eomatch.changes, eomatch.history_meta,
    eomatch.history_purges TO eomatch_ingest, eomatch_api;
-- The trigger functions run as the admin (SECURITY DEFINER). CREATE TRIGGER asks only for
-- EXECUTE on the function, so with it any role with USAGE on eomatch could hang them on a
-- temporary table of its own and write history rows. Only pgstac_admin keeps it: it creates
-- the partitions (pgstac.check_partition), which clones history_item onto each.
REVOKE EXECUTE ON FUNCTION eomatch.history_commit(), eomatch.history_item(),
    eomatch.history_collection_before(), eomatch.history_collection_after(),
    eomatch.history_no_truncate() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION eomatch.history_item() TO pgstac_admin;
-- TRUNCATE of one partition fires neither a row trigger nor the guard on pgstac.items (a
-- statement trigger fires on the table named). pgSTAC gives pgstac_ingest ALL on the tables
-- pgstac_admin makes (default privileges) and again on each partition (check_partition:
-- thirdparty.PARTITION_GRANTS edits that); TRUNCATE, TRIGGER and REFERENCES, which none of
-- pgSTAC's writes use, are taken back from the tables to come and from the partitions there.
ALTER DEFAULT PRIVILEGES FOR ROLE pgstac_admin IN SCHEMA pgstac
    REVOKE TRUNCATE, TRIGGER, REFERENCES ON TABLES FROM pgstac_ingest;
DO $grants$
DECLARE
    part regclass;
BEGIN
    FOR part IN SELECT relid FROM pg_partition_tree('pgstac.items') WHERE level > 0 LOOP
        EXECUTE format('REVOKE TRUNCATE, TRIGGER, REFERENCES ON %s FROM pgstac_ingest', part);
    END LOOP;
END
$grants$;
"""


def describe_sql() -> str:
    """SQL that describes the current transaction's history record (four parameters).

    ``set_config(..., true)`` lasts until the transaction ends, so each transaction describes
    itself; parameters: actor, kind, message, run.
    """
    return (
        "SELECT set_config('eomatch.actor', %s, true), set_config('eomatch.kind', %s, true), "
        "set_config('eomatch.message', coalesce(%s, ''), true), "
        "set_config('eomatch.run', coalesce(%s, ''), true)"
    )
