"""Reading configuration files: YAML → validated models with one-line errors."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from eomatch.config.models import REGION_KEYS, RunConfig, normalize_legacy
from eomatch.errors import ConfigError, InputError
from eomatch.io.safe_files import check_regular, read_regular_text

log = logging.getLogger(__name__)

MAX_CONFIG_BYTES = 1 << 20
"""Largest configuration file read (1 MiB; the commented template is about 10 kB)."""
MAX_YAML_DEPTH = 32
"""Deepest nesting of mappings and lists (the configuration schema uses 5)."""
MAX_YAML_ALIASES = 100
"""Most ``*alias`` references in one document."""
MAX_YAML_NODES = 100_000
"""Most values in the document with every alias expanded (defeats "billion laughs")."""


class _LimitedLoader(yaml.SafeLoader):
    """PyYAML's safe loader with the nesting depth and the alias count bounded while composing.

    Composition is recursive (a deep document would end in ``RecursionError``) and aliases
    share nodes, so a 1 kB document of nested aliases expands to billions of values in any
    code that walks it (validation, merging, dumping). Both are refused before construction.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        mark: Any = event.start_mark
        if isinstance(event, yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_YAML_ALIASES:
                raise yaml.composer.ComposerError(
                    None, None, f"more than {MAX_YAML_ALIASES} aliases", mark
                )
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise yaml.composer.ComposerError(
                    None, None, f"nested deeper than {MAX_YAML_DEPTH} levels", mark
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _expanded_size(root: yaml.Node) -> int:
    """Values in the document with aliases expanded (memoised: linear in the node graph).

    Raises:
        yaml.composer.ComposerError: the expansion exceeds :data:`MAX_YAML_NODES`, or an
            alias refers to a collection that contains it (a cycle).
    """
    sizes: dict[int, int] = {}
    active: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if key in sizes and not done:
            continue
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        if not done:
            if key in active:
                raise yaml.composer.ComposerError(
                    None, None, "an alias refers to a collection that contains it", node.start_mark
                )
            active.add(key)
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in sizes)
            continue
        active.discard(key)
        total = 1 + sum(sizes[id(c)] for c in children)
        if total > MAX_YAML_NODES:
            raise yaml.composer.ComposerError(
                None,
                None,
                f"more than {MAX_YAML_NODES} values once aliases are expanded",
                node.start_mark,
            )
        sizes[key] = total
    return sizes.get(id(root), 0)


def _read_yaml(path: Path) -> dict[str, Any]:
    text = read_regular_text(path, "config", MAX_CONFIG_BYTES)
    return parse_yaml(text, str(path))


def parse_yaml(text: str, path: str) -> dict[str, Any]:
    """The mapping in ``text``; ``path`` names the source in the one-line errors.

    The same bounded loader reads every YAML file eomatch accepts (see the limits above).
    """
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: more than the limit of {MAX_CONFIG_BYTES} characters")
    loader = _LimitedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return {}
        _expanded_size(node)
        data = loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}{where}: invalid YAML: {problem}") from exc
    except (ValueError, OverflowError, RecursionError) as exc:  # e.g. a 5000-digit integer
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"{path}: invalid YAML value: {first}") from exc
    finally:
        loader.dispose()
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
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
    dl = out.get("downloads")
    if isinstance(dl, dict) and isinstance(dl.get("products_root"), str):
        out["downloads"] = {**dl, "products_root": fix(dl["products_root"])}
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
            raise InputError(f"{OVERRIDES_SOURCE}: {dotted!r} is not a dotted key")
        node = out
        for part in parts[:-1]:
            nxt = node.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise InputError(f"{OVERRIDES_SOURCE}: {dotted}: {part} is not a mapping")
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
        layer = normalize_legacy(
            _drop_nulls(layer), warn=lambda message: log.warning("%s: %s", source, message)
        )
    except ValueError as exc:
        raise ConfigError(f"{source}: {exc}") from exc
    try:
        RunConfig.model_validate(layer, context={"partial": True})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(source, exc)) from exc
    return layer


LEGACY_USER_CONFIG_NAME = "user_config.yaml"
"""The previous generation's user file name (``~/.config/eomatch/user_config.yaml``)."""

_warned_legacy: set[Path] = set()


def user_config_path(user_file: Path) -> Path:
    """The user file to read: ``user_file``, else the previous generation's name beside it.

    ``user_config.yaml`` (the previous generation's name) is read, with a warning (once per
    process), when ``config.yaml`` is absent; when both exist, the old one is ignored with a
    warning.
    """
    legacy = user_file.with_name(LEGACY_USER_CONFIG_NAME)
    if legacy == user_file or not os.path.lexists(legacy):
        return user_file
    current = os.path.lexists(user_file)
    if legacy not in _warned_legacy:
        _warned_legacy.add(legacy)
        if current:
            log.warning(
                "%s: ignored (the previous generation's name); %s is read", legacy, user_file
            )
        else:
            log.warning(
                "%s: read under the previous generation's name; rename it to %s",
                legacy,
                user_file.name,
            )
    return user_file if current else legacy


def config_files(path: Path | None, user_file: Path | None = None) -> list[Path]:
    """The files a run reads, lowest layer first (a missing user file is skipped).

    A missing ``config.yaml`` user file falls back to ``user_config.yaml`` beside it (the previous
    generation's name, with a warning: :func:`user_config_path`).

    Raises:
        EomatchError: ``path`` is given but is missing, or a file is not a regular file of at
            most :data:`MAX_CONFIG_BYTES`.
    """
    files = []
    if user_file is not None:
        user_file = user_config_path(user_file)
    if user_file is not None and os.path.lexists(user_file):
        check_regular(user_file, "user config", MAX_CONFIG_BYTES)
        files.append(user_file)
    if path is not None:
        if not os.path.lexists(path):
            raise ConfigError(f"config file not found: {path}")
        check_regular(path, "config", MAX_CONFIG_BYTES)
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
        raise ConfigError(format_validation_error(source, exc)) from exc
    cfg.base_dir = base_dir
    return cfg
