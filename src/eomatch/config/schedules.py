"""``schedules:`` in the YAML: jobs the worker submits on a cron schedule (issue 13 §1).

Each entry names a job kind and its params; the worker checks both against the registry of
kinds when it starts (this layer does not know the kinds), so a typo stops the worker with
one line instead of failing at 3 a.m.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["ScheduleConfig", "check_schedules"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_CRON_FIELD = re.compile(r"^[0-9A-Za-z*/,\-?LW#]+$")
_CRON_ALIASES = frozenset({"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@hourly"})


class ScheduleConfig(BaseModel):
    """One periodic job: ``{name, cron, kind, params}``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Unique name (letters, digits, '.', '_', '-').")
    cron: str = Field(
        description="When, in cron syntax: 5 fields (minute hour day month weekday), "
        "an optional 6th for seconds, or @hourly/@daily/@weekly/@monthly."
    )
    kind: str = Field(description="The job kind (see `eomatch jobs kinds`).")
    params: dict[str, Any] = Field(default_factory=dict, description="The job's params.")
    enabled: bool = Field(default=True, description="False keeps the entry but never runs it.")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("use 1-64 letters, digits, '.', '_' or '-'")
        return value

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        text = " ".join(value.split())
        if text in _CRON_ALIASES:
            return text
        fields = text.split(" ")
        if len(fields) not in (5, 6) or not all(_CRON_FIELD.match(f) for f in fields):
            raise ValueError(f"{value!r:.80} is not a cron expression (5 or 6 fields)")
        try:  # the full check when the scheduler's parser is installed (the jobs extra)
            from croniter import croniter  # type: ignore[import-untyped]
        except ImportError:
            return text
        if not croniter.is_valid(text):
            raise ValueError(f"{value!r:.80} is not a valid cron expression")
        return text


def check_schedules(schedules: list[ScheduleConfig]) -> None:
    """Names are unique (ValueError naming the entry otherwise)."""
    names = [s.name for s in schedules]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise ValueError(f"schedules.{i}.name: duplicate schedule name {name!r}")
