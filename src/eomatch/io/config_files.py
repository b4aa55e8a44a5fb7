"""Reading configuration files: YAML → validated models with one-line errors."""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from eomatch.config.models import REGION_KEYS, RunConfig, normalize_legacy
from eomatch.errors import EomatchError


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise EomatchError(f"cannot read config {path}: {exc.strerror or exc}") from exc
    return parse_yaml(text, str(path))


def parse_yaml(text: str, path: str) -> dict[str, Any]:
    """The mapping in ``text``; ``path`` names the source in the one-line errors."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise EomatchError(f"{path}{where}: invalid YAML: {problem}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise EomatchError(
            f"{path}: the top level must be a mapping of keys, not {type(data).__name__}"
        )
    return data


def _key_and_problem(err: Any) -> tuple[str, str]:
    """Dotted key and message of one pydantic error.

    Cross-field checks raise ``ValueError("<dotted key>: <problem>")`` (pydantic gives them an
    empty location), so the key is taken from the message then.
    """
    msg = str(err["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    loc = ".".join(str(p) for p in err["loc"])
    if not loc:
        key, sep, rest = msg.partition(": ")
        if sep and " " not in key:
            return key, rest
        return "(top level)", msg
    return loc, msg


def format_validation_error(source: str, exc: ValidationError) -> str:
    """One line naming the first offending key and the problem (and how many more)."""
    errs = exc.errors()
    key, msg = _key_and_problem(errs[0])
    more = f" (and {len(errs) - 1} more problem(s))" if len(errs) > 1 else ""
    return f"{source}: {key}: {msg}{more}"


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Merge mappings recursively; lists and scalars in ``over`` replace those in ``base``."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _absolute_paths(layer: dict[str, Any], base: Path) -> dict[str, Any]:
    """Resolve a layer's relative paths against its own file's directory before merging."""

    def fix(value: Any) -> Any:
        if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
            return str(base / value)
        return value

    out = dict(layer)
    cat = out.get("matchup_catalogue")
    if isinstance(cat, dict) and isinstance(cat.get("path"), str):
        out["matchup_catalogue"] = {**cat, "path": fix(cat["path"])}
    if isinstance(out.get("tle_dirs"), list):
        out["tle_dirs"] = [fix(d) for d in out["tle_dirs"]]
    if isinstance(out.get("satellites"), list):
        out["satellites"] = [
            {**s, "tle_file": fix(s.get("tle_file"))} if isinstance(s, dict) else s
            for s in out["satellites"]
        ]
    return out


DEFAULTS_SOURCE = "package defaults (eomatch/config/defaults.yaml)"
OVERRIDES_SOURCE = "command line"


def package_defaults() -> dict[str, Any]:
    """The shipped ``defaults.yaml`` layer (the documented defaults of every key)."""
    text = resources.files("eomatch.config").joinpath("defaults.yaml").read_text("utf-8")
    return parse_yaml(text, DEFAULTS_SOURCE)


def template_text() -> str:
    """The commented template written by ``eomatch config init``."""
    return resources.files("eomatch.config").joinpath("template.yaml").read_text("utf-8")


def overrides_layer(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Dotted keys (``{"matchup_catalogue.path": p}``) → a nested layer; None values are unset.

    Raises:
        EomatchError: a key that is empty or clashes with a non-mapping value.
    """
    out: dict[str, Any] = {}
    for dotted, value in overrides.items():
        if value is None:
            continue
        parts = dotted.split(".")
        if not all(parts):
            raise EomatchError(f"{OVERRIDES_SOURCE}: {dotted!r} is not a dotted key")
        node = out
        for part in parts[:-1]:
            nxt = node.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise EomatchError(f"{OVERRIDES_SOURCE}: {dotted}: {part} is not a mapping")
            node = nxt
        last = parts[-1]
        if isinstance(value, dict) and isinstance(node.get(last), dict):
            node[last] = deep_merge(node[last], value)
        else:
            node[last] = value
    return out


def merge_layer(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Lay ``over`` on ``base``: mappings merge, lists and scalars replace, null leaves alone.

    The region keys (``bbox``, bounds, ``sites``) act as one value: a layer that gives any of
    them replaces the region of the layers below instead of mixing forms.
    """
    if any(over.get(k) is not None for k in REGION_KEYS):
        base = {k: v for k, v in base.items() if k not in REGION_KEYS}
    return _merge_skip_none(base, over)


def _merge_skip_none(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if value is None:
            continue
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge_skip_none(out[key], value)
        else:
            out[key] = value
    return out


def _drop_nulls(layer: dict[str, Any]) -> dict[str, Any]:
    """A mapping without its null values (recursively through mappings, not lists)."""
    return {
        k: _drop_nulls(v) if isinstance(v, dict) else v for k, v in layer.items() if v is not None
    }


def _validated_layer(layer: dict[str, Any], source: str) -> dict[str, Any]:
    """Nulls dropped ("not set here"), legacy keys rewritten, then the layer checked on its own.

    Cross-references (sensor collections, STAC source names) wait for the merged result.
    """
    try:
        layer = normalize_legacy(_drop_nulls(layer))
    except ValueError as exc:
        raise EomatchError(f"{source}: {exc}") from exc
    try:
        RunConfig.model_validate(layer, context={"partial": True})
    except ValidationError as exc:
        raise EomatchError(format_validation_error(source, exc)) from exc
    return layer


def config_files(path: Path | None, user_file: Path | None = None) -> list[Path]:
    """The files a run reads, lowest layer first (a missing user file is skipped).

    Raises:
        EomatchError: ``path`` is given but is not a file.
    """
    files = []
    if user_file is not None and user_file.is_file():
        files.append(user_file)
    if path is not None:
        if not path.is_file():
            raise EomatchError(f"config file not found: {path}")
        files.append(path)
    return files


def load_config(
    path: Path | None,
    user_file: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    defaults: bool = True,
) -> RunConfig:
    """Layer package defaults < ``user_file`` (if it exists) < ``path`` < ``overrides``.

    Each file is checked alone first, so an error names the file that holds the bad key; an
    error only visible after merging names the layer that last set that key. Relative paths
    in a file are taken from that file's directory.

    Raises:
        EomatchError: unreadable file, bad YAML, or a key that fails validation (one line).
    """
    data: dict[str, Any] = {}
    origin: dict[str, str] = {}
    base_dir: Path | None = None
    layers: list[tuple[str, dict[str, Any]]] = []
    if defaults:
        layers.append((DEFAULTS_SOURCE, package_defaults()))
    files = config_files(path, user_file)
    for src in files:
        layers.append((str(src), _absolute_paths(_read_yaml(src), src.resolve().parent)))
    if overrides:
        layers.append((OVERRIDES_SOURCE, overrides_layer(overrides)))
    for source, raw in layers:
        layer = _validated_layer(raw, source)
        data = merge_layer(data, layer)
        origin.update({k: source for k, v in layer.items() if v is not None})
    if files:
        base_dir = files[-1].resolve().parent
    try:
        cfg = RunConfig.model_validate(data)
    except ValidationError as exc:
        key, _ = _key_and_problem(exc.errors()[0])
        source = origin.get(key.split(".")[0], layers[-1][0] if layers else "configuration")
        raise EomatchError(format_validation_error(source, exc)) from exc
    cfg.base_dir = base_dir
    return cfg
