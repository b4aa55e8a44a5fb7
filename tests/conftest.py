"""Fixtures shared by every test module: the real database stack (see service_fixtures.py),
and how the property tests draw their examples.

The test command runs hypothesis derandomized (the ``repeatable`` profile): the same examples
on every run, so a green run on one clone is green on the next and a red one is the change's.
New examples are searched for on purpose, with another seed each time:
``HYPOTHESIS_PROFILE=explore bash scripts/test.sh -k fuzz`` (or ``--hypothesis-seed=N``);
what that finds becomes a fix and a pinned ``@example``.
"""

import os

from hypothesis import settings

from service_fixtures import pg_cluster, service_db

settings.register_profile("repeatable", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))

__all__ = ["pg_cluster", "service_db"]
