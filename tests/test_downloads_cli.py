"""``eomatch download`` end to end with credentials, and products on a shared drive.

The CLI runs in a child process with ``-v`` (every logger at DEBUG, httpx and httpcore
included) against a local token endpoint and data server; afterwards no byte of any secret may
be in the catalogue's files (JSON, the side index), the output or the logs.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from auth_servers import Handler, Seen, Site, TokenIssuer, serve
from catalogue_helpers import make_event
from eomatch.io.catalogue import MatchupCatalogue
from eomatch.io.credentials import CredentialStore
from eomatch.workflows.products import (
    Selection,
    download_products,
    product_destination,
    remove_products,
)


def content(pid: str) -> bytes:
    return hashlib.sha256(pid.encode()).digest() * 1000


def catalogue(root: Path, base_url: str) -> list[str]:
    """A catalogue of one event whose products' data hrefs are ``{base_url}/{id}.zip``."""
    with MatchupCatalogue.create(root) as cat:
        cat.add_event(make_event(n_matchups=2))
        ids = sorted({p.id for e in cat.get_events() for m in e.matchups for p in m.products})
        for pid in ids:

            def edit(assets: dict[str, Any], pid: str = pid) -> bool:
                assets["data"] = {"href": f"{base_url}/{pid}.zip", "roles": ["data"]}
                return True

            cat.update_item_assets(pid, edit)
    return ids


def data_site(issuer: TokenIssuer, ids: list[str]) -> Site:
    def serve_product(h: Handler, seen: Seen) -> None:
        if not issuer.bearer_ok(seen):
            h.answer(seen, 401, b"", {"WWW-Authenticate": "Bearer"})
        else:
            h.file(seen, content(seen.path[1:].removesuffix(".zip")))

    routes = {f"/{pid}.zip": serve_product for pid in ids}
    routes["/token"] = issuer.route
    return Site(routes=routes)


def cli(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("CDSE_", "EOMATCH_"))},
        "EOMATCH_CONFIG_DIR": str(cwd / "no-user-config"),
        "NETRC": str(cwd / "no-netrc"),
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "eomatch", *args],
        cwd=cwd,
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_download_with_a_token_endpoint_leaves_no_secret_anywhere(tmp_path: Path) -> None:
    root, shared = tmp_path / "cat", tmp_path / "shared"
    password = "Pa55-w0rd-8f1c2e"
    issuer = TokenIssuer(password=password, prefix="tok-5be1d9-")
    site = Site()
    with serve(site):
        ids = catalogue(root, site.url)
        site.routes.update(data_site(issuer, ids).routes)
        cfg = tmp_path / "run.yaml"
        cfg.write_text(
            yaml.safe_dump(
                {
                    "downloads": {"products_root": "shared"},
                    "credentials": {
                        "127.0.0.1": {
                            "type": "token-endpoint",
                            "token_url": f"{site.url}/token",
                            "client_id": "cdse-public",
                            "username_env": "CDSE_USERNAME",
                            "password_env": "CDSE_PASSWORD",
                        }
                    },
                }
            )
        )
        env = {"CDSE_USERNAME": "alice", "CDSE_PASSWORD": password}
        # without the configuration: no credentials, one line per product naming the host
        bare = cli("download", "--path", str(root), cwd=tmp_path, env=env)
        assert bare.returncode == 1
        assert "HTTP 401 Unauthorized from 127.0.0.1: no credentials for 127.0.0.1" in bare.stderr
        # with it, verbose: tokens obtained, every product downloaded into the shared root
        run = cli(
            "-v", "download", "--config", str(cfg), "--path", str(root), cwd=tmp_path, env=env
        )
        assert run.returncode == 0, run.stderr[-3000:]
    assert f"{len(ids)} downloaded, 0 already present, 0 failed" in run.stdout
    assert issuer.grants == ["password"]
    assert "DEBUG" in run.stderr  # the logs were on
    with MatchupCatalogue.open(root) as cat:
        for pid in ids:
            product = cat.products([pid])[0]
            path = cat.local_file(pid, product.assets["data"]["href"])
            assert path is not None
            assert path.is_relative_to(shared)
            assert path.read_bytes() == content(pid)
            assert product.assets["data"]["eomatch:source_href"].startswith(site.url)
    # nothing went into the catalogue's own data/ (the run without credentials made folders)
    assert [f for f in (root / "data").rglob("*") if f.is_file()] == []
    secrets = [password, *(f"tok-5be1d9-{k}-{n}" for k in ("access", "refresh") for n in (1, 2))]
    for secret in secrets:
        for text in (run.stdout, run.stderr, bare.stdout, bare.stderr):
            assert secret not in text
        for path in root.rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path
    assert "tok-5be1d9-access-1" in str(site.seen)  # the secrets were really in play


def test_products_on_the_shared_drive_are_registered_in_place(tmp_path: Path) -> None:
    root, shared = tmp_path / "cat", tmp_path / "shared"
    issuer = TokenIssuer(valid={"t0k3n"})
    site = data_site(issuer, [])
    with serve(site):
        ids = catalogue(root, site.url)
        site.routes.update(data_site(issuer, ids).routes)
        with MatchupCatalogue.open(root) as cat:
            products = {p.id: p for p in cat.products(ids)}
            # one product already in the shared drive's layout, another given as file://
            placed = product_destination(
                cat, products[ids[0]], products[ids[0]].assets["data"]["href"], shared
            )
            placed.parent.mkdir(parents=True)
            placed.write_bytes(content(ids[0]))
            elsewhere = tmp_path / "archive" / "scene.zip"
            elsewhere.parent.mkdir()
            elsewhere.write_bytes(content(ids[1]))

            def edit(assets: dict[str, Any]) -> bool:
                assets["data"]["href"] = elsewhere.as_uri()
                return True

            cat.update_item_assets(ids[1], edit)
            inode = placed.stat().st_ino
            with CredentialStore(environ={"EOMATCH_TOKEN_127_0_0_1": "t0k3n"}) as creds:
                report = download_products(
                    cat, Selection(), products_root=shared, credentials=creds
                )
            assert report.ok, report.failed
            status = {r.job.product_id: (r.status, r.path) for r in report.results}
            assert status[ids[0]] == ("present", placed)
            assert status[ids[1]] == ("present", elsewhere)
            assert {status[p][0] for p in ids[2:]} == {"downloaded"}
            fetched = {s.path for s in site.seen}
            assert f"/{ids[0]}.zip" not in fetched
            assert f"/{ids[1]}.zip" not in fetched
            assert placed.stat().st_ino == inode  # registered where it is, not copied
            item = cat.product_item(ids[0])
            assert item["assets"]["data"]["href"] == str(placed)
            assert cat.product_item(ids[1])["assets"]["data"]["href"] == elsewhere.as_uri()
            assert not (root / "data").exists()
            # remove never deletes on the shared drive: it unregisters and reports
            removed = remove_products(cat, Selection())
            assert removed.deleted_files == 0
            assert placed.exists()
            assert elsewhere.exists()
            # a registered file that disappeared fails with a one-line reason, not silently
            missing = tmp_path / "archive" / "gone.zip"

            def edit_missing(assets: dict[str, Any]) -> bool:
                assets["data"]["href"] = str(missing)
                return True

            cat.update_item_assets(ids[1], edit_missing)
            with CredentialStore(environ={}) as creds:
                report = download_products(cat, Selection(), credentials=creds)
            failed = {r.job.product_id: r.reason for r in report.failed}
    assert failed[ids[1]] == (
        f"its registered file {missing} is missing (eomatch remove, then download)"
    )


def test_cli_products_root_flag_registers_files_in_place(tmp_path: Path, capsys: Any) -> None:
    from eomatch.cli.main import main

    root, shared = tmp_path / "cat", tmp_path / "drive"
    ids = catalogue(root, "http://127.0.0.1:9")  # nothing listens: any fetch would fail
    with MatchupCatalogue.open(root) as cat:
        for p in cat.products(ids):
            dest = product_destination(cat, p, p.assets["data"]["href"], shared)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(content(p.id))
    args = ["download", "--path", str(root), "--products-root", str(shared)]
    assert main(args) == 0
    assert f"0 downloaded, {len(ids)} already present, 0 failed" in capsys.readouterr().out
    with MatchupCatalogue.open(root) as cat:
        for p in cat.products(ids):
            path = cat.local_file(p.id, p.assets["data"]["href"])
            assert path is not None
            assert path.is_relative_to(shared)
    assert not (root / "data").exists()
