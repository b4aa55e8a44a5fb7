"""Identifiers from outside as path components, and paths checked against their root.

Item ids, collection ids, platform names and file names reach eomatch from provider STAC APIs,
matchup APIs and download servers. Every writer turns them into paths through this module:

* :func:`check_component` refuses what cannot be one file name (used where the name must stay
  the identifier, e.g. ``{id}.json`` in the catalogue);
* :func:`sanitise_component` maps anything to a safe file name (used where the name only needs
  to be stable and distinct, e.g. download destinations);
* :func:`within_root` resolves a path (following existing symlinks) and refuses it unless it
  stays inside its root, so a symlink planted in a catalogue cannot redirect a write;
* :func:`readable_within` does the same for a path someone else chose for reading (a job's
  input submitted over HTTP): stricter, and its message does not show where a link leads.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from eomatch.errors import UnsafePathError

MAX_COMPONENT_BYTES = 200
"""Longest file name accepted (UTF-8 bytes). File systems allow 255; the rest is left for the
suffixes writers add (``.json``, ``.part``, ``.{name}.XXXX.tmp``)."""

_FORBIDDEN = re.compile(r"[/\\\x00-\x1f\x7f]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._+=,@-]")


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_component(what: str, value: object) -> str:
    """``value`` when it can be one file name as it is; else :class:`UnsafePathError`.

    Refused: non-strings, empty names, ``.`` and ``..``, names starting with ``.`` (hidden and
    temporary files of the catalogue), ``/``, ``\\``, NUL and other control characters, and
    names longer than :data:`MAX_COMPONENT_BYTES` bytes.
    """
    if not isinstance(value, str) or not value:
        raise UnsafePathError(f"{what} {_shown(value)} cannot be a file name (empty or not text)")
    if value.startswith("."):
        raise UnsafePathError(f"{what} {_shown(value)} cannot be a file name (starts with '.')")
    if _FORBIDDEN.search(value):
        raise UnsafePathError(
            f"{what} {_shown(value)} cannot be a file name (contains '/', '\\' or a control "
            "character)"
        )
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise UnsafePathError(f"{what} {_shown(value)} cannot be a file name (not UTF-8)") from None
    if size > MAX_COMPONENT_BYTES:
        raise UnsafePathError(
            f"{what} {_shown(value)} cannot be a file name ({size} bytes, at most "
            f"{MAX_COMPONENT_BYTES})"
        )
    return value


def is_safe_component(value: object) -> bool:
    """Whether :func:`check_component` accepts ``value``."""
    try:
        check_component("name", value)
    except UnsafePathError:
        return False
    return True


def sanitise_component(value: object, *, max_bytes: int = MAX_COMPONENT_BYTES) -> str:
    """A safe file name derived from ``value``: itself when it is plain ASCII and short.

    Characters other than ``A-Z a-z 0-9 . _ + = , @ -`` become ``_``, leading dots are dropped,
    and a name that had to change (or is too long) gets a short hash of the original, so two
    different values never map to one name. Never empty.
    """
    text = value if isinstance(value, str) else str(value)
    clean = _UNSAFE_CHARS.sub("_", text).lstrip(".")
    if clean == text and 0 < len(clean) <= max_bytes:
        return clean
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    head = clean[: max(0, max_bytes - len(digest) - 1)].rstrip(".")
    return f"{head}_{digest}" if head else digest


def within_root(root: str | os.PathLike[str], path: str | os.PathLike[str]) -> Path:
    """``path`` resolved (symlinks followed), if it lies inside ``root`` (resolved too).

    Relative paths are taken from ``root``. Parts that do not exist yet are fine; a symlink
    anywhere on the way that leads out of ``root`` is not.

    Raises:
        UnsafePathError: the path leaves ``root`` (``..``, an absolute path elsewhere, or a
            symlink pointing outside).
    """
    base = Path(os.path.realpath(root))
    target = Path(path)
    if not target.is_absolute():
        target = Path(root) / target
    resolved = Path(os.path.realpath(target))
    if resolved != base and not resolved.is_relative_to(base):
        raise UnsafePathError(f"refusing to write {target}: it resolves outside {base}")
    return resolved


def readable_within(
    root: str | os.PathLike[str],
    path: str,
    *,
    what: str = "path",
    root_name: str = "the folder it may be read from",
) -> Path:
    """``path`` (relative: from ``root``) resolved, symlinks followed, if it lies inside ``root``.

    For paths from an untrusted caller: a ``..`` part, NUL or another control character is
    refused outright (even when it would stay inside), and the message names the path as
    given and the root's role, never where a symlink leads.

    Raises:
        UnsafePathError: the path leaves ``root`` or cannot be a path.
    """
    if not path or _CONTROL.search(path):
        raise UnsafePathError(f"{what} {_shown(path)} is not a usable path")
    target = Path(path)
    if ".." in target.parts:
        raise UnsafePathError(f"{what} {_shown(path)}: '..' is not allowed")
    base = Path(os.path.realpath(root))
    try:
        resolved = Path(os.path.realpath(Path(root) / target))
    except (OSError, ValueError):
        raise UnsafePathError(f"{what} {_shown(path)} is not a usable path") from None
    if resolved != base and not resolved.is_relative_to(base):
        raise UnsafePathError(f"{what} {_shown(path)} is outside {root_name}")
    return resolved


def join_within(root: str | os.PathLike[str], *components: str) -> Path:
    """``root / c1 / c2 ...`` after checking every component and the resolved result."""
    for c in components:
        check_component("path component", c)
    path = Path(root).joinpath(*components)
    within_root(root, path)
    return path


__all__ = [
    "MAX_COMPONENT_BYTES",
    "check_component",
    "is_safe_component",
    "join_within",
    "readable_within",
    "sanitise_component",
    "within_root",
]
