"""``eomatch config``: write the commented template, validate a run file, show the merged result."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from eomatch.config.models import RunConfig
from eomatch.config.settings import Settings
from eomatch.errors import EomatchError
from eomatch.io.atomic import atomic_write_text
from eomatch.io.config_files import config_files, load_config, template_text
from eomatch.wiring import build_registry


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    """Add the subcommand (and its verbs) to the top-level parser."""
    p = sub.add_parser(
        "config",
        parents=[parent],
        help="write, validate or show configuration files",
        description=(
            "Configuration layers, lowest first: package defaults < "
            "~/.config/eomatch/config.yaml < --config FILE < command-line flags."
        ),
    )
    verbs = p.add_subparsers(dest="config_command", required=True, metavar="VERB")
    init = verbs.add_parser(
        "init",
        parents=[parent],
        help="write the commented template (every key with its default)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    init.add_argument(
        "--path",
        type=Path,
        default=None,
        metavar="FILE",
        help="where to write (default: the user config file, ~/.config/eomatch/config.yaml)",
    )
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    init.set_defaults(handler=run_init)
    val = verbs.add_parser(
        "validate",
        parents=[parent],
        help="check a run file (layered over the user file) and summarise it",
    )
    val.add_argument("file", type=Path, metavar="FILE", help="the YAML run file")
    val.set_defaults(handler=run_validate)
    show = verbs.add_parser(
        "show",
        parents=[parent],
        help="print the effective merged configuration as YAML",
    )
    show.set_defaults(handler=run_show)


def run_init(args: argparse.Namespace) -> int:
    """Write the template atomically; never overwrite without ``--force``."""
    path: Path = args.path if args.path is not None else Settings().user_config_file
    path = path.expanduser()
    if path.is_dir():
        raise EomatchError(f"{path} is a directory")
    if path.exists() and not args.force:
        raise EomatchError(f"{path} already exists (use --force to overwrite)")
    atomic_write_text(path, template_text())
    print(f"wrote {path}")
    return 0


def _fmt_time(value: Any) -> str:
    return f"{value:%Y-%m-%dT%H:%M:%SZ}" if value is not None else "not set"


def summary(cfg: RunConfig) -> list[str]:
    """Short human lines: sensors, window, region, thresholds, catalogue."""
    sensors = cfg.resolve_sensors(build_registry(cfg))
    lines = [
        "sensors: "
        + (
            ", ".join(
                f"{r.key.collection}/{r.key.platform} ({r.source}"
                + (f": {r.stac_source})" if r.stac_source else ")")
                for r in sensors
            )
            or "none"
        ),
        (
            f"window: {_fmt_time(cfg.start_time)} to {_fmt_time(cfg.end_time)}"
            if cfg.start_time or cfg.end_time
            else "window: not set"
        ),
    ]
    if cfg.sites:
        lines.append(f"region: {len(cfg.sites)} site(s): {', '.join(s.name for s in cfg.sites)}")
    else:
        box = cfg.region_bbox()
        lines.append(f"region: bbox {list(box)}" if box else "region: the whole globe")
    c = cfg.crossovers
    lines.append(
        f"crossovers: D = {c.max_distance_km:g} km, T = {c.max_time_diff_s} s; "
        f"min collocation area {cfg.min_collocation_area_km2:g} km²"
    )
    cat = cfg.matchup_catalogue
    lines.append(f"catalogue: {cat.path if cat.path is not None else 'not set'} (id {cat.id})")
    problems = cfg.run_problems()
    if problems:
        lines.append("not ready for `eomatch find`: " + "; ".join(problems))
    return lines


def run_validate(args: argparse.Namespace) -> int:
    """Validate ``FILE`` over the defaults and the user file; exit 2 with one line if bad."""
    user_file = Settings().user_config_file
    cfg = load_config(args.file, user_file)
    try:
        lines = summary(cfg)
    except EomatchError as exc:
        raise EomatchError(f"{args.file}: {exc}") from exc
    files = config_files(args.file, user_file)
    print(f"{args.file}: OK")
    if len(files) > 1:
        lines.insert(0, "layers: " + " < ".join(str(f) for f in files))
    for line in lines:
        print(f"  {line}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    """Print the merged configuration (defaults, user file, ``--config``) as YAML."""
    cfg = load_config(getattr(args, "config", None), Settings().user_config_file)
    print(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, allow_unicode=True), end="")
    return 0
