"""The cluster's hardening rules as checks over rendered objects: each returns its violations (an
empty list when the objects keep the rule), so a test can show both that the manifests keep it
and that a broken copy does not."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from tests.k8s.helpers import K8S_DIR

WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "Job")
FLOW_RUN = "warmstart-flow-run"  # the pod label the work pool's template gives flow-run pods
WORKER = "prefect-worker"  # the one pod that holds a Kubernetes API token
IMAGE = "registry.example.com/warmstart:1.0"

Objects = list[dict[str, Any]]


def kustomize_objects() -> Objects:
    """What `kubectl apply -k infra/k8s` sends, rendered with PyYAML: the resources in
    kustomization order, with its namespace and labels applied to every object."""
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    labels: dict[str, str] = {}
    for entry in kustomization.get("labels", []):
        labels.update(entry["pairs"])
    out = []
    for name in kustomization["resources"]:
        for doc in yaml.safe_load_all(Path(K8S_DIR / name).read_text()):
            if doc is None:
                continue
            meta = doc.setdefault("metadata", {})
            if doc["kind"] != "Namespace":
                meta["namespace"] = kustomization["namespace"]
            meta["labels"] = {**meta.get("labels", {}), **labels}
            out.append(doc)
    return out


def flow_run_job(values: dict[str, Any] | None = None) -> dict[str, Any]:
    """The Job the worker submits for a flow run, from the pool template an operator creates."""
    from tests.k8s.helpers import render_job
    from warmstart.infra.cluster import pool_template

    return render_job(values or {}, template=pool_template(IMAGE))


def cluster() -> Objects:
    """Everything that runs: the kustomized manifests and a flow run's Job."""
    return kustomize_objects() + [flow_run_job()]


def broken(objects: Objects) -> Objects:
    return copy.deepcopy(objects)


def pods(objects: Objects) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(name, pod template metadata, pod spec) of every workload."""
    for doc in objects:
        if doc["kind"] in WORKLOADS:
            template = doc["spec"]["template"]
            name = doc["metadata"].get("name") or template["metadata"]["labels"].get(
                "app.kubernetes.io/name", "?"
            )
            yield name, template.get("metadata", {}), template["spec"]


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return list(spec.get("initContainers", [])) + list(spec["containers"])


def find(objects: Objects, kind: str, name: str) -> dict[str, Any]:
    (doc,) = [d for d in objects if d["kind"] == kind and d["metadata"].get("name") == name]
    return doc


def pod_spec(objects: Objects, name: str) -> dict[str, Any]:
    (spec,) = [s for n, _, s in pods(objects) if n == name]
    return spec


# ------------------------------------------------------------------ pods and containers


def non_root(objects: Objects) -> list[str]:
    bad = []
    for name, _, spec in pods(objects):
        pod = spec.get("securityContext", {})
        if pod.get("runAsNonRoot") is not True:
            bad.append(f"{name}: runAsNonRoot is not true")
        for key in ("runAsUser", "runAsGroup"):
            if not isinstance(pod.get(key), int) or pod[key] <= 0:
                bad.append(f"{name}: {key} is not a non-zero uid/gid")
        for c in containers(spec):
            own = c.get("securityContext", {})
            if own.get("runAsUser") == 0 or own.get("runAsNonRoot") is False:
                bad.append(f"{name}/{c['name']}: runs as root")
    return bad


def locked_down_containers(objects: Objects) -> list[str]:
    """Read-only root, no privilege escalation, every capability dropped, none added."""
    bad = []
    for name, _, spec in pods(objects):
        for c in containers(spec):
            sc, where = c.get("securityContext", {}), f"{name}/{c['name']}"
            if sc.get("readOnlyRootFilesystem") is not True:
                bad.append(f"{where}: root file system is writable")
            if sc.get("allowPrivilegeEscalation") is not False:
                bad.append(f"{where}: allowPrivilegeEscalation is not false")
            if sc.get("privileged"):
                bad.append(f"{where}: privileged")
            caps = sc.get("capabilities", {})
            if caps.get("drop") != ["ALL"] or caps.get("add"):
                bad.append(f"{where}: capabilities are not all dropped")
    return bad


# Variables naming folders a program writes to; each must be on a writable volume, since no
# container has a writable root file system.
WRITES_TO = (
    "HOME",
    "PREFECT_HOME",
    "PREFECT_UI_STATIC_DIRECTORY",
    "WARMSTART_HOME",
    "PGDATA",
)


def _writable_mounts(spec: dict[str, Any], container: dict[str, Any]) -> list[str]:
    kinds = {v["name"]: v for v in spec.get("volumes", [])}
    return [
        m["mountPath"]
        for m in container.get("volumeMounts", [])
        if not m.get("readOnly")
        and ("emptyDir" in kinds.get(m["name"], {}) or m["name"] not in kinds)  # else: a claim
    ]


def writes_land_on_volumes(objects: Objects, env_of=None) -> list[str]:
    """Every folder a program is told to write to (``WRITES_TO``) is on a writable volume."""
    bad = []
    for name, _, spec in pods(objects):
        for c in containers(spec):
            env = dict((env_of or {}).get(name, {}))  # what the image sets
            for source in c.get("envFrom", []):
                if "configMapRef" in source:
                    env |= find(objects, "ConfigMap", source["configMapRef"]["name"])["data"]
            env |= {e["name"]: e["value"] for e in c.get("env", []) if "value" in e}
            mounts = _writable_mounts(spec, c)
            for var in WRITES_TO:
                path = env.get(var)
                if path and not any(path == m or path.startswith(m + "/") for m in mounts):
                    bad.append(f"{name}/{c['name']}: {var}={path} is on the read-only root")
    return bad


def seccomp(objects: Objects) -> list[str]:
    bad = []
    for name, _, spec in pods(objects):
        profile = spec.get("securityContext", {}).get("seccompProfile", {})
        if profile.get("type") != "RuntimeDefault":
            bad.append(f"{name}: seccomp profile is not RuntimeDefault")
        for c in containers(spec):
            own = c.get("securityContext", {}).get("seccompProfile")
            if own and own.get("type") != "RuntimeDefault":
                bad.append(f"{name}/{c['name']}: seccomp profile overridden")
    return bad


def volumes_writable_by_the_pod(objects: Objects) -> list[str]:
    """A pod with a persistent volume sets fsGroup, so its non-root user can write there."""
    bad = []
    for doc in objects:
        if doc["kind"] not in WORKLOADS:
            continue
        spec = doc["spec"]["template"]["spec"]
        claims = doc["spec"].get("volumeClaimTemplates") or [
            v for v in spec.get("volumes", []) if "persistentVolumeClaim" in v
        ]
        if claims and not isinstance(spec.get("securityContext", {}).get("fsGroup"), int):
            bad.append(f"{doc['metadata']['name']}: a volume claim but no fsGroup")
    return bad


def service_account_tokens(objects: Objects) -> list[str]:
    """No pod gets a Kubernetes API token but the worker, which gets its own account's."""
    bad = []
    for name, _, spec in pods(objects):
        mounts = spec.get("automountServiceAccountToken")
        if name == WORKER:
            if mounts is not True or spec.get("serviceAccountName") != WORKER:
                bad.append(f"{name}: needs its own service account's token")
        elif mounts is not False:
            bad.append(f"{name}: automountServiceAccountToken is not false")
        elif spec.get("serviceAccountName") not in (None, "default"):
            bad.append(f"{name}: runs as service account {spec['serviceAccountName']}")
    return bad


_UNITS = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
_UNITS |= {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def quantity(value: Any) -> float:
    m = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", str(value))
    if not m or (m.group(2) and m.group(2) not in _UNITS):
        raise ValueError(f"not a quantity: {value!r}")
    return float(m.group(1)) * _UNITS.get(m.group(2), 1)


def resources(objects: Objects) -> list[str]:
    """CPU and memory requests and limits on every container, each request within its limit."""
    bad = []
    for name, _, spec in pods(objects):
        for c in containers(spec):
            res, where = c.get("resources", {}), f"{name}/{c['name']}"
            for kind in ("cpu", "memory"):
                req, lim = res.get("requests", {}).get(kind), res.get("limits", {}).get(kind)
                if req is None or lim is None:
                    bad.append(f"{where}: {kind} request or limit missing")
                elif quantity(req) > quantity(lim):
                    bad.append(f"{where}: {kind} request {req} above its limit {lim}")
    return bad


# ------------------------------------------------------------------ network policies


def default_deny(objects: Objects) -> list[str]:
    for doc in objects:
        spec = doc["spec"] if doc["kind"] == "NetworkPolicy" else None
        if (
            spec is not None
            and spec["podSelector"] == {}
            and set(spec.get("policyTypes", [])) == {"Ingress", "Egress"}
            and not spec.get("ingress")
            and not spec.get("egress")
        ):
            return []
    return ["no NetworkPolicy denies all ingress and egress of the namespace"]


# ------------------------------------------------------------------ credentials


# Which containers may hold each Secret ("<pod>/<container>"): admin credentials stay with the
# services that need them; flow runs get their own, scoped S3 identity and MLflow user.
HOLDERS = {
    "warmstart-s3": {"mlflow/create-bucket"},
    "warmstart-s3-mlflow": {"mlflow/mlflow"},
    "warmstart-s3-flows": {f"{FLOW_RUN}/prefect-job"},
    "warmstart-seaweedfs-s3": {"seaweedfs/seaweedfs"},
    "warmstart-seaweedfs-tls": {"seaweedfs/seaweedfs"},
    "warmstart-seaweedfs": {"seaweedfs/seaweedfs"},
    "warmstart-postgres": {
        "postgres/postgres",
        "mlflow/auth-config",
        "mlflow/flows-user",
        "mlflow/mlflow",
        "prefect-server/prefect-server",
    },
    # the admin's name only reaches flows-user (which refuses to make it the flows user)
    "warmstart-mlflow-auth": {"mlflow/mlflow", "mlflow/flows-user"},
    "warmstart-mlflow-flows": {f"{FLOW_RUN}/prefect-job", "mlflow/flows-user"},
    "warmstart-mlflow-server": {"mlflow/mlflow"},
    "warmstart-prefect-auth": {"prefect-server/prefect-server", "prefect-worker/prefect-worker"},
}


def _secrets_of(spec: dict[str, Any], container: dict[str, Any]) -> set[str]:
    names = {s["secretRef"]["name"] for s in container.get("envFrom", []) if "secretRef" in s}
    for item in container.get("env", []):
        ref = item.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            names.add(ref["name"])
    mounted = {m["name"] for m in container.get("volumeMounts", [])}
    for volume in spec.get("volumes", []):
        if volume["name"] in mounted and "secret" in volume:
            names.add(volume["secret"]["secretName"])
    return names


def credential_holders(objects: Objects) -> list[str]:
    bad = []
    for name, meta, spec in pods(objects):
        pod = FLOW_RUN if meta.get("labels", {}).get("app.kubernetes.io/name") == FLOW_RUN else name
        for c in containers(spec):
            holder = f"{pod}/{c['name']}"
            for secret in sorted(_secrets_of(spec, c)):
                if holder not in HOLDERS.get(secret, set()):
                    bad.append(f"{holder} holds {secret}")
    return bad


# ------------------------------------------------------------------ the work pool's template


LOCKED = (
    "image",
    "command",
    "env",
    "labels",
    "annotations",
    "namespace",
    "service_account_name",
    "cluster_config",
)


def template_locks(template: dict[str, Any]) -> list[str]:
    """A run chooses resources, GPUs and placement only: no variable for the image, command,
    environment, labels, annotations, namespace, service account or cluster, none unknown, and
    resources a run may change but not remove."""
    import json

    variables = template["variables"]
    props = variables["properties"]
    bad = [f"variable {n} is offered" for n in LOCKED if n in props]
    if variables.get("additionalProperties") is not False:
        bad.append("unknown variables are not refused (additionalProperties)")
    text = json.dumps(template["job_configuration"])
    bad += [f"{{{{ {n} }}}} in the job configuration" for n in LOCKED if "{{ " + n + " }}" in text]
    for n in ("cpu_request", "cpu_limit", "memory_request", "memory_limit"):
        if props.get(n, {}).get("type") != "string" or not props[n].get("default"):
            bad.append(f"{n} may be left unset")
    return bad
