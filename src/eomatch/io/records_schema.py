"""The records backend of CSW and OGC API - Records: views over pgSTAC, never a copy of it.

pycsw reads its repository through SQLAlchemy as one table of flat columns (identifier,
title, anytext, wkt_geometry, time_begin, links…). ``eomatch_records.records`` gives it exactly
that, as a *view* over ``pgstac.items`` joined to ``pgstac.collections``: a registered item is a
record in the same snapshot, in the same transaction, whoever wrote it (ingest, the API, a
harvester, psql), and a crash can leave no item without its record or the reverse, because
there is only one row. Writes pay nothing (a trigger-maintained table would cost every ingest;
see docs/records.md for the figures), and reads use pgSTAC's own indexes: the geometry (GiST,
``wkb_geometry``) and the collection (``parentidentifier``); ``time_begin``/``time_end`` are
ISO 8601 UTC text, as pycsw expects, compared as text after the geometry index narrowed.

``eomatch_records.records_public`` is the same view for the external side, with only http(s)
links (the allow-list of :func:`eomatch.core.publish.is_public`, written in SQL: a record's
XML never passes through the external API's JSON filter).

A record's identifier is ``collection:item-id`` (item ids are unique only per collection).
"""

from __future__ import annotations

__all__ = [
    "ABSENT_COLUMNS",
    "PUBLIC_VIEW",
    "RECORDS_GRANTS_SQL",
    "RECORDS_SCHEMA",
    "RECORDS_SQL",
    "RECORDS_VIEW",
    "record_identifier",
]

RECORDS_SCHEMA = "eomatch_records"
RECORDS_VIEW = f"{RECORDS_SCHEMA}.records"
PUBLIC_VIEW = f"{RECORDS_SCHEMA}.records_public"


def record_identifier(collection: str, item_id: str) -> str:
    """The record identifier of an item (CSW ``dc:identifier``, Records ``id``)."""
    return f"{collection}:{item_id}"


# pycsw's columns that the ORM needs as columns though eomatch leaves them empty (its query
# mappings name them); pycsw's other columns are left out of the view (each costs SQL
# compilation time on every query) and read as None (see ABSENT_COLUMNS).
_EMPTY_TEXT = ["edition", "sensortype"]

ABSENT_COLUMNS = (
    "title_alternate",
    "keywordstype",
    "themes",
    "relation",
    "topicategory",
    "resourcelanguage",
    "creator",
    "publisher",
    "contributor",
    "organization",
    "securityconstraints",
    "accessconstraints",
    "otherconstraints",
    "date_revision",
    "date_publication",
    "crs",
    "geodescode",
    "denominator",
    "distancevalue",
    "distanceuom",
    "servicetype",
    "servicetypeversion",
    "operation",
    "couplingtype",
    "operateson",
    "operatesonidentifier",
    "operatesoname",
    "degree",
    "classification",
    "conditionapplyingtoaccessanduse",
    "lineage",
    "responsiblepartyrole",
    "specificationtitle",
    "specificationdate",
    "specificationdatetype",
    "bands",
    "contacts",
    "metadata",
    "language",
    "vert_extent_min",
    "vert_extent_max",
)
"""pycsw's core columns not in the views: class attributes of value None on its ORM class."""


def _select(links_where: str) -> str:
    """The view's SELECT; ``links_where`` filters the assets that become links."""
    empty = ",\n    ".join(f"NULL::text AS {name}" for name in _EMPTY_TEXT)
    return f"""
SELECT
    i.collection || ':' || i.id AS identifier,
    'csw:Record'::text AS typename,
    'https://stacspec.org'::text AS schema,  -- not CSW's: pycsw then writes records from columns
    'local'::text AS mdsource,
    coalesce(p->>'updated', p->>'created',
             to_char(i.datetime AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')) AS insert_date,
    -- what CSW's GetRepositoryItem returns: a small Dublin Core record (computed only for
    -- the rows a query returns)
    xmlelement(name "csw:Record", xmlattributes(
            'http://www.opengis.net/cat/csw/2.0.2' AS "xmlns:csw",
            'http://purl.org/dc/elements/1.1/' AS "xmlns:dc"),
        xmlelement(name "dc:identifier", i.collection || ':' || i.id),
        xmlelement(name "dc:title", coalesce(p->>'title', i.id)),
        xmlelement(name "dc:type", 'dataset'),
        xmlelement(name "dc:source", i.collection))::text AS xml,
    'application/xml'::text AS metadata_type,
    concat_ws(' ', i.id, i.collection, p->>'title', p->>'description', p->>'platform',
              p->>'constellation', p->>'eomatch:kind', p->>'matchup:event_id',
              p->>'matchup:role', p->'instruments', p->'matchup:platforms',
              p->'matchup:collections', c.content->>'title') AS anytext,
    'dataset'::text AS type,
    coalesce(p->>'title', i.id) AS title,
    coalesce(p->>'description',
             'Item ' || i.id || ' of ' || coalesce(c.content->>'title', i.collection)) AS abstract,
    concat_ws(',', i.collection, p->>'platform', p->>'constellation',
              (SELECT string_agg(x, ',') FROM jsonb_array_elements_text(
                  CASE WHEN jsonb_typeof(p->'instruments') = 'array'
                       THEN p->'instruments' ELSE '[]'::jsonb END) x),
              p->>'eomatch:kind', 'matchup:' || (p->>'matchup:event_id')) AS keywords,
    i.collection AS parentidentifier,
    to_char(i.datetime AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS time_begin,
    to_char(i.end_datetime AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS time_end,
    to_char(i.datetime AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS date,
    nullif(p->>'created', '') AS date_creation,
    nullif(p->>'updated', '') AS date_modified,
    (SELECT string_agg(DISTINCT a.value->>'type', ',')
       FROM jsonb_each(i.content->'assets') a
      WHERE jsonb_typeof(a.value) = 'object' AND a.value ? 'type') AS format,
    i.collection AS source,
    ST_AsText(ST_Envelope(i.geometry)) AS wkt_geometry,
    i.geometry AS wkb_geometry,
    p->>'platform' AS platform,
    (SELECT string_agg(x, ',') FROM jsonb_array_elements_text(
        CASE WHEN jsonb_typeof(p->'instruments') = 'array'
             THEN p->'instruments' ELSE '[]'::jsonb END) x) AS instrument,
    p->>'eo:cloud_cover' AS cloudcover,
    (SELECT jsonb_agg(jsonb_build_object(
                'name', a.key, 'description', coalesce(a.value->>'title', a.key),
                'protocol', coalesce(a.value->>'type', 'WWW:DOWNLOAD'),
                'url', a.value->>'href') ORDER BY a.key)::text
       FROM jsonb_each(i.content->'assets') a
      WHERE jsonb_typeof(a.value) = 'object' AND jsonb_typeof(a.value->'href') = 'string'
        {links_where}) AS links,
    {empty}
FROM pgstac.items i
JOIN pgstac.collections c ON c.id = i.collection
CROSS JOIN LATERAL (SELECT i.content->'properties' AS p) props
"""


# the allow-list of eomatch.core.publish.is_public: ASCII "http(s)://" at the start, any case
_PUBLIC_HREF = r"AND (a.value->>'href') ~ '^[hH][tT][tT][pP][sS]?://'"

RECORDS_SQL = f"""
CREATE SCHEMA IF NOT EXISTS {RECORDS_SCHEMA};
DROP VIEW IF EXISTS {PUBLIC_VIEW};
DROP VIEW IF EXISTS {RECORDS_VIEW};
CREATE VIEW {RECORDS_VIEW} AS {_select("")};
CREATE VIEW {PUBLIC_VIEW} AS {_select(_PUBLIC_HREF)};
COMMENT ON VIEW {RECORDS_VIEW} IS
    'pycsw repository: one record per pgSTAC item (eomatch.io.records_schema)';
COMMENT ON VIEW {PUBLIC_VIEW} IS
    'pycsw repository of the external side: only http(s) links';
"""

RECORDS_GRANTS_SQL = f"""
GRANT USAGE ON SCHEMA {RECORDS_SCHEMA} TO eomatch_api, eomatch_reader, eomatch_ingest;
GRANT SELECT ON {RECORDS_VIEW} TO eomatch_api, eomatch_ingest;
GRANT SELECT ON {PUBLIC_VIEW} TO eomatch_api, eomatch_reader, eomatch_ingest;
"""
