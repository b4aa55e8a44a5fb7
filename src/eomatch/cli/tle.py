"""``eomatch tle``: element-set management (update from a GP endpoint, coverage)."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    """Add the subcommand to the top-level parser (subcommands being written)."""
    p = sub.add_parser("tle", parents=[parent], help="manage element sets")
    tsub = p.add_subparsers(dest="tle_command", required=True, metavar="ACTION")
    del tsub
