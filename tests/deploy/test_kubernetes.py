"""The container image and the Kubernetes example, checked offline: the manifests against the
Kubernetes API schemas (kubernetes-validate, strict), and what they promise against the runtime
itself — the ConfigMap's config starts a sidecar (its backends pointed at loopback), and the
probes the Deployment and the image declare are answered by that sidecar."""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import time
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import kubernetes_validate
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from layotto.config import layotto_json
from layotto.sidecar import Sidecar
from tests.e2e.invoke_apps import grpc_app
from tests.support.services import require
from tests.support.sidecar import free_port

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"


def _documents() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(KUBERNETES.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                found.append((path.name, doc))
    return found


def _kind(kind: str) -> dict[str, Any]:
    return next(doc for _, doc in _documents() if doc["kind"] == kind)


def _sidecar_container() -> dict[str, Any]:
    spec = _kind("Deployment")["spec"]["template"]["spec"]
    return next(c for c in spec["initContainers"] if c["name"] == "layotto")


@pytest.mark.parametrize(
    "doc", [d for _, d in _documents() if d.get("apiVersion") != "kustomize.config.k8s.io/v1beta1"], ids=str
)
def test_every_manifest_is_valid_kubernetes_strictly(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, "1.31.0", strict=True)


def test_the_kustomization_lists_every_manifest() -> None:
    listed = set(_kind("Kustomization")["resources"])
    assert listed == {p.name for p in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}


def test_the_sidecar_runs_unprivileged_on_a_read_only_root() -> None:
    container = _sidecar_container()
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    pod = _kind("Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    # What the runtime writes (the home folder, temp files) is a volume, not the image.
    mounted = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/var/lib/layotto", "/tmp"} <= mounted
    assert container["restartPolicy"] == "Always"  # a native sidecar: up before the app, down after
    assert pod["terminationGracePeriodSeconds"] > 10  # more than the sidecar's own drain


def test_the_image_is_multi_stage_non_root_with_a_health_check() -> None:
    lines = [line.strip() for line in DOCKERFILE.read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert sum(line.startswith("FROM ") for line in lines) == 2
    user = next(line for line in lines if line.startswith("USER "))
    assert user.split()[1].split(":")[0] not in ("0", "root")
    for line in lines:
        if line.startswith("COPY ") and "--from=" not in line:
            for source in shlex.split(line)[1:-1]:
                assert (ROOT / source).exists(), f"{source} in the Dockerfile is not in the repository"
    # The HEALTHCHECK and the liveness probe ask the same path.
    health = DOCKERFILE.read_text()[DOCKERFILE.read_text().index("HEALTHCHECK") :]
    path = re.search(r"http://127\.0\.0\.1:34999(/actuator/[a-z/]+)", health)
    assert path is not None and path.group(1) == _sidecar_container()["livenessProbe"]["httpGet"]["path"]


def _config_on_loopback() -> tuple[dict[str, Any], int, int]:
    """The ConfigMap's config with its backends on loopback and its listeners on free ports."""
    text = _kind("ConfigMap")["data"]["config.json"].replace("redis:6379", "127.0.0.1:6379")
    doc = json.loads(text)
    grpc_port, actuator_port = free_port(), free_port()
    listeners = doc["servers"][0]["listeners"]
    assert {listener["address"] for listener in listeners} == {"0.0.0.0:34904", "0.0.0.0:34999"}
    for listener in listeners:
        port = grpc_port if listener["address"].endswith(":34904") else actuator_port
        listener["address"] = f"127.0.0.1:{port}"
    return doc, grpc_port, actuator_port


async def test_the_configmap_starts_a_sidecar_that_answers_every_probe_of_the_deployment() -> None:
    require("redis")
    doc, grpc_port, actuator_port = _config_on_loopback()
    cfg = layotto_json.load_document(doc, source="configmap.yaml")
    container = _sidecar_container()
    # The pod's app beside it: readiness waits for the app's subscriptions.
    async with grpc_app("orders") as (_, cfg.app.grpc_callback_port):
        sidecar = Sidecar(cfg)
        await sidecar.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
                reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
                assert reply.status == health_pb2.HealthCheckResponse.SERVING  # the startupProbe's grpc check
            async with aiohttp.ClientSession() as http:
                for probe in ("livenessProbe", "readinessProbe"):
                    path = container[probe]["httpGet"]["path"]
                    deadline = time.monotonic() + 10  # the app's subscriptions are being asked for
                    while True:
                        async with http.get(f"http://127.0.0.1:{actuator_port}{path}") as response:
                            if response.status == 200 or time.monotonic() > deadline:
                                assert response.status == 200, (probe, path, await response.text())
                                break
                        await asyncio.sleep(0.05)
        finally:
            await sidecar.stop()
