"""The ``credentials:`` and ``downloads:`` sections: how to log in to providers, where files go.

A configuration file names environment variables, never secrets: each ``*_env`` key holds the
*name* of the variable with the value. ``credentials`` maps a host (``data.example.org``, or
``host:port``) or an S3 bucket (``s3://bucket``) to one way of logging in; the type decides
which keys are allowed (any other is an error naming it).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?$")
_BUCKET = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def _env_name(value: str) -> str:
    if not _ENV.match(value):
        raise ValueError(  # the value itself is not repeated: it may be a pasted secret
            "not an environment variable name: give the NAME of the variable holding the "
            "value (secrets never go in the file)"
        )
    return value


EnvName = Annotated[str, AfterValidator(_env_name)]


class _Credential(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BasicCredential(_Credential):
    """HTTP basic authentication (user name and password) sent to this host only."""

    type: Literal["basic"] = Field(description="HTTP basic authentication.")
    username_env: EnvName = Field(description="Variable holding the user name.")
    password_env: EnvName = Field(description="Variable holding the password.")


class BearerCredential(_Credential):
    """A fixed bearer token (``Authorization: Bearer …``) sent to this host only."""

    type: Literal["bearer"] = Field(description="A bearer token.")
    token_env: EnvName = Field(description="Variable holding the token.")


class TokenEndpointCredential(_Credential):
    """An OAuth2 token endpoint (CDSE, Keycloak): tokens obtained, refreshed on expiry or 401.

    Either a password grant (``username_env`` + ``password_env``) or a refresh-token grant
    from an offline token (``refresh_token_env``).
    """

    type: Literal["token-endpoint"] = Field(description="An OAuth2 token endpoint.")
    token_url: str = Field(pattern=r"^https?://", description="The token endpoint URL.")
    client_id: str = Field(min_length=1, description="OAuth2 client id (CDSE: cdse-public).")
    client_secret_env: EnvName | None = Field(
        default=None, description="Variable holding the client secret (confidential clients)."
    )
    username_env: EnvName | None = Field(
        default=None, description="Variable holding the user name (password grant)."
    )
    password_env: EnvName | None = Field(
        default=None, description="Variable holding the password (password grant)."
    )
    refresh_token_env: EnvName | None = Field(
        default=None, description="Variable holding an offline/refresh token (refresh grant)."
    )
    scope: str | None = Field(default=None, description="OAuth2 scope to ask for, if any.")

    @model_validator(mode="after")
    def _grant(self) -> TokenEndpointCredential:
        if (self.username_env is None) != (self.password_env is None):
            raise ValueError("username_env and password_env go together (the password grant)")
        if self.username_env is None and self.refresh_token_env is None:
            raise ValueError("give username_env + password_env, or refresh_token_env")
        return self


class CookieCredential(_Credential):
    """A login host the data host redirects to (NASA EarthData URS): basic authentication is
    sent to ``login_host`` only on a redirect from this host, and the session cookie it sets
    carries the following requests."""

    type: Literal["cookie"] = Field(description="A redirect to a login host, back with a cookie.")
    login_host: str = Field(
        default="urs.earthdata.nasa.gov", description="The host that asks for the login."
    )
    username_env: EnvName = Field(description="Variable holding the user name.")
    password_env: EnvName = Field(description="Variable holding the password.")

    @field_validator("login_host")
    @classmethod
    def _host(cls, value: str) -> str:
        if not _HOST.match(value):
            raise ValueError(f"{value!r} is not a host name")
        return value.lower()


class S3Credential(_Credential):
    """An S3 bucket (key ``s3://bucket``): region, endpoint, requester-pays, access keys.

    Without access-key variables the usual AWS ones apply (``AWS_ACCESS_KEY_ID``…).
    """

    type: Literal["s3"] = Field(description="An S3 bucket.")
    region: str | None = Field(default=None, description="Bucket region (e.g. us-west-2).")
    endpoint: str | None = Field(
        default=None,
        pattern=r"^https?://",
        description="S3-compatible endpoint URL (default: AWS).",
    )
    requester_pays: bool = Field(
        default=False, description="Accept the transfer charges (requester-pays buckets)."
    )
    anonymous: bool = Field(default=False, description="Unsigned requests (public buckets).")
    access_key_id_env: EnvName | None = Field(
        default=None, description="Variable holding the access key id."
    )
    secret_access_key_env: EnvName | None = Field(
        default=None, description="Variable holding the secret access key."
    )
    session_token_env: EnvName | None = Field(
        default=None, description="Variable holding a session token (temporary keys)."
    )

    @model_validator(mode="after")
    def _keys(self) -> S3Credential:
        if (self.access_key_id_env is None) != (self.secret_access_key_env is None):
            raise ValueError("access_key_id_env and secret_access_key_env go together")
        if self.anonymous and self.access_key_id_env is not None:
            raise ValueError("anonymous: unsigned requests take no access keys")
        return self


CredentialConfig = Annotated[
    BasicCredential | BearerCredential | TokenEndpointCredential | CookieCredential | S3Credential,
    Field(discriminator="type"),
]
"""One entry of ``credentials:`` (the ``type`` key chooses the form)."""

CREDENTIAL_TYPES = ("basic", "bearer", "token-endpoint", "cookie", "s3")


def check_credential_keys(value: dict[str, CredentialConfig]) -> dict[str, CredentialConfig]:
    """Hosts for HTTP types, ``s3://bucket`` for ``s3``; host names are case-insensitive."""
    out: dict[str, CredentialConfig] = {}
    for key, cred in value.items():
        if cred.type == "s3":
            if not _BUCKET.match(key):
                raise ValueError(f"{key}: an s3 entry is keyed s3://BUCKET")
        elif not _HOST.match(key):
            raise ValueError(f"{key}: give a host name (data.example.org or host:port)")
        name = key.lower()
        if name in out:
            raise ValueError(f"{key}: given twice")
        out[name] = cred
    return out


Credentials = Annotated[dict[str, CredentialConfig], AfterValidator(check_credential_keys)]
"""The ``credentials:`` section: host or ``s3://bucket`` → entry (keys checked, lower-cased)."""


class DownloadsConfig(BaseModel):
    """Where ``eomatch download`` puts product files."""

    model_config = ConfigDict(extra="forbid")

    products_root: Path | None = Field(
        default=None,
        description=(
            "Folder (a shared drive) holding products as {platform}/{collection}/YYYY/MM/DD/; "
            "null: the catalogue's data/ (relative: from the config file)."
        ),
    )

    @field_validator("products_root")
    @classmethod
    def _expand(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None


__all__ = [
    "CREDENTIAL_TYPES",
    "BasicCredential",
    "BearerCredential",
    "CookieCredential",
    "CredentialConfig",
    "Credentials",
    "DownloadsConfig",
    "EnvName",
    "S3Credential",
    "TokenEndpointCredential",
    "check_credential_keys",
]
