"""Adversarial checks of the API answer cache (``eomatch.service.response_cache``).

Each test here failed before the fix it names.
"""

from __future__ import annotations

import os
import time
import tracemalloc

import pytest

from eomatch.service.response_cache import ResponseCache, _Entry

HEADERS = ((b"content-type", b"application/geo+json"), (b"vary", b"Accept-Encoding"))


@pytest.mark.parametrize("body_size", [0, 200, 2000])
def test_a_flood_of_small_answers_stays_within_the_bound(body_size: int) -> None:
    """Each entry's own objects count: 200-byte answers held 3.2x the bound before."""
    cache = ResponseCache(max_bytes=2 * 1024 * 1024, ttl=60)
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        for _ in range(30_000):
            headers = tuple((bytes(k), bytes(v)) for k, v in HEADERS)  # fresh, as on a miss
            entry = _Entry(200, headers, os.urandom(body_size), time.monotonic())
            cache.put(os.urandom(32), entry)
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert cache.size <= cache.max_bytes
    assert held - base <= 1.1 * cache.max_bytes, (len(cache), held - base)
