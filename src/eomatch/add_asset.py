"""Seed-compatible module name for analysis assets (see :mod:`eomatch.workflows.assets`)."""

from __future__ import annotations

from eomatch.workflows.assets import list_versions, register_analysis

__all__ = ["list_versions", "register_analysis"]
