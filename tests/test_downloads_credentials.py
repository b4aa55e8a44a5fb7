"""Downloads with credentials, against local servers that behave like providers.

Each server records what it received, so the tests assert on the wire: which host got which
Authorization header, that a token renewal resumes the partial file (Range), that a redirect to
another host carries no credentials, that the EarthData-style login dance keeps its cookie.
"""

from __future__ import annotations

import base64
import hashlib
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

import s3_server as s3_server_module
from auth_servers import Handler, Seen, Site, TokenIssuer, basic_of, s3_gate, serve
from eomatch.config.credentials import (
    BearerCredential,
    CookieCredential,
    TokenEndpointCredential,
)
from eomatch.config.models import RunConfig
from eomatch.errors import ConfigError
from eomatch.io.config_files import load_config
from eomatch.io.credentials import CredentialStore, Secret, env_suffix
from eomatch.io.downloads import DownloadJob, DownloadReport, download, part_path
from s3_server import S3Bucket, s3_bucket, s3_server

__all__ = ["s3_bucket", "s3_server"]  # the fixtures

SIZE = 200_000
DATA = (hashlib.sha256(b"product").digest() * (SIZE // 32 + 1))[:SIZE]
CHECKSUM = "1220" + hashlib.sha256(DATA).hexdigest()


def store(tmp_path: Path, config: dict[str, Any] | None = None, **env: str) -> CredentialStore:
    """A store seeing only ``env`` and a netrc file that does not exist (unless NETRC given)."""
    environ = {"NETRC": str(tmp_path / "no-netrc"), **env}
    cfg = RunConfig.model_validate({"credentials": config or {}}).credentials
    return CredentialStore(cfg, environ=environ)


def fetch(
    site: Site, tmp_path: Path, creds: CredentialStore, name: str = "f.bin", keep: bool = False
) -> DownloadReport:
    """Download ``name`` from ``site`` into ``tmp_path/out``; the store is closed unless kept."""
    job = DownloadJob("P1", f"{site.url}/{name}", tmp_path / "out" / name, checksum=CHECKSUM)
    try:
        return download([job], credentials=creds, backoff=0.01, timeout=5)
    finally:
        if not keep:
            creds.close()


def bearer_site(token: str) -> Site:
    def route(h: Handler, seen: Seen) -> None:
        if seen.headers.get("authorization") != f"Bearer {token}":
            h.answer(seen, 401, b"login first", {"WWW-Authenticate": "Bearer"})
        else:
            h.file(seen, DATA)

    return Site(routes={"/f.bin": route})


# -- 401: one line naming the host and the ways to give credentials -------------------------


def test_401_without_credentials_names_the_host_and_every_way(tmp_path: Path) -> None:
    with serve(bearer_site("t0k3n")) as site:
        report = fetch(site, tmp_path, store(tmp_path))
    (failed,) = report.failed
    reason = failed.reason
    assert "\n" not in reason
    assert reason.startswith("HTTP 401 Unauthorized from 127.0.0.1: no credentials for 127.0.0.1")
    for way in (
        "~/.netrc (machine 127.0.0.1 login USER password PASS",
        "$NETRC",
        "EOMATCH_TOKEN_127_0_0_1",
        "EOMATCH_USERNAME_127_0_0_1 + EOMATCH_PASSWORD_127_0_0_1",
        "credentials: 127.0.0.1",
        "docs/catalogue.md#credentials",
    ):
        assert way in reason
    assert len(site.requests("/f.bin")) == 1  # a 401 is final, not retried
    assert not (tmp_path / "out" / "f.bin").exists()


def test_refused_credentials_name_their_source_never_the_secret(tmp_path: Path) -> None:
    with serve(bearer_site("right-token")) as site:
        creds = store(tmp_path, EOMATCH_TOKEN_127_0_0_1="wrong-token-value")
        report = fetch(site, tmp_path, creds)
    reason = report.failed[0].reason
    assert reason == (
        "HTTP 401 Unauthorized from 127.0.0.1: the credentials from EOMATCH_TOKEN_127_0_0_1 "
        "were refused"
    )
    assert site.requests("/f.bin")[0].headers["authorization"] == "Bearer wrong-token-value"


def test_bearer_from_the_environment_and_from_config(tmp_path: Path) -> None:
    with serve(bearer_site("t0k3n")) as site:
        assert fetch(site, tmp_path, store(tmp_path, EOMATCH_TOKEN_127_0_0_1="t0k3n")).ok
        (tmp_path / "out" / "f.bin").unlink()
        port = site.url.rsplit(":", 1)[1]
        cfg = {f"127.0.0.1:{port}": {"type": "bearer", "token_env": "MY_TOKEN"}}
        assert fetch(site, tmp_path, store(tmp_path, cfg, MY_TOKEN="t0k3n")).ok
        # a config entry wins over the environment
        report = fetch(
            site, tmp_path, store(tmp_path, cfg, MY_TOKEN="x", EOMATCH_TOKEN_127_0_0_1="t0k3n")
        )
    assert (tmp_path / "out" / "f.bin").read_bytes() == DATA
    assert report.present  # already there: no request
    missing = store(tmp_path, cfg)
    with serve(bearer_site("t0k3n")) as site2:
        port2 = site2.url.rsplit(":", 1)[1]
        cfg2 = {f"127.0.0.1:{port2}": {"type": "bearer", "token_env": "MY_TOKEN"}}
        (tmp_path / "out" / "f.bin").unlink()
        reason = fetch(site2, tmp_path, store(tmp_path, cfg2)).failed[0].reason
    assert reason == (f"credentials.127.0.0.1:{port2}: environment variable MY_TOKEN is not set")
    assert missing.for_host("127.0.0.1") is None


# -- basic via netrc ------------------------------------------------------------------------


def basic_site(user: str, password: str) -> Site:
    def route(h: Handler, seen: Seen) -> None:
        if basic_of(seen) != (user, password):
            h.answer(seen, 401, b"", {"WWW-Authenticate": 'Basic realm="data"'})
        else:
            h.file(seen, DATA)

    return Site(routes={"/f.bin": route})


def test_basic_via_netrc(tmp_path: Path) -> None:
    netrc = tmp_path / "my-netrc"
    netrc.write_text(
        "machine other.example.org login bob password nope\n"
        "machine 127.0.0.1\n  login alice\n  password s3cr3t-pass\n"
        "default login eve password everywhere\n"
    )
    with serve(basic_site("alice", "s3cr3t-pass")) as site:
        creds = CredentialStore(environ={"NETRC": str(netrc)})
        report = fetch(site, tmp_path, creds)
    assert report.ok, report.failed
    assert basic_of(site.requests("/f.bin")[0]) == ("alice", "s3cr3t-pass")
    assert (tmp_path / "out" / "f.bin").read_bytes() == DATA
    # the netrc 'default' entry is never used: it would send a password to any host
    assert CredentialStore(environ={"NETRC": str(netrc)}).for_host("elsewhere.org") is None
    # basic from the environment too
    env = {
        "NETRC": str(tmp_path / "none"),
        "EOMATCH_USERNAME_127_0_0_1": "alice",
        "EOMATCH_PASSWORD_127_0_0_1": "s3cr3t-pass",
    }
    with serve(basic_site("alice", "s3cr3t-pass")) as site:
        (tmp_path / "out" / "f.bin").unlink()
        assert fetch(site, tmp_path, CredentialStore(environ=env)).ok


def test_unreadable_netrc_is_one_line_without_its_tokens(tmp_path: Path) -> None:
    netrc = tmp_path / "bad-netrc"
    netrc.write_text("machine 127.0.0.1 login alice password x\noops-secret-fragment extra\n")
    with serve(basic_site("alice", "x")) as site:
        creds = CredentialStore(environ={"NETRC": str(netrc)})
        reason = fetch(site, tmp_path, creds).failed[0].reason
    assert reason == f"{netrc}: unreadable netrc file (syntax error, line 2)"
    assert site.seen == []


# -- a redirect to another host never carries credentials -----------------------------------


def test_redirect_to_another_host_does_not_leak_the_authorization(tmp_path: Path) -> None:
    storage = Site(host="localhost", routes={"/signed/f.bin": lambda h, s: h.file(s, DATA)})
    with serve(storage):

        def route(h: Handler, seen: Seen) -> None:
            if seen.headers.get("authorization") != "Bearer t0k3n":
                h.answer(seen, 401)
            else:
                h.redirect(seen, f"{storage.url}/signed/f.bin?X-Amz-Signature=abc")

        with serve(Site(routes={"/f.bin": route})) as site:
            creds = store(tmp_path, EOMATCH_TOKEN_127_0_0_1="t0k3n")
            report = fetch(site, tmp_path, creds)
    assert report.ok, report.failed
    assert site.requests("/f.bin")[0].headers["authorization"] == "Bearer t0k3n"
    (got,) = storage.requests("/signed/f.bin")
    assert "authorization" not in got.headers
    assert got.query == {"X-Amz-Signature": ["abc"]}
    # the storage host's own credentials would go to it (and only its own)
    storage.seen.clear()
    with serve(storage), serve(Site(routes={"/f.bin": route})) as site:
        (tmp_path / "out" / "f.bin").unlink()
        creds = store(tmp_path, EOMATCH_TOKEN_127_0_0_1="t0k3n", EOMATCH_TOKEN_LOCALHOST="other")
        assert fetch(site, tmp_path, creds).ok
    assert storage.requests("/signed/f.bin")[0].headers["authorization"] == "Bearer other"


def test_a_redirect_from_https_to_http_gets_no_credentials(tmp_path: Path) -> None:
    creds = store(tmp_path, EOMATCH_TOKEN_LOCALHOST="t0k3n")
    assert creds.headers_for("http://localhost/f", "http://localhost/f") == {
        "Authorization": "Bearer t0k3n"
    }
    assert creds.headers_for("http://localhost/f", "http://data.example.org/f") == {
        "Authorization": "Bearer t0k3n"
    }
    assert creds.headers_for("http://localhost/f", "https://data.example.org/f") == {}
    assert creds.headers_for("https://localhost/f", "https://data.example.org/f") == {
        "Authorization": "Bearer t0k3n"
    }


# -- OAuth2 token endpoint: exchange, refresh on expiry, refresh on 401 and resume -----------


def token_setup(issuer: TokenIssuer, drop_once_at: int | None = None) -> Site:
    """A data server accepting the issuer's tokens; optionally the first answer hangs up after
    ``drop_once_at`` bytes and the token it was sent is revoked (an expiry mid-download)."""
    dropped: list[bool] = []

    def data(h: Handler, seen: Seen) -> None:
        if not issuer.bearer_ok(seen):
            h.answer(seen, 401, b"", {"WWW-Authenticate": 'Bearer error="invalid_token"'})
            return
        if drop_once_at is not None and not dropped:
            dropped.append(True)
            issuer.valid.discard(seen.headers["authorization"][7:])
            h.file(seen, DATA, drop_after=drop_once_at)
            return
        h.file(seen, DATA)

    return Site(routes={"/f.bin": data, "/g.bin": data, "/token": issuer.route})


def token_config(site: Site) -> dict[str, Any]:
    return {
        "127.0.0.1": {
            "type": "token-endpoint",
            "token_url": f"{site.url}/token",
            "client_id": "cdse-public",
            "username_env": "CDSE_USERNAME",
            "password_env": "CDSE_PASSWORD",
        }
    }


def test_token_expiry_mid_download_refreshes_and_resumes(tmp_path: Path) -> None:
    issuer = TokenIssuer()
    with serve(token_setup(issuer, drop_once_at=80_000)) as site:
        creds = store(
            tmp_path, token_config(site), CDSE_USERNAME="alice", CDSE_PASSWORD=issuer.password
        )
        report = fetch(site, tmp_path, creds)
    assert report.ok, report.failed
    assert (tmp_path / "out" / "f.bin").read_bytes() == DATA
    assert not part_path(tmp_path / "out" / "f.bin").exists()
    got = [
        (s.headers.get("range"), s.headers["authorization"], s.status)
        for s in site.requests("/f.bin")
    ]
    assert got == [
        (None, "Bearer access-1", 200),  # dropped after 80 000 bytes; access-1 revoked
        ("bytes=80000-", "Bearer access-1", 401),  # the retry resumes, refused
        ("bytes=80000-", "Bearer access-2", 206),  # renewed once, resumed
    ]
    assert issuer.grants == ["password", "refresh_token"]
    assert report.bytes_transferred == SIZE  # resumed: nothing fetched twice
    grant = site.requests("/token")[0]
    assert grant.form["password"] == issuer.password
    assert grant.form["client_id"] == "cdse-public"
    assert "authorization" not in grant.headers  # the token request carries no data-host token


def test_token_is_renewed_before_the_announced_expiry(tmp_path: Path) -> None:
    issuer = TokenIssuer(expires_in=1)
    with serve(token_setup(issuer)) as site:
        creds = store(
            tmp_path, token_config(site), CDSE_USERNAME="alice", CDSE_PASSWORD=issuer.password
        )
        assert fetch(site, tmp_path, creds, "f.bin", keep=True).ok
        time.sleep(1.0)  # the token's announced lifetime passes
        assert fetch(site, tmp_path, creds, "g.bin").ok
        creds.close()
    assert issuer.grants == ["password", "refresh_token"]
    assert [s.status for s in site.seen if s.path != "/token"] == [200, 200]  # never a 401


def test_token_endpoint_refusal_is_one_line_without_the_password(tmp_path: Path) -> None:
    issuer = TokenIssuer()
    with serve(token_setup(issuer)) as site:
        creds = store(
            tmp_path, token_config(site), CDSE_USERNAME="alice", CDSE_PASSWORD="wrong-pa55word"
        )
        reason = fetch(site, tmp_path, creds).failed[0].reason
    assert reason == (
        "the token endpoint 127.0.0.1 refused the password grant for the credentials from "
        "CDSE_USERNAME/CDSE_PASSWORD (credentials.127.0.0.1) (HTTP 401: invalid_grant "
        "(Invalid credentials))"
    )
    assert site.requests("/f.bin") == []


def test_offline_refresh_token_grant(tmp_path: Path) -> None:
    issuer = TokenIssuer(refresh_tokens={"offline-xyz"})
    with serve(token_setup(issuer)) as site:
        cfg = {
            "127.0.0.1": {
                "type": "token-endpoint",
                "token_url": f"{site.url}/token",
                "client_id": "cdse-public",
                "refresh_token_env": "CDSE_OFFLINE",
            }
        }
        assert fetch(site, tmp_path, store(tmp_path, cfg, CDSE_OFFLINE="offline-xyz")).ok
    assert issuer.grants == ["refresh_token"]


# -- EarthData: redirect to the login host, basic there, back with a cookie ------------------


def test_login_redirect_with_cookie(tmp_path: Path) -> None:
    login = Site(host="localhost")
    data = Site()
    with serve(login), serve(data):

        def authorize(h: Handler, seen: Seen) -> None:
            if basic_of(seen) != ("alice", "urs-secret"):
                h.answer(seen, 401, b"", {"WWW-Authenticate": 'Basic realm="URS"'})
                return
            back = seen.query["redirect_uri"][0]
            h.redirect(seen, f"{back}?code=one-time-code")

        def callback(h: Handler, seen: Seen) -> None:
            assert seen.query["code"] == ["one-time-code"]
            h.redirect(seen, "/f.bin", {"Set-Cookie": "urs_session=granted; Path=/; HttpOnly"})

        def product(h: Handler, seen: Seen) -> None:
            if "urs_session=granted" in seen.headers.get("cookie", ""):
                h.file(seen, DATA)
            else:
                h.redirect(
                    seen, f"{login.url}/oauth/authorize?redirect_uri={data.url}/urs-callback"
                )

        login.routes["/oauth/authorize"] = authorize
        data.routes.update({"/f.bin": product, "/g.bin": product, "/urs-callback": callback})
        cfg = {
            "127.0.0.1": {
                "type": "cookie",
                "login_host": "localhost",
                "username_env": "EARTHDATA_USERNAME",
                "password_env": "EARTHDATA_PASSWORD",
            }
        }
        env = {"EARTHDATA_USERNAME": "alice", "EARTHDATA_PASSWORD": "urs-secret"}
        creds = store(tmp_path, cfg, **env)
        jobs = [
            DownloadJob("P1", f"{data.url}/f.bin", tmp_path / "f.bin", checksum=CHECKSUM),
            DownloadJob("P2", f"{data.url}/g.bin", tmp_path / "g.bin", checksum=CHECKSUM),
        ]
        report = download(jobs, credentials=creds, concurrency=1, timeout=5)
    assert report.ok, report.failed
    assert (tmp_path / "g.bin").read_bytes() == DATA
    # the data host never saw the password; the login host got it, once
    assert all("authorization" not in s.headers for s in data.seen)
    assert [basic_of(s) for s in login.seen] == [("alice", "urs-secret")]
    # the cookie came back through the redirects, and served the second file directly
    assert [(s.path, s.status) for s in data.seen] == [
        ("/f.bin", 302),
        ("/urs-callback", 302),
        ("/f.bin", 200),
        ("/g.bin", 200),
    ]
    # a refused login names the login host and where its credentials came from
    (tmp_path / "f.bin").unlink()
    with serve(login), serve(data):
        creds = store(tmp_path, cfg, EARTHDATA_USERNAME="alice", EARTHDATA_PASSWORD="wrong")
        reason = (
            download(
                [DownloadJob("P1", f"{data.url}/f.bin", tmp_path / "f.bin")], credentials=creds
            )
            .failed[0]
            .reason
        )
    assert reason == (
        "HTTP 401 Unauthorized from localhost: the credentials from "
        "EARTHDATA_USERNAME/EARTHDATA_PASSWORD (credentials.127.0.0.1) were refused"
    )


# -- configuration and secrets ----------------------------------------------------------------


def test_secrets_are_hidden_from_repr() -> None:
    secret = Secret("hunter2")
    assert "hunter2" not in repr(secret)
    assert "hunter2" not in str(secret)
    assert secret.reveal() == "hunter2"
    assert env_suffix("data.lpdaac.earthdatacloud.nasa.gov") == (
        "DATA_LPDAAC_EARTHDATACLOUD_NASA_GOV"
    )


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"type": "bearer"}, "bearer.token_env: Field required"),
        ({"type": "basic", "username_env": "U", "password_env": "pass word"}, "not an environment"),
        ({"type": "bearer", "token_env": "T", "token_url": "x"}, "Extra inputs are not permitted"),
        (
            {"type": "token-endpoint", "token_url": "https://x/t", "client_id": "c"},
            "give username_env + password_env, or refresh_token_env",
        ),
        ({"type": "kerberos"}, "does not match any of the expected tags"),
    ],
)
def test_credential_config_errors_are_one_line(
    tmp_path: Path, entry: dict[str, Any], message: str
) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"credentials": {"data.example.org": entry}}))
    with pytest.raises(ConfigError) as info:
        load_config(path, None)
    text = str(info.value)
    assert text.startswith(f"{path}: credentials.data.example.org")
    assert message in text
    assert "\n" not in text
    assert "pass word" not in text  # a pasted secret is not echoed


def test_credential_keys_and_models() -> None:
    cfg = RunConfig.model_validate(
        {
            "credentials": {
                "Data.Example.org": {"type": "bearer", "token_env": "T"},
                "s3://usgs-landsat": {"type": "s3", "requester_pays": True, "region": "us-west-2"},
            }
        }
    )
    assert isinstance(cfg.credentials["data.example.org"], BearerCredential)
    with pytest.raises(ValueError, match="an s3 entry is keyed s3://BUCKET"):
        RunConfig.model_validate({"credentials": {"bucket": {"type": "s3"}}})
    with pytest.raises(ValueError, match="give a host name"):
        RunConfig.model_validate(
            {"credentials": {"https://x.org/": {"type": "bearer", "token_env": "T"}}}
        )
    for model in (BearerCredential, CookieCredential, TokenEndpointCredential):
        assert all(f.description for f in model.model_fields.values())
    assert base64  # (imported for readers of basic headers in failures)


# -- s3:// hrefs: moto's S3 server, behind a gate that enforces requester-pays ---------------


def s3_store(tmp_path: Path, gate: Site, bucket: str, **entry: Any) -> CredentialStore:
    cfg = {f"s3://{bucket}": {"type": "s3", "endpoint": gate.url, "region": "us-east-1", **entry}}
    env = {"S3_KEY": s3_server_module.ACCESS_KEY, "S3_SECRET": s3_server_module.SECRET_KEY}
    return store(tmp_path, cfg, **env)


def test_s3_download_with_requester_pays_and_resume(
    tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket: S3Bucket = request.getfixturevalue("s3_bucket")
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):  # only the configured keys
        monkeypatch.delenv(var)
    bucket.server.client().put_object(Bucket=bucket.name, Key="scenes/a b.tif", Body=DATA)
    href = f"s3://{bucket.name}/scenes/a%20b.tif"
    dest = tmp_path / "out" / "a.tif"
    keys = {"access_key_id_env": "S3_KEY", "secret_access_key_env": "S3_SECRET"}
    with serve(s3_gate(bucket.server.endpoint, {bucket.name})) as gate:
        # without requester_pays the bucket refuses: one line naming the bucket
        report = download(
            [DownloadJob("P1", href, dest, checksum=CHECKSUM)],
            credentials=s3_store(tmp_path, gate, bucket.name, **keys),
        )
        reason = report.failed[0].reason
        assert bucket.name in reason
        assert "403 Forbidden" in reason
        assert reason.endswith(
            f"if the bucket is requester-pays, set requester_pays: true under "
            f"credentials: s3://{bucket.name}"
        )
        assert "\n" not in reason
        assert not dest.exists()
        gate.seen.clear()
        # with it: a partial file is resumed with a ranged GET
        part_path(dest).parent.mkdir(parents=True, exist_ok=True)
        part_path(dest).write_bytes(DATA[:50_000])
        progress: list[tuple[int, int | None]] = []
        report = download(
            [DownloadJob("P1", href, dest, checksum=CHECKSUM, size=SIZE)],
            credentials=s3_store(tmp_path, gate, bucket.name, requester_pays=True, **keys),
            progress=lambda j, done, total: progress.append((done, total)),
        )
    assert report.ok, report.failed
    assert dest.read_bytes() == DATA
    assert report.bytes_transferred == SIZE - 50_000
    assert progress[-1] == (SIZE, SIZE)
    gets = [s for s in gate.seen if s.method == "GET"]
    assert [s.headers.get("range") for s in gets] == ["bytes=50000-"]
    assert all(s.headers.get("x-amz-request-payer") == "requester" for s in gate.seen)
    assert all(
        s3_server_module.ACCESS_KEY in s.headers["authorization"] for s in gate.seen
    )  # signed with the configured keys


def test_s3_missing_object_and_unconfigured_bucket(
    tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket: S3Bucket = request.getfixturevalue("s3_bucket")
    with serve(s3_gate(bucket.server.endpoint, {bucket.name})) as gate:
        report = download(
            [DownloadJob("P1", f"s3://{bucket.name}/nope.tif", tmp_path / "x.tif")],
            credentials=s3_store(tmp_path, gate, bucket.name, requester_pays=True),
        )
        assert report.failed[0].reason.startswith("no object 'nope.tif' in s3://")
        # a bucket without an entry: the client's own defaults (AWS_* variables; here the
        # endpoint is the gate, over http, which only an entry may allow), and the hint says
        # how to add an entry
        monkeypatch.setenv("AWS_ENDPOINT", gate.url)
        monkeypatch.setenv("AWS_ALLOW_HTTP", "true")
        job = DownloadJob("P1", f"s3://{bucket.name}/x.tif", tmp_path / "x.tif")
        with CredentialStore(environ={}) as creds:
            reason = download([job], credentials=creds, timeout=2).failed[0].reason
    assert gate.url in reason  # the environment's endpoint, never AWS itself
    assert reason.endswith(
        f"a private or requester-pays bucket needs credentials: s3://{bucket.name} "
        "(type: s3) in the configuration, or the AWS_* variables"
    )
