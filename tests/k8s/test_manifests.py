"""infra/k8s: schema-valid manifests that fit together (names, ports, Secrets, checksum settings)."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import tomllib
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from tests.k8s.helpers import (
    K8S_DIR,
    K8S_VERSION,
    NAMESPACE,
    ROOT,
    SECRETS_TEMPLATE,
    all_objects,
    containers,
    documents,
    manifest_files,
    objects_of,
    pod_specs,
    resolved_env,
)
from warmstart.infra import servers

CHECKSUM_VARS = ("AWS_REQUEST_CHECKSUM_CALCULATION", "AWS_RESPONSE_CHECKSUM_VALIDATION")
PLACEHOLDER = "CHANGE_ME"


def _obj_id(item) -> str:
    path, doc = item
    return f"{path.name}:{doc['kind']}/{doc['metadata']['name']}"


@pytest.mark.parametrize("item", all_objects(), ids=_obj_id)
def test_manifest_validates_against_kubernetes_schema(item):
    _, doc = item
    # strict: unknown fields (typos, fields at the wrong level) are errors too
    assert kubernetes_validate.validate(doc, K8S_VERSION, strict=True) == K8S_VERSION


def test_strict_validation_catches_a_misplaced_field():
    """The schema check above has teeth: a Job field on the pod spec is rejected."""
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "x"},
        "spec": {"template": {"spec": {"completions": 1, "containers": [{"name": "c"}]}}},
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, K8S_VERSION, strict=True)


def test_the_expected_services_are_all_there():
    kinds = {(d["kind"], d["metadata"]["name"]) for _, d in all_objects()}
    for workload in (
        ("StatefulSet", "postgres"),
        ("StatefulSet", "seaweedfs"),
        ("Deployment", "mlflow"),
        ("Deployment", "prefect-server"),
        ("Deployment", "prefect-worker"),
    ):
        assert workload in kinds
    for name in ("postgres", "seaweedfs", "mlflow", "prefect-server"):
        assert ("Service", name) in kinds


def test_kustomization_lists_every_manifest_but_the_secret_template():
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    assert kustomization["namespace"] == NAMESPACE
    listed = kustomization["resources"]
    assert len(listed) == len(set(listed))
    for name in listed:
        assert (K8S_DIR / name).is_file(), f"kustomization.yaml lists missing {name}"
    expected = {p.name for p in manifest_files()} - {SECRETS_TEMPLATE.name}
    assert set(listed) == expected
    # `kubectl apply -k` must never push placeholder credentials over real ones
    assert SECRETS_TEMPLATE.name not in listed


def test_every_object_lives_in_the_warmstart_namespace():
    for path, doc in all_objects():
        if doc["kind"] == "Namespace":
            assert doc["metadata"]["name"] == NAMESPACE
            continue
        assert doc["metadata"].get("namespace") == NAMESPACE, f"{path.name}: {doc['kind']}"


def test_services_select_their_workloads_and_name_real_ports():
    pods = {}
    for _, doc in all_objects():
        if doc["kind"] in ("Deployment", "StatefulSet"):
            pods[doc["metadata"]["name"]] = doc["spec"]["template"]
    for name, svc in objects_of("Service").items():
        selector = svc["spec"]["selector"]
        matching = [t for t in pods.values() if selector.items() <= t["metadata"]["labels"].items()]
        assert len(matching) == 1, f"Service {name} selects {len(matching)} workloads"
        port_names = {
            p["name"] for c in matching[0]["spec"]["containers"] for p in c.get("ports", [])
        }
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in port_names, f"Service {name}: {port['targetPort']}"


# ------------------------------------------------------------------ secrets


def _secret_templates() -> dict[str, dict]:
    docs = documents(SECRETS_TEMPLATE)
    assert docs and all(d["kind"] == "Secret" for d in docs)
    return {d["metadata"]["name"]: d for d in docs}


def test_secrets_exist_only_as_the_template():
    for path, doc in all_objects():
        if doc["kind"] == "Secret":
            assert path == SECRETS_TEMPLATE, f"{path.name} holds a Secret"


AWS_KEY_ID = re.compile(r"\b(AKIA|ASIA)[A-Z0-9]{16}\b")
PLACEHOLDER_TOKEN = re.compile(PLACEHOLDER + r"[A-Z0-9_]*")
TOKEN_LIKE = re.compile(r"[A-Za-z0-9/+=]{16,}")


SECRET_NAMES = [
    "warmstart-s3",
    "warmstart-s3-mlflow",
    "warmstart-s3-flows",
    "warmstart-seaweedfs-s3",
    "warmstart-seaweedfs-tls",
    "warmstart-postgres",
    "warmstart-mlflow-auth",
    "warmstart-mlflow-flows",
    "warmstart-mlflow-server",
    "warmstart-prefect-auth",
    "warmstart-seaweedfs",
]
SENSITIVE_KEY = re.compile(r"PASSWORD|SECRET|ACCESS_KEY|TOKEN|AUTH_STRING|_KEY$|\.(json|crt|key)$")


def test_secret_template_has_exactly_the_expected_secrets():
    assert sorted(_secret_templates()) == sorted(SECRET_NAMES)


@pytest.mark.parametrize("name", SECRET_NAMES)
def test_secret_template_carries_placeholders_not_keys(name):
    secret = _secret_templates()[name]
    assert "data" not in secret, "base64 `data` hides what is in it: use stringData placeholders"
    for key, value in secret["stringData"].items():
        assert not AWS_KEY_ID.search(value), f"{name}/{key} looks like a real AWS key id"
        if SENSITIVE_KEY.search(key) or "@" in value:
            assert PLACEHOLDER in value, f"{name}/{key} must be a {PLACEHOLDER} placeholder"
        # with the placeholders taken out, nothing key-like may remain (in a URL: its password)
        secret_part = (urlsplit(value).password or "") if "://" in value else value
        rest = PLACEHOLDER_TOKEN.sub("", secret_part)
        assert not TOKEN_LIKE.search(rest), f"{name}/{key}: {rest!r} looks like a credential"


def test_database_urls_reuse_the_postgres_credentials():
    db = _secret_templates()["warmstart-postgres"]["stringData"]
    prefect = urlsplit(db["PREFECT_API_DATABASE_CONNECTION_URL"])
    mlflow = urlsplit(db["MLFLOW_BACKEND_STORE_URI"])
    mlflow_auth = urlsplit(db["MLFLOW_AUTH_DATABASE_URI"])
    assert prefect.scheme == "postgresql+asyncpg"  # Prefect's async driver
    assert mlflow.scheme == mlflow_auth.scheme == "postgresql"
    for url, database in (
        (prefect, "/prefect"),
        (mlflow, "/mlflow"),
        (mlflow_auth, "/mlflow_auth"),
    ):
        assert (url.username, url.password) == (db["POSTGRES_USER"], db["POSTGRES_PASSWORD"])
        assert (url.hostname, url.port, url.path) == ("postgres", 5432, database)
    init = "\n".join(objects_of("ConfigMap")["postgres-init"]["data"].values())
    assert "CREATE DATABASE mlflow;" in init and "CREATE DATABASE mlflow_auth;" in init


# prefect-kubernetes worker settings whose values are the name and key of a Secret
SECRET_REFERENCES = (
    "PREFECT_INTEGRATIONS_KUBERNETES_WORKER_API_AUTH_STRING_SECRET_NAME",
    "PREFECT_INTEGRATIONS_KUBERNETES_WORKER_API_AUTH_STRING_SECRET_KEY",
)


def test_credentials_in_workloads_come_from_secrets():
    secrets = _secret_templates()
    sensitive = re.compile(
        r"PASSWORD|SECRET|ACCESS_KEY|TOKEN|CONNECTION_URL|STORE_URI|DATABASE_URI|AUTH_STRING|_KEY$"
    )
    for workload, spec in pod_specs():
        for c in containers(spec):
            for item in c.get("env", []):
                if item["name"] in SECRET_REFERENCES:  # names a Secret and key, holds none
                    assert item["value"] in secrets or any(
                        item["value"] in s["stringData"] for s in secrets.values()
                    ), item
                elif sensitive.search(item["name"]):
                    ref = item.get("valueFrom", {}).get("secretKeyRef")
                    assert ref, f"{workload}/{c['name']}: {item['name']} is a literal"
                    assert ref["key"] in secrets[ref["name"]]["stringData"]
            for source in c.get("envFrom", []):
                if "secretRef" in source:
                    assert source["secretRef"]["name"] in secrets


def test_configmap_references_resolve():
    configmaps = objects_of("ConfigMap")
    for workload, spec in pod_specs():
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                assert volume["configMap"]["name"] in configmaps, workload
        for c in containers(spec):
            for source in c.get("envFrom", []):
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in configmaps, workload


# ------------------------------------------------------------------ S3 clients


def _s3_clients() -> dict[tuple[str, str], dict[str, str]]:
    """Containers that talk to S3 as clients (they are given an S3 endpoint), with their env."""
    out = {}
    for workload, spec in pod_specs():
        for c in containers(spec):
            env = resolved_env(c)
            if "AWS_ENDPOINT_URL" in env or "MLFLOW_S3_ENDPOINT_URL" in env:
                out[(workload, c["name"])] = env
    return out


# which S3 identity each client signs with: the admin only where a bucket is created
S3_IDENTITY_OF = {
    ("mlflow", "mlflow"): "warmstart-s3-mlflow",
    ("mlflow", "create-bucket"): "warmstart-s3",
}


def test_every_s3_client_gets_the_checksum_variables_and_its_own_identity():
    clients = _s3_clients()
    # not vacuous: the MLflow server and its bucket-creating init container are S3 clients
    assert set(clients) == set(S3_IDENTITY_OF)
    for (workload, name), env in clients.items():
        for var in CHECKSUM_VARS:
            assert env.get(var) == "when_required", f"{workload}/{name}: {var}"
        secret = S3_IDENTITY_OF[(workload, name)]
        assert env["AWS_ACCESS_KEY_ID"] == f"secret:{secret}/AWS_ACCESS_KEY_ID"
        assert env["AWS_SECRET_ACCESS_KEY"] == f"secret:{secret}/AWS_SECRET_ACCESS_KEY"


def test_s3_endpoints_point_at_the_seaweedfs_service():
    svc = objects_of("Service")["seaweedfs"]
    s3_port = {p["name"]: p["port"] for p in svc["spec"]["ports"]}["s3"]
    for (workload, name), env in _s3_clients().items():
        for var in ("AWS_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL"):
            if var in env:
                url = urlsplit(env[var])
                assert (url.hostname, url.port) == ("seaweedfs", s3_port), f"{workload}/{name}"


def test_seaweedfs_takes_its_identities_from_the_s3_json_secret():
    (spec,) = [s for w, s in pod_specs() if w == "seaweedfs"]
    (weed,) = spec["containers"]
    env = resolved_env(weed)
    # no admin key pair in its environment: s3.json (three scoped identities) is the whole list
    assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} & set(env)
    args = weed["args"]
    assert args[args.index("server") + 1 :] and "-s3" in args
    config = [a.split("=", 1)[1] for a in args if a.startswith("-s3.config=")]
    assert len(config) == 1
    folder, file = config[0].rsplit("/", 1)
    mounts = {m["mountPath"]: m["name"] for m in weed["volumeMounts"]}
    (volume,) = [v for v in spec["volumes"] if v["name"] == mounts[folder]]
    assert volume["secret"]["secretName"] == "warmstart-seaweedfs-s3"
    assert file in _secret_templates()["warmstart-seaweedfs-s3"]["stringData"]
    assert "-master.telemetry=false" in args


def test_seaweedfs_has_no_side_door():
    """Master and filer HTTP off, volume access signed with keys from a Secret."""
    (spec,) = [s for w, s in pod_specs() if w == "seaweedfs"]
    (weed,) = spec["containers"]
    assert "-disableHttp" in weed["args"]
    env = resolved_env(weed)
    for key in (
        "WEED_JWT_SIGNING_KEY",
        "WEED_JWT_SIGNING_READ_KEY",
        "WEED_JWT_FILER_SIGNING_KEY",
        "WEED_JWT_FILER_SIGNING_READ_KEY",
    ):
        assert env[key] == f"secret:warmstart-seaweedfs/{key}"
    # the Service publishes S3 only
    assert [p["name"] for p in objects_of("Service")["seaweedfs"]["spec"]["ports"]] == ["s3"]


# ------------------------------------------------------------------ MLflow and Prefect


def _container(workload: str, name: str) -> dict:
    (spec,) = [s for w, s in pod_specs() if w == workload]
    (c,) = [c for c in containers(spec) if c["name"] == name]
    return c


def _flags(args: list[str]) -> dict[str, str]:
    return dict(a.split("=", 1) for a in args if a.startswith("--") and "=" in a)


def test_mlflow_server_uses_postgres_and_proxies_artifacts_to_the_bucket():
    c = _container("mlflow", "mlflow")
    flags = _flags(c["args"])
    env = resolved_env(c)
    client = objects_of("ConfigMap")["warmstart-client-env"]["data"]
    assert c["args"][0] == "server"
    # --backend-store-uri is expanded by Kubernetes from the Secret-backed variable
    assert flags["--backend-store-uri"] == "$(MLFLOW_BACKEND_STORE_URI)"
    assert env["MLFLOW_BACKEND_STORE_URI"] == "secret:warmstart-postgres/MLFLOW_BACKEND_STORE_URI"
    assert flags["--artifacts-destination"] == f"s3://{client['WARMSTART_BUCKET']}/mlflow"
    assert "--default-artifact-root" not in flags
    assert env["MLFLOW_DISABLE_TELEMETRY"] == "true"


def test_mlflow_allowed_hosts_cover_how_clients_reach_it():
    flags = _flags(_container("mlflow", "mlflow")["args"])
    allowed = set(flags["--allowed-hosts"].split(","))
    tracking = urlsplit(
        objects_of("ConfigMap")["warmstart-client-env"]["data"]["MLFLOW_TRACKING_URI"]
    )
    assert tracking.netloc in allowed  # in-cluster clients (flow-run pods)
    port = {p["name"]: p["port"] for p in objects_of("Service")["mlflow"]["spec"]["ports"]}["http"]
    assert tracking.port == port
    assert f"localhost:{port}" in allowed  # kubectl port-forward
    assert "*" not in allowed


def test_prefect_server_runs_on_postgres_with_analytics_off():
    c = _container("prefect-server", "prefect-server")
    env = resolved_env(c)
    assert c["args"][:3] == ["prefect", "server", "start"]
    assert (
        env["PREFECT_API_DATABASE_CONNECTION_URL"]
        == "secret:warmstart-postgres/PREFECT_API_DATABASE_CONNECTION_URL"
    )
    assert env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"


def test_worker_serves_the_kubernetes_pool_against_the_in_cluster_api():
    c = _container("prefect-worker", "prefect-worker")
    args = c["args"]
    assert args[:3] == ["prefect", "worker", "start"]
    assert args[args.index("--pool") + 1] == "warmstart-k8s"
    assert args[args.index("--type") + 1] == "kubernetes"
    api = urlsplit(resolved_env(c)["PREFECT_API_URL"])
    ports = {p["name"]: p["port"] for p in objects_of("Service")["prefect-server"]["spec"]["ports"]}
    assert (api.hostname, api.port, api.path) == ("prefect-server", ports["http"], "/api")
    # the Role only covers this namespace, so the observer must not watch cluster-wide
    env = resolved_env(c)
    assert env["PREFECT_INTEGRATIONS_KUBERNETES_OBSERVER_NAMESPACES"] == NAMESPACE
    assert env["PREFECT_INTEGRATIONS_KUBERNETES_CLUSTER_UID"]


def _granted(rules: list[dict], group: str, resource: str) -> set[str]:
    verbs: set[str] = set()
    for rule in rules:
        if group in rule["apiGroups"] and resource in rule["resources"]:
            verbs |= set(rule["verbs"])
    return verbs


def test_worker_rbac_lets_it_run_jobs_and_read_pods_and_logs_and_nothing_else():
    (spec,) = [s for w, s in pod_specs() if w == "prefect-worker"]
    account = spec["serviceAccountName"]
    assert account in objects_of("ServiceAccount")
    bindings = [
        b
        for b in objects_of("RoleBinding").values()
        if {"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE} in b["subjects"]
    ]
    assert len(bindings) == 1
    role = objects_of("Role")[bindings[0]["roleRef"]["name"]]
    assert bindings[0]["roleRef"]["kind"] == "Role"
    rules = role["rules"]
    assert {"create", "get", "list", "watch", "delete"} <= _granted(rules, "batch", "jobs")
    for resource in ("pods", "pods/log"):
        assert {"get", "list", "watch"} <= _granted(rules, "", resource)
    # least privilege: nothing cluster-wide, no Secrets, only jobs, pods, pods/log and events
    assert not objects_of("ClusterRole") and not objects_of("ClusterRoleBinding")
    assert not _granted(rules, "", "secrets")
    resources = {(g, r) for rule in rules for g in rule["apiGroups"] for r in rule["resources"]}
    assert resources == {("batch", "jobs"), ("", "pods"), ("", "pods/log"), ("", "events")}
    assert _granted(rules, "", "pods/log") == {"get", "list", "watch"}
    assert not {"*", "escalate", "bind", "impersonate"} & {
        v for rule in rules for v in rule["verbs"]
    }


# ------------------------------------------------------------------ the warmstart image


def test_dockerfile_copies_every_python_package_the_project_installs():
    """Every folder that setuptools installs a package from (package-dir) is copied."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    package_dir = setuptools.get("package-dir", {})

    def folder(package: str) -> str:
        # the longest mapped prefix decides where a (sub-)package lives
        prefix = max(
            (p for p in package_dir if package == p or package.startswith(p + ".")), key=len
        )
        return package_dir[prefix].split("/")[0]

    folders = {folder(p) for p in setuptools["packages"]}
    copied = set(re.findall(r"^COPY (\S+)/ \1/$", (K8S_DIR / "Dockerfile").read_text(), re.M))
    assert {"warmstart", "models", "infra"} <= folders
    assert folders <= copied, f"infra/k8s/Dockerfile does not copy {folders - copied}"
    for name in copied:
        assert (ROOT / name).is_dir()


# ------------------------------------------------------------------ kustomize


def test_kustomize_build_yields_valid_labelled_objects():
    """What `kubectl apply -k infra/k8s` would send (kubectl's built-in kustomize, offline)."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed; the per-file schema checks above still ran")
    built = subprocess.run(
        [kubectl, "kustomize", str(K8S_DIR)], capture_output=True, text=True, timeout=60
    )
    assert built.returncode == 0, built.stderr
    objects = [d for d in yaml.safe_load_all(built.stdout) if d]
    listed = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())["resources"]
    assert len(objects) == sum(len(documents(K8S_DIR / name)) for name in listed)
    assert not [d for d in objects if d["kind"] == "Secret"]
    for doc in objects:
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "warmstart"
        assert kubernetes_validate.validate(doc, K8S_VERSION, strict=True) == K8S_VERSION


# ------------------------------------------------------------------ every service asks for credentials


def _volume_mounts(container: dict) -> dict[str, str]:
    return {m["name"]: m["mountPath"] for m in container.get("volumeMounts", [])}


def test_mlflow_runs_its_basic_auth_app_with_the_admin_from_secrets():
    c = _container("mlflow", "mlflow")
    init = _container("mlflow", "auth-config")
    env, init_env = resolved_env(c), resolved_env(init)
    assert "--app-name=basic-auth" in c["args"]
    assert (
        env["MLFLOW_AUTH_ADMIN_USERNAME"] == "secret:warmstart-mlflow-auth/MLFLOW_TRACKING_USERNAME"
    )
    assert (
        env["MLFLOW_AUTH_ADMIN_PASSWORD"] == "secret:warmstart-mlflow-auth/MLFLOW_TRACKING_PASSWORD"
    )
    assert (
        env["MLFLOW_FLASK_SERVER_SECRET_KEY"]
        == "secret:warmstart-mlflow-server/MLFLOW_FLASK_SERVER_SECRET_KEY"
    )
    assert (
        init_env["MLFLOW_AUTH_DATABASE_URI"] == "secret:warmstart-postgres/MLFLOW_AUTH_DATABASE_URI"
    )
    # the init container writes the file the server reads, on a volume both mount
    path = env["MLFLOW_AUTH_CONFIG_PATH"]
    assert init_env["MLFLOW_AUTH_CONFIG_PATH"] == path
    folder = path.rsplit("/", 1)[0]
    assert _volume_mounts(init)["auth-config"] == folder == _volume_mounts(c)["auth-config"]
    (spec,) = [s for w, s in pod_specs() if w == "mlflow"]
    (volume,) = [v for v in spec["volumes"] if v["name"] == "auth-config"]
    assert volume["emptyDir"]["medium"] == "Memory"  # the Postgres password never hits a disk
    assert [i["name"] for i in spec["initContainers"]][0] == "auth-config"
    # the same credential cache as the local stack's (infra.servers.AUTH_CACHE_TTL_S)
    assert f'"auth_cache_ttl_seconds": "{servers.AUTH_CACHE_TTL_S}"' in init["args"][0]


def test_prefect_server_and_worker_share_the_auth_string_secret():
    server = resolved_env(_container("prefect-server", "prefect-server"))
    worker = resolved_env(_container("prefect-worker", "prefect-worker"))
    ref = "secret:warmstart-prefect-auth/PREFECT_API_AUTH_STRING"
    assert server["PREFECT_SERVER_API_AUTH_STRING"] == ref
    assert worker["PREFECT_API_AUTH_STRING"] == ref


def test_flow_run_jobs_reference_the_auth_string_instead_of_copying_it():
    """The worker's prefect-kubernetes settings turn the auth string into a secretKeyRef."""
    from prefect_kubernetes.settings import KubernetesSettings
    from prefect_kubernetes.worker import KubernetesWorker

    from tests.k8s.helpers import render_job_configuration

    worker = resolved_env(_container("prefect-worker", "prefect-worker"))
    names = {k: v for k, v in worker.items() if k.startswith("PREFECT_INTEGRATIONS_KUBERNETES")}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in names.items():
            mp.setenv(key, value)
        settings = KubernetesSettings().worker
    name, key = settings.api_auth_string_secret_name, settings.api_auth_string_secret_key
    assert key in _secret_templates()[name]["stringData"]
    literal = "warmstart:literal-auth-string-0123456789"
    config = render_job_configuration({}, auth_string=literal)
    assert literal in str(config.job_manifest)  # what the worker would submit without them
    asyncio.run(
        KubernetesWorker._replace_env_variable_with_secret(
            None,  # does not use the worker instance
            env_variable_name="PREFECT_API_AUTH_STRING",
            configuration=config,
            secret_name=name,
            secret_key=key,
        )
    )
    job = config.job_manifest
    assert literal not in str(job)
    (entry,) = [
        e
        for e in job["spec"]["template"]["spec"]["containers"][0]["env"]
        if e["name"] == "PREFECT_API_AUTH_STRING"
    ]
    assert entry["valueFrom"]["secretKeyRef"] == {"name": name, "key": key}
    assert kubernetes_validate.validate(job, K8S_VERSION, strict=True) == K8S_VERSION
