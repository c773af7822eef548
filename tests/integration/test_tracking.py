"""The MLflow layer and promotion against the real local stack (SeaweedFS + MLflow + Prefect).

The unmarked tests at the top need no services (configuration, retries, param hygiene)."""

from __future__ import annotations

import contextvars
import json
import os
import re
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from warmstart import outage, promotion, stages, storage, tracking
from warmstart.contracts import (
    SCRATCH,
    ArmResult,
    ArmScores,
    ArmSpec,
    DatasetRef,
    Evaluation,
    Job,
    RunContext,
    SplitRef,
    StageRecord,
)
from warmstart.errors import ConfigError, TrackingError
from warmstart.params import PipelineParams
from warmstart.reports import plots
from warmstart.tracking.client import (
    FIXED_DEFAULTS,
    OURS_VARIABLE,
    apply_settings,
    backoff_total_s,
    retry_settings,
)

# ------------------------------------------------------------------ no services


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_check_server_names_the_variable_when_unset(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(TrackingError, match="MLFLOW_TRACKING_URI is not set.*warmstart up"):
        tracking.check_server()


def test_check_server_fails_fast_when_unreachable(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://user:pw@127.0.0.1:{_dead_port()}/")
    start = time.monotonic()
    with pytest.raises(TrackingError, match="unreachable at http://127.0.0.1:") as err:
        tracking.check_server(timeout=3.0)
    assert time.monotonic() - start < 5.0
    assert "pw" not in str(err.value) and "warmstart up" in str(err.value)


@pytest.fixture
def client_settings(monkeypatch):
    """``apply_settings`` writes ``os.environ`` itself: put every key it may write under
    monkeypatch, so a test's changes are undone together. A marker left out of step with the
    values would make the CLI processes later tests start take a test's value for the user's
    (7 retries instead of the 3 their 5 s window asks for: a hung test)."""
    for key in (*FIXED_DEFAULTS, "MLFLOW_HTTP_REQUEST_MAX_RETRIES", OURS_VARIABLE):
        monkeypatch.setenv(key, os.environ.get(key, ""))  # records the value to restore
        if not os.environ[key]:
            monkeypatch.delenv(key)
    return monkeypatch


def test_retry_settings_cover_the_window(client_settings):
    monkeypatch = client_settings
    # the retries whose backoff is closest to the window (covering it on a tie)
    assert retry_settings(60) == {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "6"}  # 62 s, not 30 s
    assert retry_settings(20) == {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "4"}  # 14 s, not 30 s
    assert retry_settings(10) == {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "4"}  # 14 s and 6 s: tie
    assert backoff_total_s(6) == 62.0 and backoff_total_s(5) == 30.0  # 0+2+4+8+16(+32)
    assert retry_settings(0) == {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
    assert retry_settings(10_000) == {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "10"}  # MLflow's cap
    monkeypatch.delenv("WARMSTART_IO_RETRY_SECONDS", raising=False)
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_TIMEOUT", raising=False)
    apply_settings()
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "6"
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "60"  # the one HTTP timeout
    assert os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_JITTER"] == "1.0"
    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] == "true"
    monkeypatch.setenv("WARMSTART_IO_RETRY_SECONDS", "120")
    apply_settings()
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "7"  # ours: follows the window
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")  # exported by the user: wins
    apply_settings()
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "3"
    monkeypatch.setenv("WARMSTART_IO_RETRY_SECONDS", "soon")
    with pytest.raises(ConfigError, match="WARMSTART_IO_RETRY_SECONDS"):
        apply_settings()


def test_a_child_process_recomputes_the_settings_its_parent_wrote(client_settings):
    """Values inherited from a parent warmstart process follow the child's own retry window;
    a value the user exported stays."""
    monkeypatch = client_settings
    monkeypatch.delenv("WARMSTART_IO_RETRY_SECONDS", raising=False)
    for key in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT", OURS_VARIABLE):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "7")  # the user's own
    apply_settings()  # the parent: 60 s window
    parent_env = dict(os.environ)
    assert parent_env["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "6"
    script = (
        "import os; from warmstart.tracking.client import apply_settings; apply_settings(); "
        "print(os.environ['MLFLOW_HTTP_REQUEST_MAX_RETRIES'], os.environ['MLFLOW_HTTP_REQUEST_TIMEOUT'])"
    )
    child = subprocess.run(
        [sys.executable, "-c", script],
        env={**parent_env, "WARMSTART_IO_RETRY_SECONDS": "5"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert child.stdout.split() == ["3", "7"]  # 0 + 2 + 4 s is closest to 5 s; the user's timeout


def test_outage_longer_than_the_window_is_one_line_error(client_settings):
    """One retry budget for the whole outage, not one per call: the first request retries
    within the window, the next waits for the rest of it, and any later one fails at once;
    each TrackingError is one line saying how long the server did not answer."""
    monkeypatch = client_settings
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://user:pw@127.0.0.1:{_dead_port()}")
    monkeypatch.setenv("WARMSTART_IO_RETRY_SECONDS", "9")  # 3 retries: 0 + 2 + 4 s (+ jitter)
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    outage.MLFLOW.ended()
    start = time.monotonic()
    with pytest.raises(TrackingError) as err:
        tracking.log_metrics("0" * 32, {"loss": 1.0})
    first = time.monotonic() - start
    assert 6.0 <= first < 13.0, first  # 6 s of backoff, up to 3 s of jitter, a loaded machine
    msg = str(err.value)
    assert "\n" not in msg and "pw" not in msg
    assert re.search(r"did not answer for \d+ s .*budget for the whole outage is 9 s", msg)
    assert "WARMSTART_IO_RETRY_SECONDS" in msg
    with pytest.raises(TrackingError, match=r"not attempted .* did not answer for \d+ s"):
        tracking.end_run("0" * 32, "FAILED", reason="x")  # waits for what is left of 9 s
    second = time.monotonic() - start
    assert 9.0 <= second < max(first, 9.0) + 2.5, (first, second)
    with pytest.raises(TrackingError, match=r"not attempted .* did not answer for \d+ s"):
        tracking.heartbeat("0" * 32)  # the budget is spent: at once
    assert time.monotonic() - start - second < 1.0
    outage.MLFLOW.ended()


def test_safe_params_flatten_and_drop_secrets(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-value-xyz")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    clean = tracking.safe_params(
        {
            "lr": 0.01,
            "model": {"backbone": "cnn3", "widths": [8, 16]},
            "storage": {"aws_secret_access_key": "s3cr3t-value-xyz", "endpoint": "http://x"},
            "note": "uses AKIDEXAMPLE for s3",
            "api_token": "whatever",
        }
    )
    assert clean == {
        "lr": "0.01",
        "model.backbone": "cnn3",
        "model.widths": "[8, 16]",
        "storage.endpoint": "http://x",
        "note": "uses *** for s3",
    }


def test_model_name_for_targets():
    assert tracking.model_name_for("builtin:uci-digits") == "warmstart-uci-digits"
    assert tracking.model_name_for("s3://b/data/cifar10") == "warmstart-s3-b-data-cifar10"


def test_promotion_lock_needs_a_prefect_api():
    """Without a Prefect server every process would lock its own temporary one: refused."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        with pytest.raises(ConfigError, match="needs PREFECT_API_URL"):
            with promotion.prefect_lock("warmstart-x"):
                pass


# ------------------------------------------------------------------ helpers for real services


@pytest.fixture(scope="module")
def mlflow_env(stack):
    import torch

    torch.set_num_threads(1)
    assert tracking.check_server() == os.environ["MLFLOW_TRACKING_URI"]
    return stack


def _client():
    from mlflow import MlflowClient

    return MlflowClient()


N_TEST = 300
_RNG = np.random.default_rng(0)
X = _RNG.random((N_TEST, 1, 8, 8), dtype=np.float32)
TEACHER = _RNG.normal(size=(3, 64)).astype(np.float32)
Y = (X.reshape(N_TEST, 64) @ TEACHER.T).argmax(1)


def _linear(noise: float, seed: int = 0):
    """A classifier of the teacher's labels; more weight noise, fewer right answers."""
    import torch

    g = np.random.default_rng(seed)  # seed 1: noise 0 / 0.9 / 2 / 3 → 100 / 98 / 91 / 82%
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))
    with torch.no_grad():
        model[1].weight.copy_(torch.from_numpy(TEACHER + noise * g.normal(size=TEACHER.shape)))
        model[1].bias.zero_()
    return model.eval()


def _correct(model) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(torch.from_numpy(X)).argmax(1).numpy() == Y


def _job(target: str, **params) -> Job:
    ref = DatasetRef(
        "ab" * 32, f"s3://b/datasets/{'ab' * 32}", target, f"builtin:{target}", 3, 1, (8, 8), N_TEST
    )
    run = RunContext(tracking.experiment_id(target), "", f"flow-{uuid.uuid4().hex[:6]}")
    plan = stages.make_plan(PipelineParams(**params))
    return Job(plan, ref, SplitRef("cd" * 32, 5, 15, 30, N_TEST, 0), run)


def _candidate(job: Job, model, name: str) -> tuple[Evaluation, ArmResult]:
    """An evaluation whose candidate's served seed is ``model`` (scratch: a coin flip), and the
    served result with its own MLflow training run."""
    served = _correct(model)
    scratch = np.random.default_rng(1).random((2, N_TEST)) < 0.4
    keys = [f"{name}-0", f"{name}-1"]
    arm = ArmScores(
        "supervised/finetune",
        "supervised",
        "finetune",
        [0, 1],
        [0.9, 0.8],
        [float(served.mean())] * 2,
        [served.tolist()] * 2,
        [[0] * N_TEST] * 2,
        keys,
    )
    base = ArmScores(
        SCRATCH,
        None,
        "finetune",
        [0, 1],
        [0.5, 0.5],
        [0.4, 0.4],
        scratch.tolist(),
        [[0] * N_TEST] * 2,
        ["s0", "s1"],
    )
    run_id = tracking.start_run(job.run.experiment_id, f"finetune-target[{name}]")
    tracking.end_run(run_id)
    stage = StageRecord(
        key=keys[0], checkpoint_uri=f"s3://b/checkpoints/{name}", mlflow_run_id=run_id
    )
    result = ArmResult(
        ArmSpec("supervised/finetune", "finetune", 0, "finetune-target", "supervised"),
        f"s3://b/{name}",
        0.9,
        3,
        stage,
        source_key="src",
    )
    ev = Evaluation({arm.arm: arm, SCRATCH: base}, Y.tolist(), list(range(N_TEST)), ["a", "b", "c"])
    return ev, result


def _promote(job: Job, model, name: str, **kw) -> promotion.Promotion:
    ev, served = _candidate(job, model, name)
    assert promotion.served_result(ev, [served]) == served
    return promotion.promote(
        ev,
        served,
        model,
        job=job,
        source=None,
        example=X[:4],
        score_version=promotion.test_set_scorer(X, Y),
        **kw,
    )


# ------------------------------------------------------------------ runs


@pytest.mark.services
def test_runs_by_id_from_parallel_threads_with_inputs_and_reasons(mlflow_env):
    tag = uuid.uuid4().hex[:8]
    exp = tracking.experiment_id(f"itest-runs-{tag}")
    assert tracking.experiment_id(f"itest-runs-{tag}") == exp  # idempotent
    secret = os.environ["AWS_SECRET_ACCESS_KEY"]
    parent = tracking.start_run(
        exp, "pipeline", params={"k_shot": 5, "aws": {"secret_key": secret}, "note": f"x{secret}"}
    )
    target = DatasetRef(
        "ef" * 32,
        f"s3://b/datasets/{'ef' * 32}",
        "digits",
        "builtin:uci-digits",
        10,
        1,
        (8, 8),
        1797,
    )
    split = SplitRef("12" * 32, 5, 50, 270, 360, 1117)
    tracking.log_dataset_inputs(parent, {"target": target, "split": split})
    figure = plots.confusion_matrix_figure(np.array([0, 1, 1]), np.array([0, 1, 0]), ["a", "b"])
    tracking.log_figure(parent, "figures/confusion_matrix.png", figure)

    def stage(i: int) -> str:
        run_id = tracking.start_run(exp, f"stage-{i}", parent=parent, params={"seed": i})
        for epoch in range(1, 4):
            tracking.log_metrics(run_id, {"val_acc": 0.1 * epoch + i}, step=epoch)
        tracking.set_tags(run_id, {"checkpoint_uri": f"s3://b/{i}"})
        tracking.log_text(run_id, "notes/stage.md", f"stage {i} {secret}")
        tracking.end_run(run_id, *(("FAILED", f"RuntimeError: boom {i}") if i == 3 else ()))
        return run_id

    with ThreadPoolExecutor(4) as pool:
        children = list(pool.map(stage, range(4)))
    tracking.end_run(parent, "KILLED", reason="cancelled by the user")

    c = _client()
    for i, run_id in enumerate(children):
        run = c.get_run(run_id)
        assert run.data.tags["mlflow.parentRunId"] == parent and run.data.params == {"seed": str(i)}
        assert [m.value for m in c.get_metric_history(run_id, "val_acc")] == pytest.approx(
            [0.1 + i, 0.2 + i, 0.3 + i]
        )
        assert run.info.status == ("FAILED" if i == 3 else "FINISHED")
        text = open(c.download_artifacts(run_id, "notes/stage.md")).read()
        assert text == f"stage {i} ***"
    assert c.get_run(children[3]).data.tags[tracking.END_REASON_TAG] == "RuntimeError: boom 3"
    run = c.get_run(parent)
    assert run.info.status == "KILLED"
    assert run.data.tags[tracking.END_REASON_TAG] == "cancelled by the user"
    assert run.data.params == {"k_shot": "5", "note": "x***"}
    png = c.download_artifacts(parent, "figures/confusion_matrix.png")
    assert open(png, "rb").read(4) == b"\x89PNG"
    inputs = {i.tags[0].value: i.dataset for i in run.inputs.dataset_inputs}
    assert inputs["target"].source_type == "s3" and inputs["target"].digest == "ef" * 16
    assert json.loads(inputs["target"].source)["uri"] == f"s3://b/datasets/{'ef' * 32}/"
    assert inputs["split"].source_type == "s3" and inputs["split"].name == "split-k5"
    with pytest.raises(ConfigError, match="FINISHED, FAILED, KILLED"):
        tracking.end_run(parent, "DONE")


@pytest.mark.services
def test_errors_that_cannot_heal_are_not_retried(mlflow_env):
    start = time.monotonic()
    with pytest.raises(tracking.NotFound) as err:
        tracking.log_metrics("0" * 32, {"loss": 1.0})
    assert time.monotonic() - start < 5.0  # the 60 s retry window was not used
    assert "\n" not in str(err.value) and "RESOURCE_DOES_NOT_EXIST" in str(err.value)


@pytest.mark.services
def test_close_stale_runs_closes_only_silent_runs(mlflow_env):
    exp = tracking.experiment_id(f"itest-stale-{uuid.uuid4().hex[:8]}")
    silent = tracking.start_run(exp, "silent")
    beating = tracking.start_run(exp, "beating")
    parent = tracking.start_run(exp, "parent")  # silent itself, but its child is busy
    child = tracking.start_run(exp, "child", parent=parent)
    done = tracking.start_run(exp, "done")
    tracking.end_run(done)
    time.sleep(3.5)
    tracking.heartbeat(beating)
    tracking.log_metrics(child, {"loss": 0.5}, step=1)
    assert tracking.close_stale_runs(exp, older_than_s=3.0) == [silent]
    c = _client()
    run = c.get_run(silent)
    assert run.info.status == "KILLED"
    assert run.data.tags[tracking.END_REASON_TAG].startswith("stale: no sign of life for ")
    statuses = {r: c.get_run(r).info.status for r in (beating, parent, child, done)}
    assert statuses == {beating: "RUNNING", parent: "RUNNING", child: "RUNNING", done: "FINISHED"}
    assert set(tracking.close_stale_runs(exp, older_than_s=0.0)) == {beating, parent, child}


@pytest.mark.services
def test_end_runs_of_flow_ends_its_running_runs_only(mlflow_env):
    exp = tracking.experiment_id(f"itest-flow-{uuid.uuid4().hex[:8]}")
    flow = {tracking.FLOW_RUN_TAG: f"flow-{uuid.uuid4().hex}"}
    parent = tracking.start_run(exp, "pipeline", tags=flow)
    stage = tracking.start_run(exp, "stage", parent=parent, tags=flow)
    done = tracking.start_run(exp, "done", parent=parent, tags=flow)
    tracking.end_run(done)
    other = tracking.start_run(exp, "other", tags={tracking.FLOW_RUN_TAG: "another-flow"})
    ended = tracking.end_runs_of_flow(flow[tracking.FLOW_RUN_TAG], "KILLED", "flow cancelled")
    assert sorted(ended) == sorted([parent, stage])
    c = _client()
    assert [c.get_run(r).info.status for r in (parent, stage, done, other)] == [
        "KILLED",
        "KILLED",
        "FINISHED",
        "RUNNING",
    ]
    assert c.get_run(stage).data.tags[tracking.END_REASON_TAG] == "flow cancelled"
    tracking.end_run(other)


# ------------------------------------------------------------------ models


@pytest.mark.services
def test_log_model_into_a_given_run_from_a_thread(mlflow_env):
    """No fluent active run: the model lands in the named run and its experiment."""
    import mlflow

    exp = tracking.experiment_id(f"itest-model-{uuid.uuid4().hex[:8]}")
    run_id = tracking.start_run(exp, "finetune-target[x]")
    model = _linear(0.1)
    with ThreadPoolExecutor(1) as pool, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        logged = pool.submit(
            tracking.log_model, run_id, model, example=X[:1], tags={"strategy": "supervised"}
        ).result()
    said = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert not [m for m in said if "type hint" in m or "input example" in m], said
    assert mlflow.active_run() is None
    assert logged.uri.startswith("models:/m-") and logged.serialization == "pt2"
    assert logged.weights_sha256 == tracking.weights_sha256(_linear(0.1))
    assert logged.weights_sha256 != tracking.weights_sha256(_linear(0.2))
    lm = _client().get_logged_model(logged.model_id)
    assert lm.source_run_id == run_id and lm.experiment_id == exp
    assert lm.tags["weights_sha256"] == logged.weights_sha256 and lm.status.to_proto() == 2
    info = mlflow.models.get_model_info(logged.uri)
    assert info.metadata == {"input_shape": [1, 8, 8], "classes": ["0", "1", "2"]}
    assert info.signature.inputs.input_names() == ["image"]  # the image pyfunc
    pyf = tracking.load_pyfunc(logged.uri)
    logits = tracking.predict_logits(pyf, logged.uri, X)
    np.testing.assert_array_equal(logits.argmax(1) == Y, _correct(model))
    # the model carries its first example image as a PNG request, and answers it as served
    local = mlflow.artifacts.download_artifacts(logged.uri)
    example = mlflow.models.Model.load(local).load_input_example(local)
    assert list(example.columns) == ["image"] and example["image"][0][:4] == b"\x89PNG"
    quantized = np.rint(X[:1] * 255) / 255  # what the 8-bit PNG holds
    want = str(tracking.predict_logits(pyf, logged.uri, quantized.astype(np.float32)).argmax())
    assert pyf.predict(example)["class"].tolist() == [want]
    served = json.loads(Path(local, "serving_input_example.json").read_text())
    assert served["dataframe_split"]["columns"] == ["image"]
    with pytest.raises(tracking.UnusableModel, match="failed on a batch of shape"):
        tracking.predict_logits(pyf, logged.uri, np.zeros((2, 3, 8, 8), np.float32))


class _Branchy:
    """A module whose forward branches on tensor values: torch.export cannot trace it."""

    @staticmethod
    def build():
        import torch

        class Branchy(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = torch.nn.Linear(64, 3)

            def forward(self, x):
                h = self.fc(x.flatten(1))
                if h.sum() > 0:  # data-dependent control flow
                    return h
                return -h

        return Branchy().eval()


@pytest.mark.services
def test_untraceable_model_falls_back_to_pickle_or_raises_export_error(mlflow_env):
    exp = tracking.experiment_id(f"itest-export-{uuid.uuid4().hex[:6]}")
    run_id = tracking.start_run(exp, "export")
    with pytest.raises(tracking.ExportError, match="torch.export could not trace Branchy"):
        tracking.log_model(run_id, _Branchy.build(), example=X[:3], serialization="pt2")
    logged = tracking.log_model(run_id, _Branchy.build(), example=X[:3])
    assert logged.serialization == "pickle"
    # pickle deserialization is refused by default: one line naming the setting
    with pytest.raises(tracking.UnusableModel, match="MLFLOW_ALLOW_PICKLE_DESERIALIZATION"):
        tracking.load_pyfunc(logged.uri)


# ------------------------------------------------------------------ promotion


@pytest.mark.services
def test_promotion_lifecycle_registry_tags_and_fresh_process_load(mlflow_env, tmp_path):
    target = f"itest-promo-{uuid.uuid4().hex[:8]}"
    name = promotion.registry.model_name(_job(target).target)
    good, worse, best = _linear(0.9, 1), _linear(2.0, 1), _linear(0.0)
    acc = {
        k: float(_correct(m).mean()) for k, m in (("good", good), ("worse", worse), ("best", best))
    }
    assert acc["best"] > acc["good"] > acc["worse"] > 0.5, acc

    first = _promote(_job(target), good, "good")
    assert first.decision.passed and first.registered
    assert (first.version, first.champion_version, first.previous_champion) == ("1", "1", None)
    c = _client()
    refused = _promote(_job(target), worse, "worse")
    assert not refused.decision.passed and refused.decision.rule == "worse-than-champion"
    assert refused.version is None and not refused.registered and refused.champion_version == "1"
    kept = _promote(_job(target, keep_candidates=True), worse, "worse")
    assert kept.version == "2" and kept.registered and kept.champion_version == "1"
    again = _promote(_job(target), good, "good-again")  # the same weights as version 1
    assert again.decision.passed and not again.registered
    assert (again.version, again.champion_version) == ("1", "1")
    third = _promote(_job(target), best, "best")
    assert (third.version, third.champion_version, third.previous_champion) == ("3", "3", "1")
    assert len(c.search_model_versions(f"name = '{name}'")) == 3

    rm = c.get_registered_model(name)
    assert rm.aliases == {"champion": "3", "previous-champion": "1"}
    v1, v2, v3 = (c.get_model_version(name, v) for v in ("1", "2", "3"))
    assert v1.tags["previous_champion"] == "true" and v1.tags["promoted"] == "true"
    assert v2.tags["candidate"] == "true" and v2.tags["gate_verdict"] == "not promoted"
    assert "previous_champion" not in v2.tags and "promoted" not in v2.tags
    assert v3.tags["gate_verdict"] == "promoted" and v3.tags["candidate"] == "false"
    for v in (v1, v2, v3):
        for key in (
            "strategy",
            "transfer_mode",
            "seed",
            "target_dataset_hash",
            "split_hash",
            "checkpoint_uri",
            "k_shot",
            "flow_run_id",
            "weights_sha256",
            "gate_reason",
            "gate_delta_ci_low",
            "test_accuracy",
            "training_run_id",
        ):
            assert v.tags[key], key
        # the version links to the run that trained the served model
        assert v.run_id == v.tags["training_run_id"]
        assert c.get_run(v.run_id).data.tags["mlflow.runName"].startswith("finetune-target[")
    assert float(v3.tags["test_accuracy"]) == pytest.approx(acc["best"], abs=1e-4)
    assert v2.tags["gate_reason"] == kept.decision.reason
    assert third.decision.vs_champion["version"] == "1"

    # a fresh process: the pt2 graph with plain mlflow + torch (no warmstart import), the pyfunc
    # (models-from-code: warmstart installed); no S3 credentials, pickle refused
    np.save(tmp_path / "x.npy", X)
    script = textwrap.dedent(
        f"""
        import json, numpy as np, torch, mlflow
        x = np.load({str(tmp_path / "x.npy")!r})
        local = mlflow.artifacts.download_artifacts("models:/{name}@champion")
        module = torch.export.load(local + "/artifacts/model.pt2").module()
        with torch.no_grad():
            pred = module(torch.from_numpy(x)).argmax(1).numpy()
        pyf = mlflow.pyfunc.load_model("models:/{name}@champion")
        logits = pyf.unwrap_python_model().logits(x[:7])
        print(json.dumps({{"pred": pred.tolist(), "pyfunc": logits.argmax(1).tolist()}}))
        """
    )
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "MLFLOW_TRACKING_URI": os.environ["MLFLOW_TRACKING_URI"],
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false",
        # the server's basic auth, when it has one (the client reads these itself)
        **{
            k: os.environ[k]
            for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
            if k in os.environ
        },
    }
    proc = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert float((np.asarray(out["pred"]) == Y).mean()) == pytest.approx(acc["best"])
    assert out["pyfunc"] == out["pred"][:7]
    # artifacts are in our bucket under mlflow/ (proxied by the server)
    keys = list(storage.list_keys(storage.uri("mlflow")))
    assert sum(k.endswith("/artifacts/model.pt2") for k in keys) >= 3
    assert all(k.startswith("mlflow/") for k in keys)


@pytest.mark.services
def test_concurrent_promotions_take_turns_and_the_better_model_wins(mlflow_env):
    """Two runs both gate against champion v1; under the lock the second re-reads the champion
    and is compared with the first's result, so a worse model cannot replace a better one."""
    target = f"itest-race-{uuid.uuid4().hex[:8]}"
    name = promotion.registry.model_name(_job(target).target)
    weak, better, best = _linear(3.0, 1), _linear(2.0, 1), _linear(0.9, 1)
    assert _correct(best).mean() > _correct(better).mean() > _correct(weak).mean()
    assert _promote(_job(target), weak, "weak").champion_version == "1"
    held: list[tuple[float, float]] = []

    from contextlib import contextmanager

    @contextmanager
    def timed(model_name):
        with promotion.prefect_lock(model_name):
            start = time.monotonic()
            yield
            held.append((start, time.monotonic()))

    barrier = threading.Barrier(2)

    def run(model, name):
        barrier.wait()
        return _promote(_job(target), model, name, lock=timed)

    # each thread runs in a copy of this context, as Prefect's task runner threads do (the
    # session's Prefect settings live in a context variable)
    with ThreadPoolExecutor(2) as pool:
        futures = [
            pool.submit(contextvars.copy_context().run, run, model, label)
            for model, label in ((best, "best"), (better, "better"))
        ]
        outcomes = [f.result() for f in futures]
    (a_start, a_end), (b_start, b_end) = sorted(held)
    assert a_end <= b_start, "the promotions overlapped"
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:  # created on first use, one slot
        limit = client.read_global_concurrency_limit_by_name(promotion.lock_name(name))
    assert limit.limit == 1 and limit.active_slots == 0
    champion = tracking.version_by_alias(name)
    assert champion.tags["weights_sha256"] == tracking.weights_sha256(best)
    by_name = dict(zip(("best", "better"), outcomes, strict=True))
    assert by_name["best"].decision.passed
    if by_name["better"].decision.passed:  # it went first: then best was compared with it
        assert by_name["best"].decision.champion_version == by_name["better"].version
    else:
        assert by_name["better"].decision.rule == "worse-than-champion"
        assert by_name["better"].decision.champion_version == by_name["best"].version


@pytest.mark.services
def test_compare_and_set_regates_when_the_champion_moves_meanwhile(mlflow_env):
    """Without the lock (a writer that bypasses it), the alias is re-read right before it is
    moved: the loser re-gates against the new champion instead of overwriting it."""
    from contextlib import nullcontext

    target = f"itest-cas-{uuid.uuid4().hex[:8]}"
    name = promotion.registry.model_name(_job(target).target)
    weak, better, best = _linear(3.0, 1), _linear(2.0, 1), _linear(0.9, 1)
    assert _promote(_job(target), weak, "weak", lock=nullcontext).champion_version == "1"
    scored, best_done = threading.Event(), threading.Event()
    real = promotion.test_set_scorer(X, Y)

    def slow_scorer(version):
        correct = real(version)
        if version.version == "1" and not scored.is_set():
            scored.set()
            assert best_done.wait(120)  # the champion moves while this gate is running
        return correct

    def run_better():
        ev, served = _candidate(_job(target), better, "better")
        return promotion.promote(
            ev,
            served,
            better,
            job=_job(target),
            source=None,
            example=X[:4],
            score_version=slow_scorer,
            lock=nullcontext,
        )

    with ThreadPoolExecutor(1) as pool:
        loser = pool.submit(run_better)
        assert scored.wait(120)
        winner = _promote(_job(target), best, "best", lock=nullcontext)
        best_done.set()
        loser = loser.result()
    assert winner.decision.passed and winner.champion_version == winner.version
    assert loser.attempts == 2 and not loser.decision.passed
    assert loser.decision.rule == "worse-than-champion"
    assert loser.decision.champion_version == winner.version
    assert tracking.aliases(name)["champion"] == winner.version
    if loser.version is not None:  # registered in round 1, before it lost: it says so
        tags = _client().get_model_version(name, loser.version).tags
        assert tags["gate_verdict"] == "not promoted" and tags["candidate"] == "true"


@pytest.mark.services
@pytest.mark.slow
def test_calls_ride_out_a_20_second_mlflow_restart(mlflow_env):
    """Stop the MLflow server for 20 s in the middle of a sequence of calls: they all complete."""
    from warmstart.infra import stack as stack_mod

    svc = next(s for s in stack_mod.services(mlflow_env.config) if s.name == "mlflow")
    exp = tracking.experiment_id(f"itest-restart-{uuid.uuid4().hex[:8]}")
    run_id = tracking.start_run(exp, "restart")
    errors: list[BaseException] = []
    steps: list[float] = []
    stop = threading.Event()

    def calls():
        step = 0
        try:
            while not stop.is_set():
                step += 1
                t0 = time.monotonic()
                tracking.log_metrics(run_id, {"step_value": float(step)}, step=step)
                tracking.set_tags(run_id, {"last_step": step})
                tracking.heartbeat(run_id)
                steps.append(time.monotonic() - t0)
                time.sleep(0.5)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    worker = threading.Thread(target=calls)
    worker.start()
    time.sleep(3)
    pid = stack_mod._read_pid(svc)
    stack_mod._stop_pid(pid)
    svc.pid_file.unlink(missing_ok=True)
    down_at = time.monotonic()
    time.sleep(20)
    stack_mod._start(svc, mlflow_env.config)
    outage = time.monotonic() - down_at
    time.sleep(5)
    stop.set()
    worker.join(timeout=120)
    assert not errors, errors
    assert max(steps) >= 15.0, "no call waited through the outage"
    history = _client().get_metric_history(run_id, "step_value")
    # a request cut off by the stop may be retried after it was stored: steps, not rows, count
    assert sorted({m.step for m in history}) == list(range(1, len(steps) + 1))
    tracking.end_run(run_id)
    print(f"outage {outage:.1f} s, {len(steps)} call groups, longest {max(steps):.1f} s")


def test_metric_keys_are_made_valid_for_mlflow():
    """Arm names carry '=' and ',' (freeze=layer3, the scratch grid); MLflow refuses both in a
    metric name, which failed a whole run at its last step."""
    from warmstart.tracking.runs import metric_key

    assert metric_key("test_acc.torchvision.freeze=layer3") == "test_acc.torchvision.freeze_layer3"
    assert (
        metric_key("test_acc.scratch.lr=0.001,wd=0.0005") == "test_acc.scratch.lr_0.001_wd_0.0005"
    )
    assert metric_key("val/acc: best-1_x.y") == "val/acc: best-1_x.y"  # valid names unchanged
