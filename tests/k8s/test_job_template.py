"""deploy/k8s-gpu-job-template.json: the Kubernetes work pool's base job template for GPU runs.

Rendered with prefect-kubernetes' own job configuration class, as its worker does before it
submits the Job, and the result checked against the Kubernetes schema.
"""

from __future__ import annotations

import copy

import jsonschema
import kubernetes_validate
import pytest
from prefect.server.schemas.actions import WorkPoolCreate
from prefect.utilities.templating import find_placeholders
from prefect_kubernetes.worker import KubernetesWorker

from tests.k8s.helpers import K8S_VERSION, NAMESPACE, load_template, render_job, resolved_env

GPU = "nvidia.com/gpu"
GPU_TAINT = {"key": GPU, "operator": "Exists", "effect": "NoSchedule"}


def _pod(job: dict) -> dict:
    return job["spec"]["template"]["spec"]


def _referenced(template: dict) -> set[str]:
    import json

    return {p.name for p in find_placeholders(json.dumps(template["job_configuration"]))}


@pytest.fixture(scope="module")
def default_job() -> dict:
    return render_job({})


def test_the_prefect_server_accepts_the_template():
    # the same validation the API runs on `prefect work-pool create --base-job-template`
    pool = WorkPoolCreate(
        name="warmstart-k8s", type="kubernetes", base_job_template=load_template()
    )
    assert pool.base_job_template["variables"]["properties"]["gpu_limit"]["default"] == 1


def test_every_variable_is_used_by_the_job_configuration():
    """A variable the job configuration does not reference is silently ignored by the worker."""
    template = load_template()
    declared = set(template["variables"]["properties"])
    assert declared == _referenced(template)
    assert {"gpu_limit", "node_selector", "tolerations"} <= declared


def test_gpu_variables_sit_where_kubernetes_reads_them():
    manifest = load_template()["job_configuration"]["job_manifest"]
    pod = _pod(manifest)
    assert pod["containers"][0]["resources"]["limits"][GPU] == "{{ gpu_limit }}"
    assert pod["nodeSelector"] == "{{ node_selector }}"
    assert pod["tolerations"] == "{{ tolerations }}"


LOCKED = {
    "image",
    "command",
    "env",
    "labels",
    "annotations",
    "namespace",
    "service_account_name",
    "cluster_config",
}


def test_keeps_every_variable_of_the_installed_prefect_kubernetes_default_but_the_locked_ones():
    """Start from upstream: nothing it offers (cpu_request, ...) is lost but what a run must not
    choose (the image, command, environment, labels, where and as whom the Job runs)."""
    upstream = KubernetesWorker.get_default_base_job_template()
    ours = load_template()
    offered = set(upstream["variables"]["properties"])
    assert LOCKED <= offered  # the names are upstream's: locking them means something
    assert set(ours["variables"]["properties"]) & LOCKED == set()
    assert offered - LOCKED <= set(ours["variables"]["properties"])
    assert set(upstream["job_configuration"]) == set(ours["job_configuration"])
    assert GPU not in str(upstream), "upstream grew a GPU variable: reconsider ours"


def test_variable_schema_accepts_gpu_values_and_rejects_bad_ones():
    schema = load_template()["variables"]
    jsonschema.validate({"gpu_limit": 2, "node_selector": {"pool": "a100"}}, schema)
    jsonschema.validate({"tolerations": [GPU_TAINT]}, schema)
    for bad in ({"gpu_limit": -1}, {"gpu_limit": "two"}, {"node_selector": {"a": 1}}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)


def test_defaults_render_one_gpu_on_a_gpu_tolerating_pod(default_job):
    pod = _pod(default_job)
    (container,) = pod["containers"]
    assert container["resources"]["limits"][GPU] == 1
    assert pod["tolerations"] == [GPU_TAINT]
    assert pod["nodeSelector"] == {}
    assert container["image"] == "warmstart:latest"  # the placeholder pool-template replaces
    assert default_job["metadata"]["namespace"] == NAMESPACE
    assert default_job["metadata"]["generateName"] == "gpu-smoke-"
    assert container["args"] == ["prefect", "flow-run", "execute"]


def test_defaults_render_a_schema_valid_job(default_job):
    assert kubernetes_validate.validate(default_job, K8S_VERSION, strict=True) == K8S_VERSION


def test_gpu_deployment_variables_reach_the_manifest():
    selector = {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    tolerations = [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}]
    job = render_job(
        {
            "gpu_limit": 2,
            "node_selector": selector,
            "tolerations": tolerations,
            "memory_limit": "48Gi",
            "cpu_limit": "12",
        }
    )
    pod = _pod(job)
    (container,) = pod["containers"]
    assert container["resources"]["limits"] == {GPU: 2, "memory": "48Gi", "cpu": "12"}
    assert container["resources"]["requests"] == {"cpu": "2", "memory": "8Gi"}
    assert pod["nodeSelector"] == selector
    assert pod["tolerations"] == tolerations
    assert kubernetes_validate.validate(job, K8S_VERSION, strict=True) == K8S_VERSION


def test_cpu_only_run_with_gpu_limit_zero():
    job = render_job({"gpu_limit": 0, "tolerations": []})
    assert _pod(job)["containers"][0]["resources"]["limits"][GPU] == 0
    assert _pod(job)["tolerations"] == []
    assert kubernetes_validate.validate(job, K8S_VERSION, strict=True) == K8S_VERSION


def test_unreferenced_variable_would_be_ignored():
    """Why the reference check matters: a declared-only variable changes nothing."""
    template = copy.deepcopy(load_template())
    template["variables"]["properties"]["gpu_count"] = {"type": "integer", "default": 4}
    job = render_job({"gpu_count": 4}, template=template)
    assert _pod(job)["containers"][0]["resources"]["limits"][GPU] == 1
    assert _referenced(template) != set(template["variables"]["properties"])


def test_flow_run_pods_get_the_service_settings_and_s3_checksum_variables(default_job):
    (container,) = _pod(default_job)["containers"]
    env = resolved_env(container)
    assert env["AWS_REQUEST_CHECKSUM_CALCULATION"] == "when_required"
    assert env["AWS_RESPONSE_CHECKSUM_VALIDATION"] == "when_required"
    # the flow runs' own S3 identity and MLflow user, not the admins' (least privilege)
    assert env["AWS_ACCESS_KEY_ID"] == "secret:warmstart-s3-flows/AWS_ACCESS_KEY_ID"
    assert env["AWS_SECRET_ACCESS_KEY"] == "secret:warmstart-s3-flows/AWS_SECRET_ACCESS_KEY"
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert (
        env["MLFLOW_TRACKING_USERNAME"] == "secret:warmstart-mlflow-flows/MLFLOW_TRACKING_USERNAME"
    )
    assert (
        env["MLFLOW_TRACKING_PASSWORD"] == "secret:warmstart-mlflow-flows/MLFLOW_TRACKING_PASSWORD"
    )
    assert env["WARMSTART_HOME"] == "/home/warmstart/.warmstart"
    assert env["AWS_ENDPOINT_URL"] == "http://seaweedfs:8333"
    # the worker adds the API address and the flow run id
    assert env["PREFECT_API_URL"] == "http://prefect-server:4200/api"
    assert "PREFECT__FLOW_RUN_ID" in env
