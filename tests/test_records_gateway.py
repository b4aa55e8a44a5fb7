"""The gateway sends /csw and /records to the external (public) API, path and body intact."""

from __future__ import annotations

import httpx

from test_gateway import Running, gw, needs_nginx  # noqa: F401 - the module's nginx fixture


@needs_nginx
def test_csw_and_records_go_to_the_external_api(gw: Running) -> None:  # noqa: F811
    csw = httpx.get(f"{gw.url}/csw?service=CSW&request=GetCapabilities").json()
    assert (csw["upstream"], csw["path"]) == (
        "external",
        "/csw?service=CSW&request=GetCapabilities",
    )
    body = b"<csw:GetRecords/>"
    post = httpx.post(f"{gw.url}/csw", content=body, headers={"content-type": "text/xml"}).json()
    assert (post["upstream"], post["method"], post["path"]) == ("external", "POST", "/csw")
    for path in ("/records", "/records/collections/metadata:main/items?bbox=1,2,3,4"):
        echo = httpx.get(f"{gw.url}{path}").json()
        assert (echo["upstream"], echo["path"]) == ("external", path)
    other = httpx.get(f"{gw.url}/recordsx")  # not a prefix match: the browser's files
    assert b'"upstream"' not in other.content
