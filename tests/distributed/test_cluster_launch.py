"""Real launch of the DDP TrainJob / PyTorchJob on a cluster (skipped without one).

Needs: KUBECONFIG (or in-cluster credentials) for a cluster with Kubeflow Trainer (TrainJob, runtime
``torch-distributed``) and/or the Training Operator (PyTorchJob), the project image pullable there,
and a ReadWriteMany PVC that is also mounted on this machine:

    MLPIPELINE_TEST_PVC=<pvc name>  MLPIPELINE_TEST_MOUNT=<local mount of that PVC>
    MLPIPELINE_TEST_NAMESPACE=<namespace, default mlpipeline>  MLPIPELINE_IMAGE=<pullable image>
"""

from __future__ import annotations

import os

import pytest

from mlpipeline.artifacts import load_verified_object
from mlpipeline.config import DataConfig, TrainConfig
from mlpipeline.stages.train import MODEL_FILE

pytestmark = pytest.mark.cluster


def _cluster_env() -> dict[str, str]:
    if not (os.environ.get("KUBECONFIG") or os.environ.get("KUBERNETES_SERVICE_HOST")):
        pytest.skip("no Kubernetes cluster configured (KUBECONFIG)")
    missing = [k for k in ("MLPIPELINE_TEST_PVC", "MLPIPELINE_TEST_MOUNT") if not os.environ.get(k)]
    if missing:
        pytest.skip(f"cluster launch needs a shared RWX volume: set {', '.join(missing)}")
    return {
        "pvc": os.environ["MLPIPELINE_TEST_PVC"],
        "mount": os.environ["MLPIPELINE_TEST_MOUNT"],
        "namespace": os.environ.get("MLPIPELINE_TEST_NAMESPACE", "mlpipeline"),
    }


@pytest.mark.parametrize("engine", ["trainjob", "pytorchjob"])
def test_ddp_job_trains_on_the_cluster(ddp_inputs, tmp_path, engine):
    from ddp_support import DATA_CFG

    from mlpipeline.distributed.launcher import train_distributed

    env = _cluster_env()
    tcfg = TrainConfig.model_validate({
        "seed": 7,
        "torch": {"max_epochs": 3, "batch_size": 128, "patience": 10, "mixed_precision": False},
        "distributed": {"engine": engine, "num_nodes": 2, "gpus_per_node": 0, "procs_per_node": 1,
                        "pvc_name": env["pvc"], "mount_path": env["mount"], "namespace": env["namespace"],
                        "cpu": "1", "memory": "2Gi", "timeout_s": 900, "poll_interval_s": 5},
    })
    info = train_distributed(
        ddp_inputs["train"], ddp_inputs["transform"], ddp_inputs["params"], DataConfig.model_validate(DATA_CFG), tcfg, tmp_path / "model"
    )
    assert info["distributed"]["used"] and info["world_size"] == 2
    assert load_verified_object(tmp_path / "model", MODEL_FILE).named_steps["model"].history_
