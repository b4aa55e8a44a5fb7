"""Crossover records as CSV, JSON, GeoJSON or a terminal table."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table

from eomatch.core.crossovers import Crossover
from eomatch.io.atomic import atomic_write_text


class OutputFormat(StrEnum):
    """Formats ``eomatch crossovers`` can write."""

    table = "table"
    csv = "csv"
    json = "json"
    geojson = "geojson"


def to_csv(events: Sequence[Crossover]) -> str:
    """CSV with a header row of the record field names."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(Crossover.FIELDS), lineterminator="\n")
    w.writeheader()
    for e in events:
        w.writerow(e.as_record())
    return buf.getvalue()


def to_json(events: Sequence[Crossover]) -> str:
    """A JSON array of records."""
    return json.dumps([e.as_record() for e in events], indent=1) + "\n"


def to_geojson(events: Sequence[Crossover]) -> str:
    """A FeatureCollection: one MultiPoint (A's and B's closest-approach points) per event."""
    feats = [
        {
            "type": "Feature",
            "geometry": {
                "type": "MultiPoint",
                "coordinates": [
                    [round(e.lon_a, 6), round(e.lat_a, 6)],
                    [round(e.lon_b, 6), round(e.lat_b, 6)],
                ],
            },
            "properties": e.as_record(),
        }
        for e in events
    ]
    return json.dumps({"type": "FeatureCollection", "features": feats}, indent=1) + "\n"


def to_table(events: Sequence[Crossover]) -> Table:
    """A rich table for the terminal."""
    t = Table(title=f"{len(events)} crossover event(s)", box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("A", "B", "time_a UTC", "dt s", "d km", "lat_a", "lon_a", "run s"):
        t.add_column(col, justify="left" if col in ("A", "B") else "right", no_wrap=True)
    for e in events:
        r = e.as_record()
        t.add_row(
            e.platform_a,
            e.platform_b,
            str(r["time_a"]).replace("T", " ").rstrip("Z"),
            str(e.dt_s),
            f"{e.distance_km:.2f}",
            f"{e.lat_a:.3f}",
            f"{e.lon_a:.3f}",
            str(int((e.end_a - e.start_a).total_seconds())),
        )
    return t


RENDERERS = {OutputFormat.csv: to_csv, OutputFormat.json: to_json, OutputFormat.geojson: to_geojson}


def write_events(events: Sequence[Crossover], fmt: OutputFormat, output: Path | None) -> None:
    """Write to ``output`` atomically, or to stdout when ``output`` is None."""
    if fmt is OutputFormat.table:
        if output is not None:
            buf = io.StringIO()
            Console(file=buf, width=120).print(to_table(events))
            atomic_write_text(output, buf.getvalue())
        else:
            Console().print(to_table(events))
        return
    text = RENDERERS[fmt](events)
    if output is None:
        print(text, end="")
    else:
        atomic_write_text(output, text)
