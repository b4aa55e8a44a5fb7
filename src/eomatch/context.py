"""``EOMatchContext``: the layered run configuration for the Python API.

The same layers as the command line: package defaults < the user file
(``~/.config/eomatch/config.yaml``; the previous generation's ``user_config.yaml`` is read with a
warning when it is the only one) < ``path`` < ``overrides``. Unlike the previous generation,
the package defaults are always loaded and an unknown key is an error, never a silent ``None``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from eomatch.config.models import WINDOW_KEY_ALIASES, RunConfig
from eomatch.config.settings import Settings
from eomatch.core.products import SensorKey
from eomatch.core.satellites import SatelliteRegistry
from eomatch.io.config_files import config_files, load_config
from eomatch.wiring import build_registry


class EOMatchContext:
    """A loaded, validated run configuration.

    Args:
        path: the run file (``--config``); None for defaults and the user file only.
        overrides: dotted keys over everything, e.g. ``{"matchup_catalogue.path": "cat"}``;
            None values are ignored (an unset flag).
        settings: environment settings (where the user file is); read from ``EOMATCH_*``.
        user_config: whether to layer the user file at all.

    Raises:
        EomatchError: a missing or invalid file, or a bad key (one line naming file and key).
    """

    def __init__(
        self,
        path: str | Path | None = None,
        overrides: Mapping[str, Any] | None = None,
        *,
        settings: Settings | None = None,
        user_config: bool = True,
    ) -> None:
        self.settings = settings or Settings()
        self.path = Path(path) if path is not None else None
        user_file = self.settings.user_config_file if user_config else None
        self.files: list[Path] = config_files(self.path, user_file)
        """The files read, lowest layer first."""
        self.overrides: dict[str, Any] = dict(overrides or {})
        self.config: RunConfig = load_config(self.path, user_file, self.overrides)

    def get(self, key: str) -> Any:
        """The value at a dotted key (``crossovers.max_distance_km``, ``sensors.0.platform``).

        ``end_time`` is read as ``stop_time`` (the window's end under its other name).

        Raises:
            KeyError: the key is not part of the configuration schema.
        """
        node: Any = self.config
        head, dot, rest = key.partition(".")
        key = WINDOW_KEY_ALIASES.get(head, head) + dot + rest
        for part in key.split("."):
            if isinstance(node, BaseModel) and part in type(node).model_fields:
                if part == "base_dir":
                    raise KeyError(key)
                node = getattr(node, part)
            elif isinstance(node, Mapping) and part in node:
                node = node[part]
            elif isinstance(node, list | tuple) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                raise KeyError(f"{key!r} is not a configuration key (at {part!r})")
        return node

    def __getitem__(self, key: str) -> Any:
        return self.get(key)

    def registry(self) -> SatelliteRegistry:
        """Built-in satellites plus those of the configuration."""
        return build_registry(self.config)

    def sensors(self) -> list[SensorKey]:
        """The configured sensors as catalogue keys (platforms resolved to registry names)."""
        return self.config.resolved_sensors(self.registry())

    def __repr__(self) -> str:
        files = ", ".join(str(f) for f in self.files) or "no files"
        return f"EOMatchContext({files})"
