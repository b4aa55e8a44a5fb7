"""Errors of the tree raised inside the API answer with their branch's status, never a 500."""

import orjson
import pytest

from eomatch.errors import (
    ConflictError,
    DatabaseError,
    EomatchError,
    InputError,
    InvalidValueError,
    NetworkError,
    NotFoundError,
    UnknownSatelliteError,
)
from eomatch.service.app import eomatch_error_response


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (InputError("bad thing\nsecond line"), 400, "BadRequest"),
        (InvalidValueError("out of range"), 400, "BadRequest"),
        (EomatchError("plain"), 400, "BadRequest"),
        (NotFoundError("no such item"), 404, "NotFound"),
        (UnknownSatelliteError("no satellite 'X'"), 404, "NotFound"),
        (ConflictError("exists"), 409, "Conflict"),
    ],
)
def test_client_errors_carry_their_first_line(exc, status, code):
    response = eomatch_error_response(exc)
    body = orjson.loads(response.body)
    assert response.status_code == status
    assert body == {"code": code, "description": str(exc).splitlines()[0]}


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (DatabaseError("connection to 10.1.2.3:5432 refused"), 503),
        (NetworkError("https://internal.example:8443/x timed out"), 502),
    ],
)
def test_server_side_errors_reveal_no_hosts_or_paths(exc, status):
    response = eomatch_error_response(exc)
    text = response.body.decode()
    assert response.status_code == status
    assert "10.1.2.3" not in text
    assert "internal.example" not in text
    assert "5432" not in text
