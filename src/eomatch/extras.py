"""The optional parts of eomatch and the one check that names the missing pip extra.

``pip install eomatch`` gives the finder and the catalogue on disk; the extras add the rest
(``eomatch[service]``: database, ingest, keys, serve, push; ``eomatch[plot]``: maps;
``eomatch[storage]``: S3-compatible object storage; ``eomatch[data]``: matchup datasets). A module
behind an extra calls :func:`require_extra` before its third-party imports, so a missing
dependency becomes one line with the install command (:class:`~eomatch.errors.MissingExtraError`,
exit code 2 in the CLI), never a traceback.
"""

from __future__ import annotations

import importlib.util
import sys

from eomatch.errors import MissingExtraError

EXTRAS: dict[str, tuple[str, ...]] = {
    "service": ("psycopg", "pypgstac", "stac_fastapi.pgstac", "fastapi", "asyncpg", "uvicorn"),
    "jobs": ("procrastinate", "psycopg"),
    "plot": ("matplotlib", "shapefile"),
    "storage": ("obstore",),
    "data": ("xarray", "rioxarray", "rasterio", "netCDF4", "zarr", "rio_cogeo", "rio_stac"),
    "geoparquet": ("stac_geoparquet", "pyarrow"),
    "records": ("pycsw", "sqlalchemy", "psycopg2", "pygeofilter", "jinja2", "owslib"),
}
"""Extra -> the modules it provides (keep in step with pyproject.toml's optional-dependencies)."""


def _installed(module: str) -> bool:
    if module in sys.modules:
        return sys.modules[module] is not None  # None: import blocked on purpose
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a dotted name whose parent package is missing
        return False


def require_extra(extra: str, feature: str, modules: tuple[str, ...] | None = None) -> None:
    """Raise :class:`MissingExtraError` unless the modules of ``extra`` can be imported.

    Args:
        extra: a key of :data:`EXTRAS`.
        feature: what needs it, the subject of the message ("the central database").
        modules: the subset of the extra's modules actually needed (default: all of them).

    Only looks the modules up (no import), so the check costs microseconds.
    """
    for module in EXTRAS[extra] if modules is None else modules:
        if not _installed(module):
            raise MissingExtraError(extra, module, feature)
