"""``read_ahead``: the pull fetches the next page while it writes this one, in order, safely."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from eomatch.workflows.query import read_ahead


def test_yields_everything_in_order() -> None:
    assert list(read_ahead(iter(range(100)))) == list(range(100))
    assert list(read_ahead(iter([]))) == []


def test_produces_in_another_thread_and_ahead_of_the_consumer() -> None:
    produced: list[int] = []
    threads: set[str] = set()

    def items() -> Iterator[int]:
        for i in range(5):
            threads.add(threading.current_thread().name)
            produced.append(i)
            yield i

    pages = read_ahead(items())
    assert next(pages) == 0
    deadline = time.monotonic() + 5
    while len(produced) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(produced) == 3  # one handed over, one waiting in the slot, one in hand: no more
    assert threads == {"eomatch-query-fetch"}
    assert list(pages) == [1, 2, 3, 4]


def test_an_error_comes_after_the_items_before_it() -> None:
    def items() -> Iterator[int]:
        yield 1
        yield 2
        raise ValueError("page 3 failed")

    pages = read_ahead(items())
    assert [next(pages), next(pages)] == [1, 2]
    with pytest.raises(ValueError, match="page 3 failed"):
        next(pages)


def test_closing_stops_the_producer() -> None:
    closed = threading.Event()
    produced: list[int] = []

    def items() -> Iterator[int]:
        try:
            for i in range(1000):
                produced.append(i)
                yield i
        finally:
            closed.set()

    pages = read_ahead(items())
    assert next(pages) == 0
    pages.close()  # the consumer failed: the producer stops at its next item
    assert closed.wait(5)
    assert len(produced) <= 3
