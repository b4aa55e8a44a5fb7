"""The third-party internals we rely on are where :mod:`eomatch.io.thirdparty` says (issue #11 §6).

An upgrade of pypgstac, stac-fastapi(-pgstac) or brotli-asgi fails here first, with a message
naming the library and what to re-read, instead of as a 500 somewhere in the API.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from eomatch.io import thirdparty
from eomatch.io.thirdparty import INTERNALS, PINS

ROOT = Path(__file__).resolve().parents[1]


def test_installed_versions_are_the_pinned_ones() -> None:
    problems = thirdparty.pin_problems()
    assert not problems, "\n".join(["third-party versions changed:", *problems])


def test_every_private_name_relied_on_still_exists() -> None:
    problems = thirdparty.internal_problems()
    assert not problems, "\n".join(["third-party internals changed:", *problems])


def test_the_checks_can_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    """The two checks above are not vacuous: a wrong pin and a missing name are reported."""
    monkeypatch.setitem(PINS, "pypgstac", "0.0.1")
    assert any(p.startswith("pypgstac is ") and "0.0.1" in p for p in thirdparty.pin_problems())
    gone = thirdparty.Internal("pypgstac", "pypgstac.load", "Loader._no_such", "x", "y")
    monkeypatch.setattr(thirdparty, "INTERNALS", (*INTERNALS, gone))
    assert any("Loader._no_such" in p for p in thirdparty.internal_problems())
    instance_gone = thirdparty.Internal(
        "pypgstac", "pypgstac.load", "Loader._no_such_field", "x", "y", instance=True
    )
    state_gone = thirdparty.Internal(
        "stac-fastapi-pgstac", "stac_fastapi.pgstac.db", "connect_to_db.nopool", "x", "y", True
    )
    monkeypatch.setattr(thirdparty, "INTERNALS", (instance_gone, state_gone))
    assert len(thirdparty.internal_problems()) == 2


def test_every_internal_names_a_pinned_library() -> None:
    assert {i.dist for i in INTERNALS} <= set(PINS)


def test_pyproject_pins_the_same_versions() -> None:
    """pyproject.toml's service extra and PINS agree (one version read, one installed)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    service = project["optional-dependencies"]["service"]
    for dist in ("stac-fastapi-pgstac", "pypgstac"):
        spec = next(s for s in service if re.match(rf"{re.escape(dist)}(\[|=)", s))
        assert spec.endswith(f"=={PINS[dist]}"), (dist, spec, PINS[dist])


def test_the_pgstac_schema_is_the_pinned_one_and_still_has_what_we_redefine() -> None:
    """We redefine pgstac.bbox_geom after each migration: the pinned schema must still declare
    it with the same signature (else our version would shadow or miss a changed one)."""
    import pypgstac
    from pypgstac.version import __version__ as pypgstac_version

    assert pypgstac_version == thirdparty.PGSTAC_SCHEMA, (
        f"pypgstac installs pgSTAC {pypgstac_version}, eomatch.io.thirdparty was checked "
        f"against {thirdparty.PGSTAC_SCHEMA}: re-check BBOX_2D_SQL against its migration"
    )
    migration = Path(pypgstac.__file__).parent / "migrations" / f"pgstac.{pypgstac_version}.sql"
    text = migration.read_text()
    assert thirdparty.BBOX_GEOM_SIGNATURE in text, (
        f"{migration.name} no longer declares {thirdparty.BBOX_GEOM_SIGNATURE!r}"
    )
    assert "pgstac.bbox_geom(_bbox jsonb) RETURNS geometry" in thirdparty.BBOX_2D_SQL
    # each edit of PGSTAC_EDITS still finds what it edits, as often, in its function there,
    # made in turn as edit_pgstac_functions makes them (an edit may edit an earlier one's text)
    bodies: dict[str, str] = {}
    for edit in thirdparty.PGSTAC_EDITS:
        name = edit.function.split(".")[1].split("(")[0]
        if name not in bodies:
            start = text.index(f"CREATE OR REPLACE FUNCTION {name}(")
            bodies[name] = text[start : text.index("$$ LANGUAGE", text.index("AS $$", start) + 5)]
        body = bodies[name]
        assert len(re.findall(edit.pattern, body)) == edit.count, (edit.function, body)
        assert edit.done not in body
        bodies[name] = re.sub(edit.pattern, edit.replacement, body)
        assert edit.done in bodies[name]
    assert "collection = convert_from(decode(_parts[2], 'hex'), 'UTF8')" in text
    assert "id = convert_from(decode(_parts[3], 'hex'), 'UTF8')" in text
    # what the chunker shortcut stands for: the chunks come from partition_dtrange, by month
    chunker = text[text.index("CREATE OR REPLACE FUNCTION chunker(") :]
    chunker = chunker[: chunker.index("$$ LANGUAGE")]
    assert "EXPLAIN (format json) SELECT 1 FROM items WHERE %s;" in chunker
    assert "date_trunc('month', lower(partition_dtrange)) as sdate" in chunker
    assert "date_trunc('month', upper(partition_dtrange)) + '1 month'::interval as edate" in chunker


def test_the_replaced_link_classes_are_installed() -> None:
    """``install_module_global`` really swaps what stac-fastapi-pgstac looks up (idempotent),
    and leaves a global alone that someone else already changed."""
    from stac_fastapi.pgstac import core
    from stac_fastapi.pgstac.models.links import ItemLinks

    from eomatch.service import fast_links

    fast_links.install()
    fast_links.install()
    assert core.ItemLinks is fast_links.FastItemLinks
    assert core.CollectionLinks is fast_links.PublicCollectionLinks
    thirdparty.install_module_global(core, "ItemLinks", ItemLinks, object)
    assert core.ItemLinks is fast_links.FastItemLinks


def test_our_middleware_sits_inside_compression() -> None:
    """The middleware found by class name is found: ours go inside BrotliMiddleware."""
    from eomatch.config.settings import ApiSettings
    from eomatch.io.pg_conn import DbSettings
    from eomatch.service.app import create_app

    app = create_app(ApiSettings(api_mode="internal"), db=DbSettings(host="127.0.0.1"))
    names = [getattr(m.cls, "__name__", "") for m in app.user_middleware]
    assert "BrotliMiddleware" in names, names
    at = thirdparty.middleware_index(app, "BrotliMiddleware")
    assert names[at] == "BrotliMiddleware"
    assert names.index("ApiKeyMiddleware") < at, names
    assert names.index("BodyGuard") < at, names
    # compression cheaper than the libraries' defaults (br quality 4, gzip level 9), gzip by
    # Starlette's middleware just outside brotli-asgi's (whose own fallback has no level)
    from brotli_asgi import BrotliMiddleware
    from starlette.middleware.gzip import GZipMiddleware

    from eomatch.service.app import BROTLI_QUALITY, GZIP_LEVEL

    layers = [(m.cls, m.kwargs) for m in app.user_middleware]
    assert layers[at] == (BrotliMiddleware, {"quality": BROTLI_QUALITY, "gzip_fallback": False})
    assert layers[at - 1] == (GZipMiddleware, {"compresslevel": GZIP_LEVEL})
    assert BROTLI_QUALITY < 4
    assert GZIP_LEVEL < 9


def test_request_models_are_built_on_the_event_loop() -> None:
    """stac-fastapi's request models (APIRequest) are converted on the event loop's thread,
    any other synchronous dependency still in FastAPI's pool, and a conversion error is the
    same 400 as before."""
    import asyncio
    import threading

    import attr
    import fastapi.dependencies.utils as fastapi_dependencies
    import httpx
    from fastapi import Depends, FastAPI, HTTPException
    from stac_fastapi.types.search import APIRequest

    from eomatch.service import inline_requests

    seen: dict[str, int] = {}

    def _positive(value: str) -> int:
        if not value.isdigit():
            raise HTTPException(status_code=400, detail="n must be a number")
        return int(value)

    @attr.s
    class Model(APIRequest):
        n: int = attr.ib(default=1, converter=_positive)

        def __attrs_post_init__(self) -> None:
            seen["model"] = threading.get_ident()

    def plain() -> int:
        seen["plain"] = threading.get_ident()
        return 0

    app = FastAPI()

    @app.get("/x")
    async def x(model: Any = Depends(Model), other: Any = Depends(plain)) -> dict[str, int]:  # noqa: B008
        seen["loop"] = threading.get_ident()
        return {"n": model.n + other}

    inline_requests.install()
    inline_requests.install()
    assert fastapi_dependencies.run_in_threadpool is inline_requests.run_dependency

    async def ask(query: str) -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.get("/x" + query)

    r = asyncio.run(ask("?n=7"))
    assert r.status_code == 200, r.text
    assert r.json() == {"n": 7}
    assert seen["model"] == seen["loop"] != seen["plain"]
    bad = asyncio.run(ask("?n=seven"))
    assert bad.status_code == 400
    assert bad.json() == {"detail": "n must be a number"}
