"""The train step's hand-off to a cluster engine, against a fake CustomObjectsApi.

The fake "cluster" executes the created job's own command (``torchrun -m mlpipeline.distributed.ddp``
with the job's args, one process) on this machine, then reports the job's terminal condition, so the
staging layout, the rendered args and the model collection are exercised end to end. The real launch
is in test_cluster_launch.py (skipped without a cluster).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ddp_support import DATA_CFG
from kubernetes.client.exceptions import ApiException

from mlpipeline.artifacts import load_verified_object, read_json
from mlpipeline.config import DataConfig, TrainConfig
from mlpipeline.distributed.launcher import STAGING_DIR, JobLauncher, train_distributed
from mlpipeline.errors import TrainingError
from mlpipeline.stages.train import MODEL_FILE


class FakeCluster:
    """Records created objects; ``outcome`` decides what polling sees."""

    def __init__(self, outcome: str, run_command: bool = True, polls_before_done: int = 2):
        self.outcome, self.run_command, self.polls_before_done = outcome, run_command, polls_before_done
        self.created: list[tuple[str, str, str, str, dict[str, Any]]] = []
        self.deleted: list[str] = []
        self.polls = 0
        self.transient_errors = 1

    def create_namespaced_custom_object(self, group, version, namespace, plural, body):
        self.created.append((group, version, namespace, plural, body))
        if self.run_command:
            spec = body["spec"]
            c = spec["trainer"] if body["kind"] == "TrainJob" else spec["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]
            assert c["command"][:2] == ["torchrun", "-m"]
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=1", *c["command"][1:], *c["args"], "--device", "cpu"]
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env={**os.environ, "OMP_NUM_THREADS": "1"})
            assert res.returncode == 0, res.stderr[-4000:]
        return body

    def get_namespaced_custom_object(self, group, version, namespace, plural, name):
        self.polls += 1
        if self.transient_errors:  # an API server hiccup must not end the wait
            self.transient_errors -= 1
            raise ApiException(status=503, reason="Service Unavailable")
        obj = dict(self.created[-1][4])
        if self.polls > self.polls_before_done and self.outcome != "running":
            kind = {"ok": "Complete" if obj["kind"] == "TrainJob" else "Succeeded", "failed": "Failed"}[self.outcome]
            obj["status"] = {"conditions": [
                {"type": "Created", "status": "True"},
                {"type": kind, "status": "True", "reason": "BackoffLimitExceeded" if kind == "Failed" else "", "message": "pod node-0 exited 1"},
            ]}
        return obj

    def delete_namespaced_custom_object(self, group, version, namespace, plural, name, body=None):
        self.deleted.append(name)


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


def _cfgs(shared: Path, **dist: Any) -> tuple[DataConfig, TrainConfig]:
    tcfg = TrainConfig.model_validate({
        "seed": 7,
        "torch": {"max_epochs": 3, "batch_size": 128, "patience": 10, "mixed_precision": False},
        "distributed": {"pvc_name": "ml-shared", "mount_path": str(shared), "namespace": "team-a",
                        "timeout_s": 600, "poll_interval_s": 5, **dist},
    })
    return DataConfig.model_validate(DATA_CFG), tcfg


def _launcher(cluster: FakeCluster, clock: FakeClock | None = None) -> JobLauncher:
    clock = clock or FakeClock()
    return JobLauncher(cluster, clock=clock, sleep=clock.sleep)


@pytest.mark.parametrize("engine", ["trainjob", "pytorchjob"])
def test_successful_job_model_lands_in_the_step_output(ddp_inputs, tmp_path, engine):
    dcfg, tcfg = _cfgs(tmp_path / "shared", engine=engine, num_nodes=2, gpus_per_node=0)
    (tmp_path / "shared").mkdir()
    cluster = FakeCluster("ok")
    out = tmp_path / "out" / "model"
    info = train_distributed(ddp_inputs["train"], ddp_inputs["transform"], ddp_inputs["params"], dcfg, tcfg, out, launcher=_launcher(cluster))
    group, version, ns, plural, body = cluster.created[0]
    assert (ns, plural) == ("team-a", "trainjobs" if engine == "trainjob" else "pytorchjobs")
    assert info["distributed"]["used"] and info["distributed"]["engine"] == engine
    assert info["distributed"]["job"] == f"team-a/{body['metadata']['name']}"
    model = load_verified_object(out, MODEL_FILE)
    assert model.named_steps["model"].history_ and len(read_json(out / "train_info.json")["curve"]) == 3
    assert info["sha256"] == (out / f"{MODEL_FILE}.sha256").read_text().strip()
    assert not any((tmp_path / "shared" / STAGING_DIR).iterdir()), "staging directory not cleaned up"


def test_failed_job_fails_the_step_and_keeps_staging(ddp_inputs, tmp_path):
    (tmp_path / "shared").mkdir()
    dcfg, tcfg = _cfgs(tmp_path / "shared")
    cluster = FakeCluster("failed", run_command=False)
    with pytest.raises(TrainingError, match="failed: BackoffLimitExceeded: pod node-0 exited 1"):
        train_distributed(ddp_inputs["train"], ddp_inputs["transform"], ddp_inputs["params"], dcfg, tcfg, tmp_path / "m", launcher=_launcher(cluster))
    staged = list((tmp_path / "shared" / STAGING_DIR).iterdir())
    assert len(staged) == 1 and (staged[0] / "inputs" / "train.parquet").is_file()
    assert cluster.deleted == []


def test_timeout_deletes_the_job(ddp_inputs, tmp_path):
    (tmp_path / "shared").mkdir()
    dcfg, tcfg = _cfgs(tmp_path / "shared", timeout_s=60, poll_interval_s=10)
    cluster, clock = FakeCluster("running", run_command=False), FakeClock()
    with pytest.raises(TrainingError, match="did not finish within 60 s; deleted"):
        train_distributed(ddp_inputs["train"], ddp_inputs["transform"], ddp_inputs["params"], dcfg, tcfg, tmp_path / "m", launcher=_launcher(cluster, clock))
    assert cluster.deleted == [cluster.created[0][4]["metadata"]["name"]]
    assert clock.t == 60 and cluster.polls == 7


def test_other_families_train_in_process(ddp_inputs, tmp_path):
    (tmp_path / "shared").mkdir()
    dcfg, tcfg = _cfgs(tmp_path / "shared")
    params = tmp_path / "lr.json"
    params.write_text(json.dumps({"family": "logistic_regression", "params": {"C": 1.0}}))
    cluster = FakeCluster("ok", run_command=False)
    info = train_distributed(ddp_inputs["train"], ddp_inputs["transform"], params, dcfg, tcfg, tmp_path / "m", launcher=_launcher(cluster))
    assert cluster.created == []
    assert info["distributed"] == {"used": False, "reason": "family logistic_regression has no distributed trainer"}
    assert read_json(tmp_path / "m" / "train_info.json")["distributed"]["used"] is False


def test_unmounted_shared_volume_is_a_clear_error(ddp_inputs, tmp_path):
    from mlpipeline.errors import ConfigError

    dcfg, tcfg = _cfgs(tmp_path / "not-mounted")
    with pytest.raises(ConfigError, match="mount PVC 'ml-shared'"):
        train_distributed(ddp_inputs["train"], ddp_inputs["transform"], ddp_inputs["params"], dcfg, tcfg, tmp_path / "m", launcher=_launcher(FakeCluster("ok")))


def test_train_stage_hands_off_when_distributed_is_set(ddp_inputs, tmp_path, monkeypatch):
    """The few lines in stages/train.py: train() calls the launcher with the parsed sections."""
    import mlpipeline.distributed.launcher as launcher_mod
    from mlpipeline.stages.train import train

    seen = {}

    def fake_train_distributed(*args, **kwargs):
        seen["args"] = args
        return {"handed_off": True}

    monkeypatch.setattr(launcher_mod, "train_distributed", fake_train_distributed)
    dcfg, tcfg = _cfgs(tmp_path)
    assert train(ddp_inputs["train"], ddp_inputs["transform"], ddp_inputs["params"], DATA_CFG, tcfg.model_dump(mode="json"), tmp_path / "m") == {"handed_off": True}
    assert seen["args"][4].distributed.pvc_name == "ml-shared"
