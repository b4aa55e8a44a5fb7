"""The error tree (issue 11 §3): drawn in errors.py as it is, the only home of error classes,
mapped to exit codes and HTTP statuses in one table each, and psycopg's errors translated in
one place against a real PostgreSQL."""

from __future__ import annotations

import ast
import builtins
import importlib
import inspect
import re
import socket
from pathlib import Path

import pytest

from eomatch import errors
from eomatch.errors import (
    ConflictError,
    DatabaseError,
    EomatchError,
    InputError,
    InvalidValueError,
    NotFoundError,
    exit_code,
    http_status,
)
from service_fixtures import *  # noqa: F403
from service_fixtures import ServiceDb

SRC = Path(errors.__file__).parent
TREE_LINE = re.compile(r"^(?P<indent>[ │├└─]*)(?P<name>[A-Z]\w+)\s+(?P<rest>.*)$")


def tree_classes() -> list[type[BaseException]]:
    return [
        obj
        for obj in vars(errors).values()
        if inspect.isclass(obj)
        and issubclass(obj, EomatchError)
        and obj.__module__ == errors.__name__
    ]


def drawn_tree() -> dict[str, tuple[str | None, list[str]]]:
    """``name -> (drawn parent, drawn mixins)`` from the module docstring's picture."""
    drawn: dict[str, tuple[str | None, list[str]]] = {}
    stack: list[tuple[int, str]] = []
    assert errors.__doc__
    for line in errors.__doc__.splitlines():
        m = TREE_LINE.match(line.strip("\n")[4:]) if line.startswith("    ") else None
        if not m:
            continue
        depth = len(m["indent"])
        while stack and stack[-1][0] >= depth:
            stack.pop()
        mixins = re.findall(r"\+ (\w+)", m["rest"].split(":")[0])
        drawn[m["name"]] = (stack[-1][1] if stack else None, mixins)
        stack.append((depth, m["name"]))
    return drawn


def test_the_drawn_tree_is_the_real_tree() -> None:
    drawn = drawn_tree()
    classes = {c.__name__: c for c in tree_classes()}
    assert set(drawn) == set(classes), "every class drawn, every drawn name a class"
    assert drawn["EomatchError"] == (None, [])
    for name, (parent, mixins) in drawn.items():
        cls = classes[name]
        if parent is None:
            continue
        tree_bases = [b.__name__ for b in cls.__bases__ if issubclass(b, EomatchError)]
        other_bases = [b.__name__ for b in cls.__bases__ if not issubclass(b, EomatchError)]
        assert tree_bases == [parent], f"{name}: drawn under {parent}, defined under {tree_bases}"
        assert other_bases == mixins, f"{name}: drawn with {mixins}, defined with {other_bases}"


def test_branches_are_the_ones_the_issue_names() -> None:
    branches = {c.__name__ for c in EomatchError.__subclasses__()}
    assert branches == {
        "ConfigError",
        "InputError",
        "NotFoundError",
        "ConflictError",
        "DatabaseError",
        "NetworkError",
        "ServiceError",
    }


def _bases(node: ast.ClassDef) -> list[str]:
    names = []
    for b in node.bases:
        names.append(b.attr if isinstance(b, ast.Attribute) else getattr(b, "id", ""))
    return names


def test_every_error_class_of_the_package_lives_in_errors_py() -> None:
    """An AST scan: no class outside errors.py derives from an exception class (by name), so a
    new error cannot start a second tree somewhere else."""
    builtin_errors = {
        name
        for name, obj in vars(builtins).items()
        if inspect.isclass(obj) and issubclass(obj, BaseException)
    }
    tree = {c.__name__ for c in tree_classes()}
    outside = []
    for path in sorted(SRC.rglob("*.py")):
        if path == SRC / "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ClassDef):
                bases = set(_bases(node))
                if bases & (builtin_errors | tree) or any(
                    b.endswith(("Error", "Exception", "Failure")) for b in bases
                ):
                    outside.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name}")
    assert outside == []


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("eomatch.io.pgstac_store", "DatabaseError"),
        ("eomatch.io.pg_cluster", "ClusterError"),
        ("eomatch.io.http", "TransportFailure"),
        ("eomatch.io.http", "Retryable"),
        ("eomatch.io.downloads", "DownloadError"),
        ("eomatch.service.gateway", "GatewayError"),
        ("eomatch.service.browser", "BrowserBuildError"),
        ("eomatch.core.satellites", "UnknownSatelliteError"),
        ("eomatch.core.collections", "UnknownCollectionError"),
        ("eomatch.core.tle", "TleError"),
        ("eomatch.core.tle", "CoverageError"),
    ],
)
def test_old_import_paths_name_the_same_class(module: str, name: str) -> None:
    assert getattr(importlib.import_module(module), name) is getattr(errors, name)


def test_builtin_semantics_kept_for_old_callers() -> None:
    from eomatch.core.satellites import SatelliteRegistry
    from eomatch.core.stac_items import parse_datetime

    with pytest.raises(ValueError, match="is not a string") as bad_time:
        parse_datetime(5)  # type: ignore[arg-type]
    assert isinstance(bad_time.value, InvalidValueError)
    with pytest.raises(LookupError) as unknown:
        SatelliteRegistry([]).get("NOPE")
    assert isinstance(unknown.value, NotFoundError)
    assert issubclass(errors.UnreadableFileError, OSError)
    assert issubclass(errors.MissingExtraError, ImportError)


def test_core_checks_are_tree_errors_and_still_value_errors() -> None:
    """Core used to raise bare ValueError, which the CLI reported as an internal error."""
    from eomatch.core.crossovers import CrossoverParams

    with pytest.raises(InvalidValueError, match="max distance") as exc:
        CrossoverParams(max_distance_km=-1)
    assert isinstance(exc.value, ValueError)
    assert exit_code(exc.value) == 2
    assert http_status(exc.value) == 400


@pytest.mark.parametrize(
    ("cls", "code", "status"),
    [
        (errors.ConfigError, 2, 500),
        (errors.MissingExtraError, 2, 500),
        (errors.InputError, 2, 400),
        (errors.UnsafePathError, 2, 400),
        (errors.UnreadableFileError, 2, 400),
        (errors.TleError, 2, 400),
        (errors.NotFoundError, 2, 404),
        (errors.UnknownSatelliteError, 2, 404),
        (errors.ConflictError, 2, 409),
        (errors.DatabaseError, 2, 503),
        (errors.ClusterError, 2, 503),
        (errors.NetworkError, 2, 502),
        (errors.RemoteLimitError, 2, 502),
        (errors.DownloadError, 2, 502),
        (errors.ServiceError, 2, 503),
        (errors.GatewayError, 2, 503),
        (errors.EomatchError, 2, 400),
        (ValueError, 1, 500),
        (KeyError, 1, 500),
    ],
)
def test_exit_codes_and_statuses_follow_the_branch(
    cls: type[BaseException], code: int, status: int
) -> None:
    exc = cls.__new__(cls)
    assert exit_code(exc) == code
    assert http_status(exc) == status


def test_every_branch_has_an_exit_code_and_a_status() -> None:
    for branch in [EomatchError, *EomatchError.__subclasses__()]:
        assert branch in errors.EXIT_CODES
        assert branch in errors.HTTP_STATUSES


# -- psycopg, against the real database -------------------------------------------------------


def test_psycopg_errors_become_one_line_tree_errors(service_db: ServiceDb) -> None:
    import psycopg

    from eomatch.io.pg_errors import translated

    with psycopg.connect(service_db.role().conninfo(), autocommit=True) as conn:
        conn.execute("CREATE TEMP TABLE t (name text PRIMARY KEY)")
        conn.execute("INSERT INTO t VALUES ('a')")
        with (
            pytest.raises(ConflictError) as taken,
            translated("cannot add", conflict="'a' is taken"),
        ):
            conn.execute("INSERT INTO t VALUES ('a')")
        assert str(taken.value) == "'a' is taken"
        assert taken.value.__cause__ is None
        assert taken.value.__suppress_context__
        # no conflict text: a database error
        with pytest.raises(DatabaseError) as dup, translated("cannot add"):
            conn.execute("INSERT INTO t VALUES ('a')")
        assert str(dup.value).startswith("cannot add: duplicate key value")
        with (
            pytest.raises(DatabaseError, match=r"^cannot divide: division by zero$"),
            translated("cannot divide"),
        ):
            conn.execute("SELECT 1/0")
        with translated("nothing"):  # no error, nothing raised
            assert conn.execute("SELECT 1").fetchone() == (1,)


def test_the_store_reports_every_driver_error_as_a_tree_error(service_db: ServiceDb) -> None:
    from eomatch.io.pgstac_store import PgstacStore

    store = PgstacStore(service_db.role())
    assert store.create_key("ci").startswith("eomk_")
    with pytest.raises(ConflictError, match="an API key named 'ci' already exists"):
        store.create_key("ci")
    with pytest.raises(InputError, match="invalid key name"):
        store.create_key("bad name!")
    with pytest.raises(NotFoundError, match="no API key named 'nobody'"):
        store.revoke_key("nobody")
    # a query that fails inside connect()'s block: one line, not a psycopg traceback
    with (
        pytest.raises(DatabaseError, match=r"database .*: relation .*no_such_table.* does not"),
        store.connect() as conn,
    ):
        conn.execute("SELECT * FROM no_such_table")


def test_an_unreachable_database_is_a_database_error() -> None:
    from eomatch.io.pg_conn import ConnectionInfo
    from eomatch.io.pgstac_store import PgstacStore

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: refused
        info = ConnectionInfo(host="127.0.0.1", port=port, dbname="x", user="x")
        with pytest.raises(DatabaseError, match=r"^cannot connect to the database") as exc:
            PgstacStore(info).list_keys()
    assert "\n" not in str(exc.value)
    assert exit_code(exc.value) == 2


def test_io_raise_sites_raise_their_branch(tmp_path: Path) -> None:
    """Callers can catch the branch: configuration, input, a missing thing, the network."""
    import socket as _socket

    from eomatch.errors import ConfigError, NetworkError
    from eomatch.io.celestrak import fetch_gp_tles
    from eomatch.io.config_files import load_config
    from eomatch.io.http import HttpLimits
    from eomatch.timeparse import parse_time

    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml", None)
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(bad, None)
    with pytest.raises(InputError, match="not an ISO 8601"):
        parse_time("soon", "start_time")
    with pytest.raises(InputError, match="must start with http"):
        fetch_gp_tles("ftp://example.org", [25544])
    with _socket.socket() as s:
        s.bind(("127.0.0.1", 0))  # bound, not listening: refused
        url = f"http://127.0.0.1:{s.getsockname()[1]}/gp"
        with pytest.raises(NetworkError, match="cannot fetch TLEs"):
            fetch_gp_tles(url, [25544], 2, limits=HttpLimits(max_retries=0))
