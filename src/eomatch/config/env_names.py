"""Secrets in configuration are named, never written: headers given as environment variables."""

from __future__ import annotations

import re

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
"""A portable environment variable name."""


def check_header_env_names(value: dict[str, str]) -> dict[str, str]:
    """A pydantic check of ``headers_env``: each header maps to a variable *name*, so a pasted
    secret is refused (and not repeated in the message)."""
    for header, var in value.items():
        if not ENV_NAME.match(var):
            raise ValueError(
                f"{header}: give the name of an environment variable holding the value "
                "(credentials never go in the file)"
            )
    return value
