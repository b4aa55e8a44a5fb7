"""TLE parsing, validation and nearest-epoch selection."""

from __future__ import annotations

import numpy as np
import pytest

from eomatch.core.tle import (
    STALE_LIMIT,
    CoverageError,
    ElementArchive,
    TleError,
    parse_tle_text,
)

# Real ISS element sets (public), 3-line format.
ISS = """ISS (ZARYA)
1 25544U 98067A   22121.50000000  .00006879  00000+0  12971-3 0  9994
2 25544  51.6438 213.7063 0006718 308.8426 169.3398 15.49929986338079
"""


def _with_checksum(line: str) -> str:
    total = sum(int(c) if c.isdigit() else (1 if c == "-" else 0) for c in line[:68])
    return line[:68] + str(total % 10)


def _tle(epoch_day: str) -> str:
    l1 = _with_checksum(f"1 25544U 98067A   22{epoch_day}  .00006879  00000+0  12971-3 0  999 ")
    l2 = _with_checksum("2 25544  51.6438 213.7063 0006718 308.8426 169.3398 15.49929986338079")
    return f"{l1}\n{l2}\n"


def test_parses_three_and_two_line_forms():
    three = parse_tle_text(_tle("121.50000000"), "a.tle")
    two = parse_tle_text("\n".join(_tle("121.50000000").splitlines()), "b.tle")
    assert len(three) == len(two) == 1
    assert three[0].norad_id == 25544
    # 2022 day 121.5 = 2022-05-01 12:00 UTC
    assert three[0].epoch == pytest.approx(1651406400.0)
    named = parse_tle_text("ISS (ZARYA)\n" + _tle("121.50000000"), "c.tle")
    assert named[0].name == "ISS (ZARYA)"


def test_bad_checksum_names_file_and_line():
    good = _tle("121.50000000")
    l1, l2 = good.splitlines()
    bad_digit = str((int(l2[68]) + 1) % 10)
    text = "ISS\n" + good + "ISS\n" + l1 + "\n" + l2[:68] + bad_digit + "\n"
    with pytest.raises(TleError, match=r"sats\.txt:6: line 2 checksum"):
        parse_tle_text(text, "sats.txt")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1 25544U 98067A   22121.50000000  .00006879  00000+0  12971-3 0  9994\n", "no line 2"),
        ("junk name\nmore junk\n", "expected a TLE line"),
        ("NAME ONLY\n", "not followed by a TLE"),
        (
            "2 25544  51.6438 213.7063 0006718 308.8426 169.3398 15.49929986338079\n",
            "without a line 1",
        ),
        ("ISS\n1 25544U 98067A   22121.5\n2 25544\n", "expected a TLE line"),
    ],
)
def test_malformed_inputs_raise_clear_errors(text, message):
    with pytest.raises(TleError, match=message):
        parse_tle_text(text, "x.tle")


def test_mismatched_catalogue_numbers():
    l1, l2 = _tle("121.50000000").splitlines()
    l2 = _with_checksum(l2[:2] + "25545" + l2[7:])
    with pytest.raises(TleError, match="catalogue number 25545"):
        parse_tle_text(f"{l1}\n{l2}\n", "x.tle")


def test_lenient_mode_collects_and_skips():
    good = _tle("121.50000000")
    l1, l2 = good.splitlines()
    corrupt = l1 + "\n" + l2[:68] + str((int(l2[68]) + 1) % 10) + "\n"
    skipped: list[TleError] = []
    sets = parse_tle_text(good + corrupt + _tle("122.50000000"), "x", skipped)
    assert len(sets) == 2
    assert len(skipped) == 1


def test_nearest_epoch_selection_and_duplicates():
    text = _tle("121.00000000") + _tle("122.00000000") + _tle("122.00000000") + _tle("124.00000000")
    arc = ElementArchive("ISS", parse_tle_text(text, "x"))
    assert len(arc.sets) == 3  # duplicate epoch collapsed
    e = arc.epochs
    times = np.array(
        [e[0] - 10, e[0] + 43199, e[0] + 43201, e[1] + 86399, e[1] + 86401, e[2] + 1e6]
    )
    assert arc.nearest(times.astype(np.int64)).tolist() == [0, 0, 1, 1, 2, 2]


def test_window_outside_coverage_is_refused_unless_allowed():
    arc = ElementArchive("ISS", parse_tle_text(_tle("121.00000000") + _tle("124.00000000"), "x"))
    lim = STALE_LIMIT.total_seconds()
    arc.check_window(arc.epochs[0] - lim + 1, arc.epochs[-1] + lim - 1)
    with pytest.raises(
        CoverageError, match=r"ISS: element sets cover 2022-05-01 00:00 to 2022-05-04"
    ):
        arc.check_window(arc.epochs[0], arc.epochs[-1] + lim + 60)
    with pytest.raises(CoverageError):
        arc.check_window(arc.epochs[0] - lim - 60, arc.epochs[-1])
    arc.check_window(arc.epochs[0] - 100 * lim, arc.epochs[-1], allow_stale=True)
