"""The external view as a pure function, and the byte-level shortcut in front of it (§4).

:func:`eomatch.core.publish.public_view` walks a whole response; the external API skips the
decoding and the walk when the encoded body has no ``href`` that is not an http(s) string
(``_MAYBE_PRIVATE``). Both are checked here on arbitrary JSON with hrefs anywhere, encoded
the two ways the API encodes (orjson, and ``json.dumps`` as Starlette does), against plain
oracles.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from eomatch.core.publish import is_public, public_view
from eomatch.service.app import _MAYBE_PRIVATE
from service_fixtures import all_hrefs

PUBLIC = re.compile(r"^https?://", re.IGNORECASE | re.ASCII)

href_values = st.one_of(
    st.sampled_from(
        [
            "https://example.org/a",
            "HTTP://EXAMPLE.ORG/B",
            "file:///etc/passwd",
            "/abs/path",
            "relative/x.nc",
            "s3://bucket/k",
            " http://leading.space",
            "http\u017f://long-s.example.org",  # long s folds to "s" under Unicode rules
            "\uff48ttp://fullwidth.example.org",
            "",
        ]
    ),
    st.text(max_size=12),
    st.integers(-(2**62), 2**62),
    st.none(),
    st.lists(st.text(max_size=4), max_size=2),
)
keys = st.sampled_from(["href", "assets", "links", "alternate", "properties", "x", "features"])
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**62), 2**62),
    st.text(max_size=8),
    href_values.map(lambda h: {"href": h}),
)
documents = st.recursive(
    leaves,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)),
    max_leaves=25,
)


def _encodings(doc: Any) -> list[bytes]:
    return [
        orjson.dumps(doc),
        json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode(),
        json.dumps(doc).encode(),
    ]


@settings(max_examples=400, deadline=None)
@given(doc=st.dictionaries(keys, documents, max_size=5))
def test_public_view_leaves_only_http_hrefs(doc: dict[str, Any]) -> None:
    out = public_view(json.loads(json.dumps(doc)))
    assert all(PUBLIC.match(h) for h in all_hrefs(out)), all_hrefs(out)
    # nothing that was public is lost: every http(s) href still there or inside a removed object
    assert len(all_hrefs(out)) <= len(all_hrefs(doc))


@settings(max_examples=400, deadline=None)
@given(doc=st.dictionaries(keys, documents, max_size=5))
def test_the_shortcut_only_skips_bodies_with_nothing_to_remove(doc: dict[str, Any]) -> None:
    for raw in _encodings(doc):
        decoded = orjson.loads(raw)
        if _MAYBE_PRIVATE.search(raw) is None:
            assert public_view(orjson.loads(raw)) == decoded, raw[:300]
            assert all(PUBLIC.match(h) for h in all_hrefs(decoded))


def test_the_shortcut_sees_every_kind_of_private_href() -> None:
    hostless = ["http://#x", "http:///x", "http://", "https://?q", "http://\\x", "http:// x"]
    for href in ["file:///x", "/x", "x", "", "ftp://x", " http://x", "http\u017f://x", 5, None, []]:
        for raw in _encodings({"a": [{"b": {"href": href}}]}):
            assert _MAYBE_PRIVATE.search(raw), (href, raw)
    for href in hostless:  # an http(s) href without a host is a path in disguise
        assert not is_public(href)
        assert public_view({"links": [{"href": href}]}) == {"links": []}
        for raw in _encodings({"a": [{"b": {"href": href}}]}):
            assert _MAYBE_PRIVATE.search(raw), (href, raw)
    for raw in _encodings({"a": [{"href": "https://x"}, {"href": "HTTP://Y"}]}):
        assert _MAYBE_PRIVATE.search(raw) is None
