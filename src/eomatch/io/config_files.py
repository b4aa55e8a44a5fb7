"""Reading configuration files: YAML → validated models with one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from eomatch.config.models import EomatchConfig
from eomatch.errors import EomatchError


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise EomatchError(f"cannot read config {path}: {exc.strerror or exc}") from exc
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


def format_validation_error(source: str, exc: ValidationError) -> str:
    """One line naming the first offending key and the problem (and how many more)."""
    errs = exc.errors()
    first = errs[0]
    loc = ".".join(str(p) for p in first["loc"]) or "(top level)"
    more = f" (and {len(errs) - 1} more problem(s))" if len(errs) > 1 else ""
    return f"{source}: {loc}: {first['msg']}{more}"


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
    if isinstance(out.get("tle_dirs"), list):
        out["tle_dirs"] = [fix(d) for d in out["tle_dirs"]]
    if isinstance(out.get("satellites"), list):
        out["satellites"] = [
            {**s, "tle_file": fix(s.get("tle_file"))} if isinstance(s, dict) else s
            for s in out["satellites"]
        ]
    return out


def load_config(path: Path | None, user_file: Path | None = None) -> EomatchConfig:
    """Layer package defaults < ``user_file`` (if it exists) < ``path`` and validate.

    Raises:
        EomatchError: unreadable file, bad YAML, or a key that fails validation.
    """
    data: dict[str, Any] = {}
    base_dir: Path | None = None
    sources = []
    if user_file is not None and user_file.is_file():
        sources.append(user_file)
    if path is not None:
        if not path.is_file():
            raise EomatchError(f"config file not found: {path}")
        sources.append(path)
    for src in sources:
        layer = _read_yaml(src)
        try:
            EomatchConfig.model_validate(layer)
        except ValidationError as exc:
            raise EomatchError(format_validation_error(str(src), exc)) from exc
        data = deep_merge(data, _absolute_paths(layer, src.resolve().parent))
        base_dir = src.resolve().parent
    cfg = EomatchConfig.model_validate(data)
    cfg.base_dir = base_dir
    return cfg
