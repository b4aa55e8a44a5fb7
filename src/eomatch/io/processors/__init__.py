"""Processors: plug-ins that describe non-STAC files as STAC items (stac-repository's
``StacProcessor`` idea), for the ``process`` job kind and ``eomatch process``.

A processor is any class meeting :class:`Processor` (a name, a target collection,
``matches(path)`` and ``items(path)``), constructible without arguments. Installed ones are
found through the ``eomatch.processors`` entry-point group; the built-ins register there too
(``netcdf-cf``, ``geotiff``). A processor not installed as a plug-in can be named by its dotted
path, ``package.module:ClassName``. docs/jobs.md ("Writing a processor") has a complete example.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import pystac

from eomatch.errors import ConfigError, InputError, MissingExtraError, NotFoundError

__all__ = [
    "ENTRY_POINT_GROUP",
    "Processor",
    "ProcessorInfo",
    "check_items",
    "installed_processors",
    "load_processor",
]

ENTRY_POINT_GROUP = "eomatch.processors"


@runtime_checkable
class Processor(Protocol):
    """What a processor plug-in provides.

    Attributes:
        name: short name (``netcdf-cf``), what ``eomatch process NAME FILE`` takes.
        collection: the collection its items go into by default (None: the caller must give
            one with ``--collection`` / ``params.collection``).
    """

    name: str
    collection: str | None

    def matches(self, path: Path) -> bool:
        """Whether this processor understands the file (cheap: suffix, magic bytes)."""
        ...

    def items(self, path: Path) -> Iterable[pystac.Item | dict[str, Any]]:
        """The STAC items describing the file; raise with a one-line message if it cannot.

        Asset hrefs pointing at ``path`` itself (its path or ``file://`` URL) are replaced by
        the object store's URL when the file is stored; leave other hrefs absolute.
        """
        ...


@dataclass(frozen=True)
class ProcessorInfo:
    """One installed processor, as ``eomatch processors list`` shows it."""

    name: str
    target: str
    """``module:Class`` it loads."""
    collection: str | None
    description: str


def _instantiate(obj: Any, what: str) -> Processor:
    try:
        proc = obj() if isinstance(obj, type) else obj
    except Exception as exc:
        raise ConfigError(f"processor {what} cannot be created: {exc}") from None
    if not isinstance(proc, Processor):
        raise ConfigError(
            f"{what} is not a processor (needs name, collection, matches(path), items(path))"
        )
    return proc


def installed_processors() -> dict[str, ProcessorInfo]:
    """Every processor of the ``eomatch.processors`` entry points, by name."""
    out: dict[str, ProcessorInfo] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            proc = _instantiate(ep.load(), ep.value)
        except Exception as exc:  # a broken plug-in is listed, not fatal
            out[ep.name] = ProcessorInfo(ep.name, ep.value, None, f"cannot load: {exc}")
            continue
        doc = (type(proc).__doc__ or "").strip().splitlines()
        out[ep.name] = ProcessorInfo(ep.name, ep.value, proc.collection, doc[0] if doc else "")
    return dict(sorted(out.items()))


def load_processor(name: str) -> Processor:
    """The processor called ``name`` (an entry point) or at dotted path ``module:Class``.

    Raises:
        NotFoundError: no such processor (the installed ones are listed).
        ConfigError: it cannot be imported or is not a :class:`Processor`.
    """
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            obj = getattr(importlib.import_module(module), attr)
        except ImportError as exc:
            raise NotFoundError(f"cannot import processor module {module!r}: {exc}") from None
        except AttributeError:
            raise NotFoundError(f"module {module!r} has no {attr!r}") from None
        return _instantiate(obj, name)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            try:
                obj = ep.load()
            except ImportError as exc:
                raise ConfigError(f"processor {name!r} cannot be imported: {exc}") from None
            return _instantiate(obj, name)
    known = ", ".join(installed_processors()) or "none"
    raise NotFoundError(f"no processor {name!r:.100} (installed: {known}; or give module:Class)")


def check_items(proc: Processor, path: Path) -> list[dict[str, Any]]:
    """``proc.items(path)`` as dicts; whatever it raises becomes one InputError line."""
    try:
        produced = list(proc.items(path))
    except MissingExtraError:  # the install hint, as it is
        raise
    except Exception as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"processor {proc.name} failed on {path.name}: {text}") from None
    out: list[dict[str, Any]] = []
    for item in produced:
        if isinstance(item, pystac.Item):
            doc = item.to_dict(include_self_link=False, transform_hrefs=False)
        elif isinstance(item, dict):
            doc = dict(item)
        else:
            raise InputError(
                f"processor {proc.name} gave a {type(item).__name__}, not a pystac.Item or dict"
            )
        out.append(doc)
    return out
