"""The Kubernetes manifests (deploy/kubernetes/), rendered by a real kustomize.

`kubectl kustomize` renders each ledger's folder; the test reads the objects it made and holds
them to what docs/deploy.md promises: SQLite, one replica recreated (one daemon per file);
PostgreSQL, three rolled one at a time under a PodDisruptionBudget; the
probes on /healthz and /readyz, the image's sandbox (uid 10001, read-only root, no
capabilities), the SQLite ledger on its own volume, the PostgreSQL one with its password
Secret and a migrate Job; and every command the manifests run is one the CLI takes.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from dropzone.cli import build_parser
from tests.harness import load_scale, required_program

REPO = Path(__file__).resolve().parent.parent
MANIFESTS = REPO / "deploy" / "kubernetes"


def _rendered(folder: str) -> dict[tuple[str, str], dict[str, Any]]:
    kubectl = required_program("kubectl", "kubernetes-client", "render the manifests")
    done = subprocess.run(
        [kubectl, "kustomize", str(MANIFESTS / folder)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60 * load_scale(),
    )
    assert done.returncode == 0, done.stderr
    objects = [each for each in yaml.safe_load_all(done.stdout) if each]
    return {(each["kind"], each["metadata"]["name"]): each for each in objects}


def _daemon(
    objects: dict[tuple[str, str], dict[str, Any]], replicas: int, strategy: dict[str, Any]
) -> dict[str, Any]:
    deployment = objects["Deployment", "dropzone"]
    assert deployment["spec"]["replicas"] == replicas
    assert deployment["spec"]["strategy"] == strategy
    pod: dict[str, Any] = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert {"name": "metrics", "containerPort": 9464} in container["ports"]
    build_parser().parse_args(container["args"])  # a command the CLI takes
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert objects["Service", "dropzone"]["spec"]["selector"] == selector
    return pod


def _mounts(pod: dict[str, Any]) -> dict[str, str]:
    (container,) = pod["containers"]
    return {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}


def test_the_sqlite_manifests_keep_the_ledger_on_its_own_volume() -> None:
    objects = _rendered("sqlite")
    pod = _daemon(objects, 1, {"type": "Recreate"})
    assert _mounts(pod)["/var/lib/dropzone"] == "state"
    (state,) = (v for v in pod["volumes"] if v["name"] == "state")
    claim = objects["PersistentVolumeClaim", state["persistentVolumeClaim"]["claimName"]]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert not any(kind == "Job" for kind, _ in objects)


def test_the_postgresql_manifests_run_replicas_with_the_password_and_a_migrate_job() -> None:
    objects = _rendered("postgresql")
    rolling = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 1}}
    pod = _daemon(objects, 3, rolling)
    budget = objects["PodDisruptionBudget", "dropzone"]["spec"]
    assert budget["maxUnavailable"] == 1
    selector = objects["Deployment", "dropzone"]["spec"]["selector"]["matchLabels"]
    assert budget["selector"]["matchLabels"] == selector
    assert "/var/lib/dropzone" not in _mounts(pod)
    assert not any(kind == "PersistentVolumeClaim" for kind, _ in objects)
    (secrets,) = (v for v in pod["volumes"] if v["name"] == "secrets")
    names = [source["secret"]["name"] for source in secrets["projected"]["sources"]]
    assert names == ["dropzone-credentials", "dropzone-ledger"]
    job = objects["Job", "dropzone-migrate"]["spec"]["template"]["spec"]
    (migrate,) = job["containers"]
    assert migrate["args"] == ["ledger", "migrate"]
    build_parser().parse_args(migrate["args"])
    assert migrate["securityContext"]["readOnlyRootFilesystem"] is True
    assert _mounts(job) == {"/etc/dropzone": "config", "/run/secrets": "ledger-password"}
