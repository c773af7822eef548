"""Reading infra/k8s and the GPU work-pool template, and rendering the template the way the
prefect-kubernetes worker does, all offline."""

from __future__ import annotations

import asyncio
import functools
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S_DIR = ROOT / "infra" / "k8s"
TEMPLATE_PATH = ROOT / "deploy" / "k8s-gpu-job-template.json"
SECRETS_TEMPLATE = K8S_DIR / "secrets.template.yaml"
# The Kubernetes release the manifests are checked against (kubernetes-validate ships the schemas).
K8S_VERSION = "1.33"
NAMESPACE = "warmstart"
# An API address for rendering only: nothing connects to it.
RENDER_API_URL = "http://prefect-server:4200/api"


def manifest_files() -> list[Path]:
    """Every Kubernetes manifest under infra/k8s (kustomization.yaml is kustomize's, not k8s')."""
    return sorted(p for p in K8S_DIR.glob("*.yaml") if p.name != "kustomization.yaml")


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


@functools.cache
def _parsed() -> tuple[tuple[Path, dict[str, Any]], ...]:
    return tuple((p, d) for p in manifest_files() for d in documents(p))


def all_objects() -> list[tuple[Path, dict[str, Any]]]:
    """(file, object) for every object in infra/k8s; parsed once per session (do not mutate)."""
    return list(_parsed())


def objects_of(kind: str) -> dict[str, dict[str, Any]]:
    """Objects of one kind across infra/k8s (Secret templates included), by name."""
    return {d["metadata"]["name"]: d for _, d in all_objects() if d["kind"] == kind}


def pod_specs() -> Iterator[tuple[str, dict[str, Any]]]:
    """(workload name, pod spec) of every workload in infra/k8s."""
    for _, d in all_objects():
        if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            yield d["metadata"]["name"], d["spec"]["template"]["spec"]


def containers(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    return list(pod_spec.get("initContainers", [])) + list(pod_spec["containers"])


def resolved_env(container: dict[str, Any]) -> dict[str, str]:
    """The container's environment as Kubernetes builds it: envFrom first, env on top.

    Values taken from Secrets read ``secret:<name>/<key>`` (the template's placeholders are not
    what runs); ConfigMap values are the real ones from infra/k8s.
    """
    configmaps = objects_of("ConfigMap")
    secrets = objects_of("Secret")
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(configmaps[source["configMapRef"]["name"]]["data"])
        if "secretRef" in source:
            name = source["secretRef"]["name"]
            env.update({k: f"secret:{name}/{k}" for k in secrets[name]["stringData"]})
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        elif "secretKeyRef" in item["valueFrom"]:
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = f"secret:{ref['name']}/{ref['key']}"
        elif "configMapKeyRef" in item["valueFrom"]:
            ref = item["valueFrom"]["configMapKeyRef"]
            env[item["name"]] = configmaps[ref["name"]]["data"][ref["key"]]
    return env


def load_template() -> dict[str, Any]:
    return json.loads(TEMPLATE_PATH.read_text())


IMAGE_PREFECT_HOME = "/home/warmstart/.prefect"  # ENV in infra/k8s/Dockerfile


def render_job_configuration(
    values: dict[str, Any], template: dict[str, Any] | None = None, *, auth_string: str = ""
):
    """The worker's job configuration for a flow run with these job variables.

    Same two steps as the worker: ``from_template_and_values`` (async in Prefect 3) merges the
    deployment's job variables over the pool's template, then ``prepare_for_flow_run`` fills in
    env (the worker's own Prefect settings among them: ``auth_string`` stands for its
    PREFECT_API_AUTH_STRING), command, labels and the Job name.
    """
    from prefect.client.schemas.objects import FlowRun
    from prefect.settings import (
        PREFECT_API_AUTH_STRING,
        PREFECT_API_URL,
        PREFECT_HOME,
        temporary_settings,
    )
    from prefect_kubernetes.worker import KubernetesWorkerJobConfiguration

    template = template if template is not None else load_template()
    updates: dict = {PREFECT_API_URL: RENDER_API_URL}
    if auth_string:
        updates[PREFECT_API_AUTH_STRING] = auth_string

    async def _render() -> KubernetesWorkerJobConfiguration:
        config = await KubernetesWorkerJobConfiguration.from_template_and_values(template, values)
        flow_run = FlowRun(id=uuid.uuid4(), name="gpu-smoke", flow_id=uuid.uuid4())
        config.prepare_for_flow_run(flow_run)
        return config

    # The worker runs the warmstart image, whose PREFECT_HOME it passes on to the flow run's Job
    # (infra/k8s/Dockerfile); this process may have a test stack's (tests/conftest.py sets it).
    updates[PREFECT_HOME] = IMAGE_PREFECT_HOME
    with temporary_settings(updates):
        return asyncio.run(_render())


def render_job(values: dict[str, Any], template: dict[str, Any] | None = None) -> dict[str, Any]:
    """The Job manifest the Kubernetes worker would submit for a flow run with these variables."""
    return render_job_configuration(values, template).job_manifest
