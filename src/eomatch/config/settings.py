"""Environment settings (``EOMATCH_*``)."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_GP_URL = "https://celestrak.org/NORAD/elements/gp.php"


def _xdg(var: str, fallback: str) -> Path:
    base = os.environ.get(var)
    return Path(base) if base else Path.home() / fallback


def _default_data_dir() -> Path:
    # As root, ~ is unreachable for the postgres user who must own the cluster's files.
    if os.geteuid() == 0 and not os.environ.get("XDG_DATA_HOME"):
        return Path("/var/lib/eomatch")
    return _xdg("XDG_DATA_HOME", ".local/share") / "eomatch"


class Settings(BaseSettings):
    """Process-wide settings read from the environment."""

    model_config = SettingsConfigDict(env_prefix="EOMATCH_", extra="ignore")

    cache_dir: Path = Field(default_factory=lambda: _xdg("XDG_CACHE_HOME", ".cache") / "eomatch")
    """Where ``eomatch tle update`` stores fetched element sets (``<cache_dir>/tle``)."""
    config_dir: Path = Field(default_factory=lambda: _xdg("XDG_CONFIG_HOME", ".config") / "eomatch")
    """Where the user configuration ``config.yaml`` lives."""
    tle_dirs: list[Path] = Field(default_factory=list)
    """Extra directories of TLE files (JSON list in the environment)."""
    data_dir: Path = Field(default_factory=lambda: _default_data_dir())
    """Where eomatch keeps its local database cluster (``<data_dir>/db``)."""
    db_dir: Path | None = None
    """The local cluster folder (overrides ``<data_dir>/db``)."""
    gp_url: str = DEFAULT_GP_URL
    """CelesTrak-style GP endpoint used by ``eomatch tle update``."""

    @property
    def tle_cache_dir(self) -> Path:
        """Directory of fetched element sets."""
        return self.cache_dir / "tle"

    @property
    def local_db_dir(self) -> Path:
        """Folder of the local database cluster."""
        return self.db_dir or self.data_dir / "db"

    @property
    def user_config_file(self) -> Path:
        """The user's layered configuration file."""
        return self.config_dir / "config.yaml"
