"""The job command of the TrainJob / PyTorchJob objects, run inside the project image.

``torchrun -m mlpipeline.distributed.ddp`` with 2 gloo processes in one container (uid 1000, no network,
read-only root, inputs mounted read-only): what one node of the cluster job runs.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from ddp_support import build_ddp_inputs

from mlpipeline.artifacts import load_verified_object, read_json, read_parquet
from mlpipeline.distributed.jobs import COMMAND
from mlpipeline.stages.train import MODEL_FILE

pytestmark = pytest.mark.containers


def test_torchrun_ddp_in_the_image(podman, project_image, tmp_path: Path):
    inputs = build_ddp_inputs(tmp_path / "inputs")
    out = tmp_path / "out"
    out.mkdir()
    for p in [tmp_path / "inputs", *(tmp_path / "inputs").rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    os.chown(out, 1000, 1000)  # the container's user writes the model
    args = [
        "--train", "/data/train.parquet", "--transform", "/data/transform", "--params", "/data/best_params.json",
        "--data-config", "/data/data.json", "--train-config", "/data/train.json", "--out", "/out/model",
    ]
    assert COMMAND[0] == "torchrun"
    cmd = [
        podman, "run", "--rm", "--user", "1000:1000", "--read-only", "--network", "none",
        "-v", f"{inputs['dir']}:/data:ro", "-v", f"{out}:/out", project_image,
        COMMAND[0], "--standalone", "--nproc-per-node=2", *COMMAND[1:], *args,
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, f"{res.stdout[-3000:]}\n{res.stderr[-5000:]}"
    info = read_json(out / "model" / "train_info.json")
    assert (info["world_size"], info["backend"], info["device"]) == (2, "gloo", "cpu")
    assert len(info["curve"]) == 6 and info["curve"][-1]["val_loss"] < info["curve"][0]["val_loss"]
    X = read_parquet(inputs["validation"]).drop(columns=["label"])
    assert load_verified_object(out / "model", MODEL_FILE).predict(X).shape == (len(X),)
