"""The DDP trainer on gloo: 2 processes (torchrun) follow the 1-process loss curve on the same data and seed.

With dropout 0 the two runs see the same global batches (DistributedSampler interleaves one seeded
permutation; each process takes batch_size/2 rows) and DDP averages the gradients, so the curves
agree up to float32 reduction order. Small on purpose: 3,000 rows, 6 epochs, CI on 2 cores.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mlpipeline.artifacts import load_verified_object, read_json, read_parquet
from mlpipeline.stages.train import MODEL_FILE

TIMEOUT_S = 240


def run_ddp(inputs: dict[str, Path], out: Path, nproc: int, *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
        "-m", "mlpipeline.distributed.ddp",
        "--train", str(inputs["train"]), "--transform", str(inputs["transform"]),
        "--params", str(inputs["params"]), "--data-config", str(inputs["data"]),
        "--train-config", str(inputs["train_config"]), "--out", str(out), "--device", "cpu", *extra,
    ]
    env_threads = {"OMP_NUM_THREADS": "1"}
    import os

    return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, env={**os.environ, **env_threads})


@pytest.fixture(scope="module")
def runs(ddp_inputs, tmp_path_factory) -> dict[int, Path]:
    out = {}
    for nproc in (1, 2):
        model_dir = tmp_path_factory.mktemp(f"ddp{nproc}") / "model"
        res = run_ddp(ddp_inputs, model_dir, nproc)
        assert res.returncode == 0, f"torchrun x{nproc} failed:\n{res.stdout[-3000:]}\n{res.stderr[-5000:]}"
        out[nproc] = model_dir
    return out


def test_two_process_loss_curve_matches_one_process(runs):
    one, two = (read_json(runs[n] / "train_info.json") for n in (1, 2))
    assert (one["world_size"], two["world_size"]) == (1, 2)
    assert two["backend"] == "gloo"
    c1, c2 = one["curve"], two["curve"]
    assert len(c1) == len(c2) == 6
    for key in ("train_loss", "val_loss"):
        a, b = np.array([c[key] for c in c1]), np.array([c[key] for c in c2])
        np.testing.assert_allclose(b, a, rtol=1e-4, err_msg=f"{key}: 2-process curve departs from 1-process")
    # and it learned: validation loss fell well below the initial level
    assert c2[-1]["val_loss"] < 0.8 * c2[0]["val_loss"]


def test_model_dir_is_what_the_train_stage_writes(runs, ddp_inputs):
    from mlpipeline.models.torch_mlp import TorchMLPClassifier

    model = load_verified_object(runs[2], MODEL_FILE)  # sha256-verified sklearn Pipeline
    assert isinstance(model.named_steps["model"], TorchMLPClassifier)
    assert (runs[2] / "training_curve.png").stat().st_size > 0
    assert not list(runs[2].parent.glob(".model.tmp-*")), "temporary directory left behind"
    val = read_parquet(ddp_inputs["validation"])
    X, y = val.drop(columns=["label"]), val["label"].to_numpy()
    p2 = model.predict_proba(X)[:, 1]
    p1 = load_verified_object(runs[1], MODEL_FILE).predict_proba(X)[:, 1]
    np.testing.assert_allclose(p2, p1, atol=5e-3)
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(y, p2) > 0.85


def test_rejects_a_family_without_a_distributed_trainer(ddp_inputs, tmp_path):
    params = tmp_path / "gb.json"
    params.write_text(json.dumps({"family": "gradient_boosting", "params": {}}))
    from mlpipeline.distributed.ddp import main

    code = main([
        "--train", str(ddp_inputs["train"]), "--transform", str(ddp_inputs["transform"]), "--params", str(params),
        "--data-config", str(ddp_inputs["data"]), "--out", str(tmp_path / "m"), "--device", "cpu",
    ])
    assert code == 2
    assert not (tmp_path / "m").exists()
