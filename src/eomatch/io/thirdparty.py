"""Every reliance on a third-party library's internals, with the versions it was checked against.

Upgrading one of :data:`PINS` is a deliberate act: ``tests/test_thirdparty_pins.py`` fails
with a message naming the library and this module as soon as an installed version differs from
its pin, or a private name listed in :data:`INTERNALS` is gone. To upgrade, read each entry of
:data:`INTERNALS` for that library against the new version's source, adapt the code named in
its ``used_by``, then change the pin here and in ``pyproject.toml``.

What lives here rather than where it is used: the code that touches private state directly
(pypgstac's partition cache, the module globals of stac-fastapi-pgstac, a middleware found by
its class name, pgSTAC's ``bbox_geom`` redefined and the edits of :data:`PGSTAC_EDITS` made
inside pgSTAC's schema). Subclasses that override a private method (``_clean_search_args``,
``_validate_item``) stay with their class; each is listed in :data:`INTERNALS` with the
module that overrides it.

Imports of the libraries are inside functions: this module is read (its pins, its list) by
the test without the ``service`` extra's import cost, and ``io`` stays importable without it.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import itertools
import re
from dataclasses import dataclass
from typing import Any

from eomatch.errors import DatabaseError

__all__ = [
    "BBOX_2D_SQL",
    "INTERNALS",
    "ITEM_TIME_RANGE",
    "OPEN_INTERVAL",
    "RANGE_WITH_GEOMETRY",
    "TOKEN_BOUND_DECLARE",
    "TOKEN_BOUND_SET",
    "TOKEN_BOUND_USE",
    "CHUNKER_SHORTCUT",
    "CHUNK_BOUNDS",
    "CHUNK_SLOT",
    "PGSTAC_EDITS",
    "TOKEN_LOOKUP",
    "FunctionEdit",
    "PGSTAC_SCHEMA",
    "PINS",
    "sql_literal",
    "Internal",
    "install_module_global",
    "internal_problems",
    "edit_pgstac_functions",
    "load_by_partition",
    "middleware_index",
    "pin_problems",
]

PINS: dict[str, str] = {
    "pypgstac": "0.10.0",
    "stac-fastapi-pgstac": "7.2.0",
    "stac-fastapi.api": "7.0.0",
    "stac-fastapi.types": "7.0.0",
    "stac-fastapi.extensions": "7.0.0",
    "brotli-asgi": "1.7.0",
    "fastapi": "0.165.0",
}
"""Distribution name → the version whose internals were read (``importlib.metadata`` names)."""

PGSTAC_SCHEMA = "0.10.0"
"""The pgSTAC schema version installed by ``eomatch db init`` (pypgstac's own version)."""


@dataclass(frozen=True)
class Internal:
    """One private (or undocumented) name of a library that our code relies on."""

    dist: str
    """The distribution providing it (a key of :data:`PINS`)."""
    module: str
    """Where it lives."""
    path: str
    """Attribute path inside ``module`` (``Class.attr``); a class-level check."""
    used_by: str
    """Our module (and what in it) that breaks if it changes."""
    why: str
    """What we rely on, in one line."""
    instance: bool = False
    """An attribute set at run time: on a class, an instance attribute (annotations, attrs
    fields or ``self.<name>`` in its source); on a function, ``.<name>`` it assigns (source)."""


INTERNALS: tuple[Internal, ...] = (
    Internal(
        "fastapi",
        "fastapi.dependencies.utils",
        "run_in_threadpool",
        "io.thirdparty.install_module_global (service.inline_requests.install)",
        "solve_dependencies looks it up as a module global for sync dependencies: replaced",
    ),
    Internal(
        "pypgstac",
        "pypgstac.load",
        "Loader._partition_cache",
        "io.thirdparty.load_by_partition (io.pgstac_store.BatchLoader)",
        "Loader keeps its partitions in this dict; we fill it to load pre-formatted rows",
        instance=True,
    ),
    Internal(
        "pypgstac",
        "pypgstac.load",
        "Loader._partition_update",
        "io.thirdparty.load_by_partition",
        "creates/extends the partition of one formatted row (dict with 'partition')",
    ),
    Internal(
        "pypgstac",
        "pypgstac.load",
        "Loader.load_partition",
        "io.thirdparty.load_by_partition",
        "loads one partition's rows (public but undocumented)",
    ),
    Internal(
        "stac-fastapi-pgstac",
        "stac_fastapi.pgstac.core",
        "ItemLinks",
        "io.thirdparty.install_module_global (service.fast_links.install)",
        "core.py looks ItemLinks up as a module global when it builds item links: replaced",
    ),
    Internal(
        "stac-fastapi-pgstac",
        "stac_fastapi.pgstac.core",
        "CollectionLinks",
        "io.thirdparty.install_module_global (service.fast_links.install)",
        "as ItemLinks: replaced by the external API's link policy",
    ),
    Internal(
        "stac-fastapi-pgstac",
        "stac_fastapi.pgstac.models.links",
        "ItemLinks.base_url",
        "service.fast_links.FastItemLinks",
        "overridden (cached per request); resolve/create_links too",
    ),
    Internal(
        "stac-fastapi-pgstac",
        "stac_fastapi.pgstac.models.links",
        "ItemLinks.resolve",
        "service.fast_links.FastItemLinks",
        "overridden: urljoin without parsing on the common path",
    ),
    Internal(
        "stac-fastapi-pgstac",
        "stac_fastapi.pgstac.models.links",
        "ItemLinks.create_links",
        "service.fast_links.FastItemLinks",
        "overridden: finds the link_* methods once per class (relies on that naming)",
    ),
    Internal(
        "stac-fastapi-pgstac",
        "stac_fastapi.pgstac.core",
        "CoreCrudClient._clean_search_args",
        "service.app.ItemsClient",
        "overridden: a GET filter is parsed by limits.parse_filter, not cql2's validate()",
    ),
    Internal(
        "stac-fastapi-pgstac",
        "stac_fastapi.pgstac.transactions",
        "TransactionsClient._validate_item",
        "service.writes.CheckedWrites",
        "overridden: every stored item passes stac_document_problem first",
    ),
    Internal(
        "stac-fastapi-pgstac",
        "stac_fastapi.pgstac.transactions",
        "TransactionsClient._validate_collection",
        "service.writes.CheckedWrites",
        "overridden: every stored collection passes stac_document_problem first",
    ),
    Internal(
        "stac-fastapi-pgstac",
        "stac_fastapi.pgstac.transactions",
        "TransactionsClient.patch_item",
        "service.writes.ValidatingTransactionsClient",
        "replaced: 7.2 applies a patch after its checks and dumps merge patches' unset "
        "members as null (deletes) and 'from' as 'from_'",
    ),
    Internal(
        "stac-fastapi-pgstac",
        "stac_fastapi.pgstac.transactions",
        "TransactionsClient.patch_collection",
        "service.writes.ValidatingTransactionsClient",
        "replaced: 7.2 checks nothing on PATCH /collections/{id}",
    ),
    Internal(
        "stac-fastapi-pgstac",
        "stac_fastapi.pgstac.db",
        "dbfunc",
        "service.writes (patch_item, patch_collection)",
        "calls a pgSTAC function on a connection, translating its errors",
    ),
    Internal(
        "stac-fastapi-pgstac",
        "stac_fastapi.pgstac.models.extensions",
        "Extensions.transaction",
        "service.writes.EomatchExtensions",
        "overridden property: the transaction extensions with our checked clients",
    ),
    Internal(
        "stac-fastapi.types",
        "stac_fastapi.pgstac.core",
        "CoreCrudClient.landing_page_id",
        "service.app.create_app",
        "set after instantiate_api (with title, description): the attrs defaults are read "
        "from the environment at import",
        instance=True,
    ),
    Internal(
        "stac-fastapi-pgstac",
        "stac_fastapi.pgstac.db",
        "connect_to_db.readpool",
        "service.app (_check_key reads app.state.readpool)",
        "where connect_to_db keeps the read pool: the API key check queries it directly",
        instance=True,
    ),
    Internal(
        "stac-fastapi-pgstac",
        "stac_fastapi.pgstac.db",
        "connect_to_db.get_connection",
        "service.app._health, service.writes (app.state.get_connection)",
        "the connection factory connect_to_db leaves in app.state",
        instance=True,
    ),
    Internal(
        "stac-fastapi.extensions",
        "stac_fastapi.extensions.transaction.request",
        "BasePartial",
        "service.writes._patched",
        "how a merge patch arrives (the pydantic partial model), told apart from JSON Patch",
    ),
    Internal(
        "stac-fastapi.api",
        "stac_fastapi.api.app",
        "BrotliMiddleware",
        "io.thirdparty.middleware_index (service.app.create_app)",
        "StacApi adds BrotliMiddleware; ours go inside it, found by this class name",
    ),
    Internal(
        "brotli-asgi",
        "brotli_asgi",
        "BrotliMiddleware",
        "io.thirdparty.middleware_index",
        "the compression middleware's class name",
    ),
)
"""Everything private (or undocumented) we rely on; the test checks each still exists."""

# pgSTAC builds a PolyhedralSurface for a 6-number bbox, which GEOS cannot intersect (HTTP 500,
# stac-utils/stac-fastapi#292). Searching by the bbox's 2D footprint is what STAC clients mean.
# This redefines a function inside pgSTAC's own schema (after each migration): the test checks
# that the pinned schema still defines bbox_geom(_bbox jsonb) with this signature.
BBOX_2D_SQL = """
CREATE OR REPLACE FUNCTION pgstac.bbox_geom(_bbox jsonb) RETURNS geometry AS $$
SELECT CASE jsonb_array_length(_bbox)
    WHEN 4 THEN ST_SetSRID(ST_MakeEnvelope(
        (_bbox->>0)::float, (_bbox->>1)::float, (_bbox->>2)::float, (_bbox->>3)::float), 4326)
    WHEN 6 THEN ST_SetSRID(ST_MakeEnvelope(
        (_bbox->>0)::float, (_bbox->>1)::float, (_bbox->>3)::float, (_bbox->>4)::float), 4326)
    ELSE NULL
END;
$$ LANGUAGE SQL IMMUTABLE STRICT PARALLEL SAFE;
"""
BBOX_GEOM_SIGNATURE = "CREATE OR REPLACE FUNCTION bbox_geom(_bbox jsonb) RETURNS geometry"
"""How the pinned pgSTAC migration declares the function :data:`BBOX_2D_SQL` replaces."""


@dataclass(frozen=True)
class FunctionEdit:
    """A small edit of one of pgSTAC's functions, made to its stored text after each migration.

    The rest of the function stays as pgSTAC wrote it; the test checks the pinned migration
    still holds ``pattern`` ``count`` times in that function.
    """

    function: str
    """The function, as a ``regprocedure`` (``pgstac.chunker(text)``)."""
    pattern: str
    """A regular expression found ``count`` times in the unedited definition."""
    replacement: str
    """What each match becomes (``re.sub`` syntax)."""
    count: int
    done: str
    """A fragment only the edited definition holds (the edit is not made twice)."""


# pgSTAC 0.10.0's get_token_record finds the item a paging token names with
# ``collection = convert_from(decode(...), 'UTF8') AND id = convert_from(...)``. convert_from's
# result takes the collation of its ``name`` argument ("C"), not the columns' ("default"), so
# the planner can neither prune the collection partitions nor use the id index: every page
# after the first scanned the whole items table (1M items: 190 ms of a 260 ms page warm, more
# as the API roles run, without parallel workers; a pull of 100 000 matchups is 100 such
# pages). Comparing in the columns' collation (deterministic: the same equality) fixes it.
TOKEN_LOOKUP = FunctionEdit(
    function="pgstac.get_token_record(text)",
    pattern=re.escape("'hex'), 'UTF8')"),
    replacement="'hex'), 'UTF8') COLLATE \"default\"",
    count=2,
    done="'UTF8') COLLATE \"default\"",
)

# pgSTAC's chunker splits a datetime-sorted search into time chunks: it runs an EXPLAIN of
# the search to learn which partitions it reaches, then reads their time ranges. Partitions by
# collection alone (eomatch's: no ``partition_trunc``) all span -infinity..infinity, so the
# answer is always that one chunk, after planning the search over every partition once more
# (1M items, 165 partitions: pgSTAC search() p50, bbox + datetime 42.9 -> 30.3 ms, sortby
# datetime 34.7 -> 27.0 ms). While no partition has a time range (a collection partitioned by
# time gives one, so does a partition whose range is unknown), the chunker answers that chunk
# without the EXPLAIN: search() reads the same rows (a search reaching no partition gets one
# chunk instead of none, and reads nothing from it; pgSTAC's search_cursor and
# partition_query_view, unused here, would return a query for it instead of none).
CHUNKER_SHORTCUT = FunctionEdit(
    function="pgstac.chunker(text)",
    pattern=r"\nBEGIN(\s*\n\s*IF _where IS NULL THEN)",
    replacement=(
        "\nBEGIN\n"
        "    -- eomatch: no partition has a time range, so the one chunk is all time\n"
        "    IF NOT EXISTS (\n"
        "        SELECT 1 FROM pgstac.partition_stats\n"
        "        WHERE partition_dtrange IS DISTINCT FROM '[-infinity,infinity]'::tstzrange\n"
        "    ) THEN\n"
        "        RETURN QUERY SELECT '-infinity'::timestamptz, 'infinity'::timestamptz;\n"
        "        RETURN;\n"
        "    END IF;\\1"
    ),
    count=1,
    done="-- eomatch: no partition has a time range",
)

# Bounds at -infinity/infinity cost the planner per partition what a real bound costs, and
# more: a comparison with a constant beyond the column's histogram makes PostgreSQL descend the
# datetime index of every partition for its actual minimum or maximum
# (get_actual_variable_range). pgSTAC writes two such bounds into every all-time chunk
# (``datetime >= '-infinity' AND datetime < 'infinity'``) and one into each open interval
# (``datetime=2020-01-01T00:00:00Z/..`` gives ``datetime < 'infinity'``). Planning the sortby
# search at 1M items, 165 partitions: 13.2 -> 6.3 ms, executing it 12.5 -> 7.6 ms. The three
# edits below leave an infinite bound out; a datetime is NOT NULL and the write door accepts
# only RFC 3339 times, so the rows are the same (an item stored at 'infinity' by hand would
# now be in an open-ended search, and in the last chunk only). A closed interval also gets the
# overlap as a range, ``(ITEM_TIME_RANGE) && tstzrange(start, end, '[]')``
# (a superset of the two comparisons, which stay: the rows are theirs): the expression of the
# ``(geometry, time range)`` GiST index :mod:`eomatch.io.pgstac_tuning` puts on every partition,
# so bbox + datetime is one index descent per partition instead of a geometry scan ANDed with
# a scan of every item older than the window's end (1M items, the benchmark's searches run as
# pgSTAC writes them, p50: 24.5 -> 13.9 ms).
ITEM_TIME_RANGE = (
    "CASE WHEN datetime > end_datetime THEN tstzrange(NULL, NULL) "
    "ELSE tstzrange(datetime, end_datetime, '[]') END"
)
"""An item's time as a range: the expression of the geometry-time index
(:data:`eomatch.io.pgstac_tuning.GEOMETRY_TIME_INDEX_SQL`) and of the clause
:data:`OPEN_INTERVAL` adds. pgSTAC refuses items that end before they start, but the same
WHERE clause also searches collections (``collections_asitems``), whose temporal extents it
does not check: such a row is the unbounded range (kept, the comparisons decide), never an
error."""


def sql_literal(text: str) -> str:
    """A SQL (and PL/pgSQL) string literal of a constant rendered into a function's text
    (psycopg's own quoting needs the ``service`` extra, which this module must not import)."""
    return "'" + text.replace("'", "''") + "'"


OPEN_INTERVAL = FunctionEdit(
    function="pgstac.stac_search_to_where(jsonb)",
    pattern=(
        r"where_segments := where_segments \|\| format\(' datetime %s %L::timestamptz AND "
        r"end_datetime >= %L::timestamptz ',\s*"
        r"(CASE WHEN upper_inc\(dtrange\) THEN '<=' ELSE '<' END),\s*edate,\s*sdate\s*\);"
    ),
    replacement=(
        "-- eomatch: an open end of the interval is no clause\n"
        "        IF edate IS DISTINCT FROM 'infinity' THEN\n"
        "            where_segments := where_segments || format(' datetime %s %L::timestamptz ',\n"
        "                \\1, edate);\n"
        "        END IF;\n"
        "        IF sdate IS DISTINCT FROM '-infinity' THEN\n"
        "            where_segments := where_segments\n"
        "                || format(' end_datetime >= %L::timestamptz ', sdate);\n"
        "        END IF;\n"
        "        -- eomatch: the same overlap, as eomatch_items_geometry_time indexes it\n"
        "        IF sdate > '-infinity' AND edate < 'infinity' AND sdate <= edate THEN\n"
        "            where_segments := where_segments || format(\n"
        "                ' (%s) && tstzrange(%L::timestamptz, %L::timestamptz, %L) ',\n"
        f"                {sql_literal(ITEM_TIME_RANGE)}, sdate, edate, '[]');\n"
        "        END IF;"
    ),
    count=1,
    done="-- eomatch: an open end of the interval is no clause",
)
CHUNK_SLOT = FunctionEdit(
    function="pgstac.search_rows(text,text,text[],integer)",
    pattern=r"datetime >= %L AND datetime < %L\n",
    replacement="%s /* eomatch: the chunk's finite bounds */\n",
    count=1,
    done="%s /* eomatch: the chunk's finite bounds */",
)
CHUNK_BOUNDS = FunctionEdit(
    function="pgstac.search_rows(text,text,text[],integer)",
    pattern=r"base_query,\s*sdate,\s*edate,",
    replacement=(
        "base_query,\n"
        "            concat_ws(' AND ', 'TRUE', /* eomatch: finite bounds only */\n"
        "                CASE WHEN sdate <> '-infinity' THEN format('datetime >= %L', sdate) END,\n"
        "                CASE WHEN edate <> 'infinity' THEN format('datetime < %L', edate) END),"
    ),
    count=2,
    done="/* eomatch: finite bounds only */",
)

# The range clause above serves the (geometry, time range) index, so only searches with a
# spatial filter get it. Without one it only misleads the planner: its selectivity multiplies
# that of the two comparisons expressing the same overlap, and a datetime-sorted page of a
# wide window (``eomatch query``: 78 matchup collections, 1.5 years) was estimated at 735 rows
# instead of 36 000, so PostgreSQL read every remaining row of the window and sorted them
# (73 ms) instead of merging the partitions' datetime indexes (12 ms). Made after
# OPEN_INTERVAL, on its text (a database edited before this edit existed gets it too).
RANGE_WITH_GEOMETRY = FunctionEdit(
    function="pgstac.stac_search_to_where(jsonb)",
    pattern=re.escape("IF sdate > '-infinity' AND edate < 'infinity' AND sdate <= edate THEN"),
    replacement=(
        "IF sdate > '-infinity' AND edate < 'infinity' AND sdate <= edate\n"
        "            AND (j ? 'bbox' OR j ? 'intersects') -- eomatch: with a spatial filter only\n"
        "        THEN"
    ),
    count=1,
    done="-- eomatch: with a spatial filter only",
)

# A paging token becomes ``(datetime < T) OR (datetime = T AND collection < C) OR ...``: an OR
# no index can start from, so each page's index scans began at the window's end and skipped
# every row of the pages before (a pull of 100 000 matchups: 100 pages, each reading further).
# Every branch implies ``datetime <= T`` (the first sort key against its token value), so that
# bound is added as its own conjunct: the rows are the same, the scans start at the token. The
# other direction (``>``) allows NULLs in pgSTAC's filter, so it is bounded only for the two
# NOT NULL time columns. A page of ``eomatch query`` at 1M items: execution 12.5 -> 3.1 ms.
TOKEN_BOUND_DECLARE = FunctionEdit(
    function="pgstac.get_token_filter(jsonb,pgstac.items,boolean,boolean,text[])",
    pattern=r"(token_where text;)(\s*\nBEGIN)",  # pypgstac's migrations double each newline
    replacement="\\1\n    firstbound text; -- eomatch: the first sort key's bound\\2",
    count=1,
    done="-- eomatch: the first sort key's bound",
)
TOKEN_BOUND_SET = FunctionEdit(
    function="pgstac.get_token_filter(jsonb,pgstac.items,boolean,boolean,text[])",
    pattern=r"(\n\s*)(RAISE DEBUG 'ORFILTER: %', orfilter;)",
    replacement=(
        "\\1-- eomatch: every branch of the filter implies this bound of the first key"
        "\\1IF sort._row = 1 AND sort._val IS NOT NULL THEN"
        "\\1    IF (prev AND sort._dir = 'ASC') OR (NOT prev AND sort._dir = 'DESC') THEN"
        "\\1        firstbound := format('%s <= %s', sort._field, sort._val);"
        "\\1    ELSIF sort._field IN ('datetime', 'end_datetime') THEN"
        "\\1        firstbound := format('%s >= %s', sort._field, sort._val);"
        "\\1    END IF;"
        "\\1END IF;"
        "\\1\\2"
    ),
    count=1,
    done="-- eomatch: every branch of the filter implies this bound of the first key",
)
TOKEN_BOUND_USE = FunctionEdit(
    function="pgstac.get_token_filter(jsonb,pgstac.items,boolean,boolean,text[])",
    pattern=re.escape("token_where := concat('(',coalesce(output,'true'),')');"),
    replacement=(
        "token_where := concat_ws(' AND ', firstbound, /* eomatch: bound first */\n"
        "        concat('(',coalesce(output,'true'),')'));"
    ),
    count=1,
    done="/* eomatch: bound first */",
)

# A search over every collection is planned over every partition (1M items, 165 partitions:
# ~12 ms of planning and ~6 of execution for a bbox + datetime search that returns 10 items).
# :mod:`eomatch.io.footprint_index` keeps every item's collection, id, times and geometry in
# one table, by the items' own column names, and answers from it a search that restricts no
# collection and reads no other column: pgSTAC's search() for the benchmark's bbox + datetime
# searches at 1M items 23.9 -> 3.6 ms, sortby datetime 19.2 -> 8.2 ms, the same answers. The
# choice is made on the search's own WHERE clause, before a paging token adds its comparisons
# of collection and id, so every page of such a search takes the same path; the rows come from
# search_rows' own WHERE clause (token included), re-applied to the items read.
FOOTPRINT_ROUTE = FunctionEdit(
    function="pgstac.search(jsonb)",
    pattern=r"FROM search_rows\(\s*full_where,",
    replacement=(
        "FROM eomatch.search_rows_routed(_where, -- eomatch: footprints or partitions\n"
        "        full_where,"
    ),
    count=1,
    done="-- eomatch: footprints or partitions",
)

# check_partition gives pgstac_ingest ALL on every partition it makes, TRUNCATE and TRIGGER
# included. TRUNCATE of a partition fires no row trigger and not the parent's TRUNCATE guard
# (a statement trigger fires on the table named): a writer could empty a collection behind the
# history's and the footprint index's back. pgSTAC's own writes need only these four. The
# default privileges that gave the same, and the partitions made before this edit, are
# revoked at migrate (history_schema.HISTORY_GRANTS_SQL).
PARTITION_GRANTS = FunctionEdit(
    function="pgstac.check_partition(text,tstzrange,tstzrange)",
    pattern=r"GRANT ALL ON %I (?:to|TO) pgstac_ingest;",
    replacement=(
        "GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO pgstac_ingest; /* eomatch: no TRUNCATE */"
    ),
    count=2,
    done="/* eomatch: no TRUNCATE */",
)

PGSTAC_EDITS: tuple[FunctionEdit, ...] = (
    TOKEN_LOOKUP,
    CHUNKER_SHORTCUT,
    OPEN_INTERVAL,
    RANGE_WITH_GEOMETRY,
    CHUNK_SLOT,
    CHUNK_BOUNDS,
    TOKEN_BOUND_DECLARE,
    TOKEN_BOUND_SET,
    TOKEN_BOUND_USE,
    FOOTPRINT_ROUTE,
    PARTITION_GRANTS,
)
"""The edits :func:`edit_pgstac_functions` makes (``eomatch db init``/migrate)."""


def edit_pgstac_functions(conn: Any) -> list[str]:
    """Make each of :data:`PGSTAC_EDITS` not made yet (idempotent); the functions changed.

    Runs as the owner of pgSTAC's functions (``pgstac_admin``), after each migration. Raises
    :class:`~eomatch.errors.DatabaseError` if a function's text is not the one these were
    checked against (a pgSTAC upgrade: re-read them).
    """
    changed = []
    for edit in PGSTAC_EDITS:
        row = conn.execute(
            "SELECT pg_get_functiondef(%s::regprocedure)", (edit.function,)
        ).fetchone()
        text = str(row[0])
        if edit.done in text:
            continue
        if len(re.findall(edit.pattern, text)) != edit.count:
            raise DatabaseError(
                f"{edit.function} is not the function eomatch.io.thirdparty was checked "
                f"against (pgSTAC {PGSTAC_SCHEMA}): re-read PGSTAC_EDITS"
            )
        conn.execute(re.sub(edit.pattern, edit.replacement, text))
        changed.append(edit.function)
    return changed


def load_by_partition(loader: Any, rows: list[dict[str, Any]], method: Any) -> None:
    """Load rows already formatted for pgSTAC (each with its ``partition``) through pypgstac.

    pypgstac's :class:`~pypgstac.load.Loader` only loads raw items, formatting each itself;
    our rows are formatted once (and hashed for the ingest state), so its private partition
    cache is filled here, as ``Loader.load_items`` does, and each partition loaded in turn.
    """
    loader._partition_cache = {}
    for row in rows:
        loader._partition_update(row)
    rows.sort(key=lambda r: str(r["partition"]))
    for name, group in itertools.groupby(rows, key=lambda r: str(r["partition"])):
        loader.load_partition(loader._partition_cache[name], list(group), method)


def install_module_global(module: Any, name: str, original: Any, replacement: Any) -> None:
    """Replace ``module.name`` (a class a library looks up at call time) if still ``original``.

    Idempotent; a library that changed the global (another patch, a new version) is left alone.
    """
    if getattr(module, name) is original:
        setattr(module, name, replacement)


def middleware_index(app: Any, class_name: str) -> int:
    """Position of the middleware named ``class_name`` in a Starlette app's ``user_middleware``,
    or its length (stac-fastapi adds its middleware as classes, not handles we could keep)."""
    names = [getattr(m.cls, "__name__", "") for m in app.user_middleware]
    return names.index(class_name) if class_name in names else len(names)


def pin_problems() -> list[str]:
    """One line per installed library whose version is not its pin (or that is missing)."""
    problems: list[str] = []
    for dist, pin in PINS.items():
        try:
            have = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            problems.append(f"{dist} is not installed (pinned {pin})")
            continue
        if have != pin:
            uses = sorted({i.used_by for i in INTERNALS if i.dist == dist})
            problems.append(
                f"{dist} is {have}, but eomatch.io.thirdparty was checked against {pin}: "
                f"re-read the internals listed there for it (used by {'; '.join(uses) or '-'}), "
                "then update PINS and pyproject.toml"
            )
    return problems


def internal_problems() -> list[str]:
    """One line per entry of :data:`INTERNALS` that the installed library no longer has."""
    import inspect

    problems: list[str] = []
    for entry in INTERNALS:
        where = f"{entry.module}.{entry.path} ({entry.dist}; used by {entry.used_by})"
        try:
            obj: Any = importlib.import_module(entry.module)
        except ImportError as exc:
            problems.append(f"{where}: cannot import {entry.module}: {exc}")
            continue
        *parents, last = entry.path.split(".")
        try:
            for part in parents:
                obj = getattr(obj, part)
        except AttributeError:
            problems.append(f"{where}: {'.'.join(parents)} is gone")
            continue
        if entry.instance and inspect.isclass(obj):
            found = any(
                last in getattr(k, "__annotations__", {})
                or last in {a.name for a in getattr(k, "__attrs_attrs__", ())}
                for k in obj.__mro__
            ) or f"self.{last}" in inspect.getsource(obj)
        elif entry.instance:
            found = re.search(rf"\.{re.escape(last)}\s*=", inspect.getsource(obj)) is not None
        else:
            found = hasattr(obj, last)
        if not found:
            problems.append(f"{where}: {last} is gone; {entry.why}")
    return problems
