"""Fixtures shared by every test module: the real database stack (see service_fixtures.py)."""

from service_fixtures import pg_cluster, service_db

__all__ = ["pg_cluster", "service_db"]
