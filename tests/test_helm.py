"""deploy/helm/eomatch rendered by Helm's own engine and checked against Kubernetes' schemas.

No ``helm`` binary is installable here (not in Debian 12, no PyPI/npm package ships one for
Linux), so the chart is linted and rendered through helm-python-sdk: Helm v4's Go SDK built as
a C library and called through ctypes, i.e. ``helm lint --strict`` and ``helm template``
without the CLI. Every rendered object is validated with kubernetes-validate (the Kubernetes
OpenAPI schemas it ships, strict: unknown fields are errors), offline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from eomatch.service.gateway import main as gateway_main

helm = pytest.importorskip("helm_python", reason="helm-python-sdk (dev group) not installed")
kubernetes_validate = pytest.importorskip("kubernetes_validate")

CHART = Path(__file__).resolve().parents[1] / "deploy" / "helm" / "eomatch"
KUBE = "1.30.0"
SECRETS = {
    "adminPassword": "admin-pw-for-tests",
    "apiPassword": "api-pw-for-tests",
    "readerPassword": "reader-pw-for-tests",
    "ingestPassword": "ingest-pw-for-tests",
}


def _render(values: dict[str, Any]) -> list[dict[str, Any]]:
    with helm.Chart.load(str(CHART)) as chart:
        out = chart.render(values, name="cat", namespace="eo", is_install=True)
    docs: list[dict[str, Any]] = []
    for text in out.values():
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


def _kinds(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def test_chart_lints_clean() -> None:
    report = helm.lint(str(CHART), {"secrets": SECRETS}, strict=True, kube_version=f"v{KUBE}")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize(
    "values",
    [
        {"secrets": SECRETS},
        {
            "secrets": {"existingSecret": "eomatch-from-vault"},
            "database": {"readHosts": "pgbouncer-ro:6432", "readPooling": "transaction"},
            "ingest": {"enabled": True},
            "ingress": {"enabled": False},
            "backup": {"storage": {"existingClaim": "backups"}},
            "api": {"external": {"autoscaling": {"enabled": False}, "replicas": 3}},
        },
    ],
    ids=["defaults", "replica-pooler-existing-secret"],
)
def test_every_rendered_object_is_valid_kubernetes(values: dict[str, Any]) -> None:
    docs = _render(values)
    assert len(docs) >= 10
    for doc in docs:
        kubernetes_validate.validate(doc, KUBE, strict=True)


def test_apis_scale_and_read_from_the_replica() -> None:
    docs = _kinds(
        _render(
            {
                "secrets": SECRETS,
                "database": {"readHosts": "pgbouncer-ro:6432", "readPooling": "transaction"},
            }
        )
    )
    for mode, role in (("internal", "eomatch_api"), ("external", "eomatch_reader")):
        hpa = docs[("HorizontalPodAutoscaler", f"api-{mode}")]
        assert hpa["spec"]["scaleTargetRef"]["name"] == f"api-{mode}"
        assert hpa["spec"]["minReplicas"] >= 2
        deploy = docs[("Deployment", f"api-{mode}")]
        assert "replicas" not in deploy["spec"]  # the HPA owns it
        (container,) = deploy["spec"]["template"]["spec"]["containers"]
        env = _env(container)
        assert env["EOMATCH_API_MODE"] == mode
        assert env["PGUSER"] == role
        assert env["PGHOST"] == "eomatch-db-rw"  # writes: the primary
        assert env["EOMATCH_DB_READ_HOSTS"] == "pgbouncer-ro:6432"
        assert env["EOMATCH_DB_READ_POOLING"] == "transaction"
        assert env["PGPASSWORD"]["secretKeyRef"]["name"] == "cat-eomatch-secrets"
        assert ("Service", f"api-{mode}") in docs
        assert ("PodDisruptionBudget", f"api-{mode}") in docs


def test_passwords_only_in_the_secret_and_required() -> None:
    docs = _render({"secrets": SECRETS})
    for doc in docs:
        text = yaml.safe_dump(doc)
        if doc["kind"] == "Secret":
            assert all(pw in text for pw in SECRETS.values())
        else:
            assert not any(pw in text for pw in SECRETS.values()), doc["kind"]
    with pytest.raises(helm.HelmError, match="adminPassword"):
        _render({})


def test_jobs_gateway_and_ingress() -> None:
    docs = _kinds(_render({"secrets": SECRETS, "ingest": {"enabled": True}}))
    migrate = docs[("Job", "cat-eomatch-migrate")]
    assert "pre-install" in migrate["metadata"]["annotations"]["helm.sh/hook"]
    assert migrate["spec"]["template"]["spec"]["containers"][0]["command"] == [
        "eomatch",
        "db",
        "migrate",
    ]
    backup = docs[("CronJob", "cat-eomatch-backup")]
    (container,) = backup["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert "eomatch backup create" in container["command"][-1]
    ingest = docs[("CronJob", "cat-eomatch-ingest")]
    (container,) = ingest["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert _env(container)["PGUSER"] == "eomatch_ingest"
    ingress = docs[("Ingress", "cat-eomatch")]
    assert ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] == (
        "gateway"
    )
    gateway = docs[("Deployment", "gateway")]["spec"]["template"]["spec"]
    assert gateway["initContainers"][0]["name"] == "browser"
    for pod in (gateway, docs[("Deployment", "api-external")]["spec"]["template"]["spec"]):
        assert pod["securityContext"]["runAsNonRoot"] is True
        for c in pod["containers"]:
            assert c["securityContext"]["readOnlyRootFilesystem"] is True


def test_gateway_config_is_the_renderers_output(capsys: pytest.CaptureFixture[str]) -> None:
    """files/nginx.conf is the compose gateway's configuration (Services api-internal and
    api-external on 8080), generated, not hand-edited."""
    args = ["--listen", "0.0.0.0:8080", "--internal", "api-internal:8080"]
    gateway_main([*args, "--external", "api-external:8080", "--run-dir", "/tmp"])
    rendered = capsys.readouterr().out
    assert (CHART / "files" / "nginx.conf").read_text() == rendered
    cm = _kinds(_render({"secrets": SECRETS}))[("ConfigMap", "cat-eomatch-gateway")]
    assert cm["data"]["nginx.conf"].strip() == rendered.strip()
