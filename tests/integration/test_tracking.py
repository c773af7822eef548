"""MLflow tracking and registry against the real local stack (SeaweedFS + MLflow server).

The unmarked tests at the top need no services (configuration errors, param hygiene)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid

import numpy as np
import pytest

from warmstart import gate, storage, tracking
from warmstart.errors import TrackingError

# ------------------------------------------------------------------ no services


def test_configure_names_the_variable_when_unset(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(TrackingError, match="MLFLOW_TRACKING_URI is not set.*warmstart up"):
        tracking.configure()


def test_configure_fails_fast_when_unreachable(monkeypatch):
    import time

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://user:pw@127.0.0.1:9/")
    start = time.monotonic()
    with pytest.raises(TrackingError, match="unreachable at http://127.0.0.1:9/") as err:
        tracking.configure(timeout=3.0)
    assert time.monotonic() - start < 5.0
    assert "pw" not in str(err.value) and "warmstart up" in str(err.value)


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


# ------------------------------------------------------------------ real services


def _tiny_model(seed: int):
    import torch

    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1),
        torch.nn.BatchNorm2d(4),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(16, 3),
    ).eval()


def _predict(model, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(torch.from_numpy(x)).argmax(1).numpy()


@pytest.fixture(scope="module")
def mlflow_env(stack):
    import torch

    torch.set_num_threads(1)
    uri = tracking.configure()
    assert uri == os.environ["MLFLOW_TRACKING_URI"]
    return uri


@pytest.mark.services
def test_registry_gate_lifecycle_and_champion_loads_in_fresh_process(mlflow_env, tmp_path):
    tag = uuid.uuid4().hex[:8]
    target = f"builtin:itest-{tag}"
    exp_id = tracking.experiment_for(target)
    assert tracking.experiment_for(target) == exp_id  # idempotent
    model_name = tracking.model_name_for(target)
    assert tracking.champion_version(model_name) is None  # no registered model yet
    assert tracking.champion_predictions(model_name, np.zeros((2, 1, 8, 8), np.float32)) is None

    rng = np.random.default_rng(0)
    x = rng.random((40, 1, 8, 8), dtype=np.float32)
    y = rng.integers(0, 3, size=40)
    scratch = rng.random((2, 400)) < 0.7
    better = scratch | (rng.random(scratch.shape) < 0.5)
    passed = gate.decide("supervised/finetune", better, scratch, champion_correct=None)
    failed = gate.decide("gan/finetune", scratch, scratch.copy(), champion_correct=None)
    assert passed.passed and not failed.passed

    secret = os.environ["AWS_SECRET_ACCESS_KEY"]
    access = os.environ["AWS_ACCESS_KEY_ID"]
    models, infos, results, run_ids = [], [], [], []
    with tracking.stage_run(f"itest-{tag}", experiment_id=exp_id, tags={"k": "v"}) as parent:
        logged = tracking.log_params_safe(
            {
                "k_shot": 10,
                "train": {"epochs": 2, "lr": 0.01},
                "aws": {"aws_secret_access_key": secret, "region": "us-east-1"},
                "endpoint_note": f"creds {access}:{secret}",
            }
        )
        assert logged["endpoint_note"] == "creds ***:***"
        tracking.log_dataset_input(
            {"hash": "ab" * 32, "shape": [1, 8, 8], "source": "builtin:uci-digits"},
            name="target-train",
            context="training",
        )
        tracking.log_epoch_metrics({"train_loss": 1.0, "val_acc": 0.5}, epoch=1)
        tracking.log_epoch_metrics({"train_loss": 0.5, "val_acc": 0.7}, epoch=2)
        tracking.log_confusion_matrix(y, _predict(_tiny_model(0), x), ["a", "b", "c"])
        tracking.log_image(np.zeros((9, 9), np.uint8), "samples/gan.png")
        tracking.log_predictions({"label": y, "pred": y}, artifact_file="eval/predictions.parquet")
        tracking.log_gate_report(passed, gate.summary_table([]), context={"target": target})
        for i, decision in enumerate((passed, failed, passed)):
            model = _tiny_model(i)
            with tracking.stage_run(
                f"finetune-{i}", experiment_id=exp_id, parent_run_id=parent.info.run_id
            ) as child:
                info = tracking.log_torch_model(
                    model,
                    example=x[:1],  # one row: duplicated so the batch dim stays dynamic
                    tags={"strategy": "supervised", "secretish": f"x{secret}"},
                )
            assert info.model_uri.startswith("models:/m-")
            assert info.signature.inputs.to_dict()[0]["tensor-spec"]["shape"] == (-1, 1, 8, 8)
            correct = np.stack([_predict(model, x) == y])
            res = tracking.register_and_promote(
                model_name=model_name,
                model_uri=info.model_uri,
                run_id=child.info.run_id,
                decision=decision,
                tags={
                    "strategy": "supervised",
                    "transfer_mode": "finetune",
                    "source_dataset_hash": "cd" * 32,
                    "checkpoint_uri": f"s3://bucket/checkpoints/{i}",
                    "leak": f"key={secret}",
                },
                test_correct=correct,
            )
            models.append(model)
            infos.append(info)
            results.append(res)
            run_ids.append(child.info.run_id)
            # after each registration, the alias state is as the gate says
            expected = {0: "1", 1: "1", 2: "3"}[i]
            assert res["version"] == str(i + 1)
            assert res["champion_version"] == expected
            assert tracking.champion_version(model_name).version == expected

    from mlflow import MlflowClient

    client = MlflowClient()
    rm = client.get_registered_model(model_name)
    assert rm.aliases == {"champion": "3", "previous-champion": "1"}
    v1, v2, v3 = (client.get_model_version(model_name, str(v)) for v in (1, 2, 3))
    assert v1.tags["previous_champion"] == "true"
    assert v2.tags["gate_verdict"] == "not promoted" and "previous_champion" not in v2.tags
    assert v3.tags["gate_verdict"] == "promoted" and v3.tags["promoted"] == "true"
    for v in (v1, v2, v3):
        for key in (
            "strategy",
            "transfer_mode",
            "source_dataset_hash",
            "checkpoint_uri",
            "gate_reason",
            "test_accuracy",
        ):
            assert v.tags[key], key
    assert v2.tags["gate_reason"] == failed.reason

    # a retried registration of the same model is a no-op, not a 4th version
    again = tracking.register_and_promote(
        model_name=model_name,
        model_uri=infos[2].model_uri,
        run_id=run_ids[2],
        decision=passed,
        tags={},
        test_correct=np.ones((1, 4), bool),
    )
    assert again["version"] == "3"
    assert len(client.search_model_versions(f"name = '{model_name}'")) == 3

    # a registered model whose only version failed the gate has no champion
    other = f"{model_name}-refused"
    refused = tracking.register_and_promote(
        model_name=other,
        model_uri=infos[1].model_uri,
        run_id=run_ids[1],
        decision=failed,
        tags={},
        test_correct=np.ones((1, 4), bool),
    )
    assert refused["version"] == "1" and refused["champion_version"] is None
    assert client.get_registered_model(other).aliases == {}
    assert tracking.champion_version(other) is None
    assert tracking.champion_predictions(other, x) is None

    # the gate's champion comparison input: predictions of v3 on the same test images
    champ_pred = tracking.champion_predictions(model_name, x)
    np.testing.assert_array_equal(champ_pred, _predict(models[2], x))

    # a fresh process with plain mlflow, no warmstart import, no S3 credentials, pickle refused
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    script = textwrap.dedent(
        f"""
        import json, numpy as np, torch, mlflow
        x = np.load({str(tmp_path / "x.npy")!r}); y = np.load({str(tmp_path / "y.npy")!r})
        uri = "models:/{model_name}@champion"
        module = mlflow.pytorch.load_model(uri)
        with torch.no_grad():
            acc_torch = float((module(torch.from_numpy(x)).argmax(1).numpy() == y).mean())
        pyf = mlflow.pyfunc.load_model(uri)
        acc_pyfunc = float((pyf.predict(x[:7]).argmax(1) == y[:7]).mean())
        print(json.dumps({{"acc_torch": acc_torch, "acc_pyfunc_7": acc_pyfunc,
                          "type": type(module).__name__}}))
        """
    )
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "MLFLOW_TRACKING_URI": os.environ["MLFLOW_TRACKING_URI"],
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false",
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
    reported = float(v3.tags["test_accuracy"])
    assert out["acc_torch"] == pytest.approx(reported, abs=1e-4)
    assert out["acc_pyfunc_7"] == pytest.approx(float((_predict(models[2], x[:7]) == y[:7]).mean()))

    # artifacts are in our bucket under mlflow/ (proxied by the server)
    keys = list(storage.list_keys(storage.uri("mlflow")))
    assert any(k.endswith("/confusion_matrix.png") for k in keys)
    assert any(k.endswith("/gate/gate_report.json") for k in keys)
    assert any(k.endswith("/eval/predictions.parquet") for k in keys)
    assert sum(k.endswith("/data/model.pt2") for k in keys) >= 3
    assert all(k.startswith("mlflow/") for k in keys)

    # no secret in params, tags, version tags, dataset inputs or the gate report
    run = client.get_run(parent.info.run_id)
    assert (
        run.data.params["train.lr"] == "0.01" and "aws.aws_secret_access_key" not in run.data.params
    )
    assert run.data.tags["gate_verdict"] == "promoted"
    assert [i.dataset.digest for i in run.inputs.dataset_inputs] == ["ab" * 16]
    child_runs = client.search_runs(
        [exp_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert len(child_runs) == 3
    report = client.download_artifacts(parent.info.run_id, "gate/gate_report.json", str(tmp_path))
    blobs = [
        json.dumps(run.data.params),
        json.dumps(run.data.tags),
        json.dumps([r.data.tags for r in child_runs]),
        json.dumps([client.get_logged_model(i.model_id).tags for i in infos]),
        json.dumps([v.tags for v in (v1, v2, v3)]),
        json.dumps(rm.tags),
        open(report).read(),
    ]
    for blob in blobs:
        assert secret not in blob and access not in blob
    assert "key=***" in json.dumps(v1.tags)


class _DataDependent:
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
def test_untraceable_model_raises_export_error_not_io_error(mlflow_env):
    exp_id = tracking.experiment_for(f"itest-export-{uuid.uuid4().hex[:6]}")
    x = np.random.default_rng(0).random((3, 1, 8, 8), dtype=np.float32)
    with tracking.stage_run("export", experiment_id=exp_id):
        with pytest.raises(tracking.ExportError, match="torch.export could not trace Branchy"):
            tracking.log_torch_model(_DataDependent.build(), example=x)
    # outside a run: a plain TrackingError (caller bug), not an export failure
    with pytest.raises(TrackingError, match="needs an active MLflow run") as err:
        tracking.log_torch_model(_DataDependent.build(), example=x)
    assert not isinstance(err.value, tracking.ExportError)
