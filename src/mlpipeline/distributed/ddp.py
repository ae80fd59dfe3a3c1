"""DDP training entry point for the torch MLP family.

    torchrun --nnodes N --nproc-per-node P -m mlpipeline.distributed.ddp \\
        --train TRAIN.parquet --transform TRANSFORM_DIR --params BEST_PARAMS.json \\
        --data-config DATA.json --train-config TRAIN.json --out MODEL_DIR

Without torchrun (no ``WORLD_SIZE`` in the environment) it runs as one process with the same code.
The result is exactly what the train stage writes (:func:`mlpipeline.stages.train.train`): one sklearn
``Pipeline([transform, TorchMLP*])`` in ``model.joblib`` (+ sha256), ``train_info.json`` and the
training curve, so evaluate and package run unchanged. Rank 0 writes it into a temporary sibling
directory and renames it into place, so ``--out`` is either absent or complete.

Training follows :class:`mlpipeline.models.torch_mlp.TorchMLPClassifier` (same network, optimizer,
hold-out slice and early stopping), distributed:

- backend nccl when CUDA is available (one GPU per process, ``LOCAL_RANK``), gloo on CPU;
- the training rows are sharded with ``DistributedSampler`` (seeded, reshuffled each epoch); each
  process takes ``batch_size / world_size`` rows per step, so the global batch, the averaged gradient
  and therefore the loss curve match a one-process run on the same data and seed;
- train and validation losses are summed over all processes (``all_reduce``), so every process takes
  the same early-stopping decision.

Every process reads the whole training file and applies the fitted transform; the sampler decides
which rows it trains on. That suits tabular data up to a few hundred million cells per node.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlpipeline.errors import ConfigError, MLPipelineError

log = logging.getLogger("mlpipeline.distributed.ddp")

FAMILY = "torch_mlp"


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits in the job (torchrun's environment)."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> DistEnv:
        return cls(
            rank=int(os.environ.get("RANK", 0)),
            local_rank=int(os.environ.get("LOCAL_RANK", 0)),
            world_size=int(os.environ.get("WORLD_SIZE", 1)),
        )


def _json_arg(value: str) -> Any:
    """Inline JSON, or the path of a JSON file."""
    text = value.strip()
    if not text.startswith("{"):
        text = Path(value).read_text(encoding="utf-8")
    return json.loads(text)


def _device(env: DistEnv, prefer: str) -> str:
    import torch

    if prefer == "cpu" or (prefer == "auto" and not torch.cuda.is_available()):
        return "cpu"
    if not torch.cuda.is_available():
        raise ConfigError("--device cuda but CUDA is not available")
    torch.cuda.set_device(env.local_rank)
    return f"cuda:{env.local_rank}"


def _all_sum(values: list[float], env: DistEnv, device: str) -> list[float]:
    """Element-wise sum over all processes (float64 so sums of many batch losses keep precision)."""
    if not env.distributed:
        return values
    import torch
    import torch.distributed as dist

    # gloo and nccl both reduce float64 tensors; nccl needs them on the GPU.
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def fit_distributed(X: Any, y: Any, estimator: Any, env: DistEnv, device: str = "cpu") -> Any:
    """Fit ``estimator`` (an unfitted TorchMLPClassifier/Regressor) with DDP across ``env``.

    Every process must call it with the same data. Returns the fitted estimator on every process
    (identical parameters everywhere, since DDP keeps replicas in sync).
    """
    import torch
    import torch.nn as nn
    from torch.utils.data import DistributedSampler

    from mlpipeline.models.torch_mlp import TorchMLPClassifier, build_network

    est = estimator
    X = np.asarray(X, dtype=np.float32)
    if isinstance(est, TorchMLPClassifier):
        est.classes_, y_idx = np.unique(np.asarray(y), return_inverse=True)
        y_arr, n_out, loss_fn = y_idx.astype(np.int64), len(est.classes_), nn.CrossEntropyLoss()
    else:
        yf = np.asarray(y, dtype=np.float64)
        est.y_mean_, est.y_std_ = float(yf.mean()), float(yf.std() or 1.0)
        y_arr = ((yf - est.y_mean_) / est.y_std_).astype(np.float32).reshape(-1, 1)
        n_out, loss_fn = 1, nn.MSELoss()

    # Same hold-out slice as the one-process estimator.
    rng = np.random.default_rng(est.random_state)
    n = len(X)
    idx = rng.permutation(n)
    n_val = max(1, int(0.1 * n)) if n >= 20 else 0
    val_idx, tr_idx = idx[:n_val], idx[n_val:]
    local_val = val_idx[env.rank :: env.world_size]

    torch.manual_seed(est.random_state)  # identical initial weights on every process
    net: Any = build_network(X.shape[1], n_out, est.hidden, est.layers, est.dropout).to(device)
    model: Any = net
    if env.distributed:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(net, device_ids=[env.local_rank] if device.startswith("cuda") else None)
    torch.manual_seed(est.random_state + env.rank)  # distinct dropout masks per process
    opt = torch.optim.AdamW(model.parameters(), lr=est.lr, weight_decay=est.weight_decay)
    use_amp = est.mixed_precision and device.startswith("cuda")
    Xt = torch.from_numpy(X).to(device)
    yt = torch.from_numpy(y_arr).to(device)
    sampler = DistributedSampler(
        range(len(tr_idx)), num_replicas=env.world_size, rank=env.rank, shuffle=True, seed=est.random_state
    )
    local_batch = max(1, est.batch_size // env.world_size)

    best, best_state, bad = float("inf"), None, 0
    history: list[dict[str, float]] = []
    for epoch in range(est.max_epochs):
        sampler.set_epoch(epoch)
        rows = torch.from_numpy(tr_idx[np.fromiter(iter(sampler), dtype=np.int64)]).to(device)
        model.train()
        total, count = 0.0, 0
        for start in range(0, len(rows), local_batch):
            b = rows[start : start + local_batch]
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=use_amp):
                loss = loss_fn(model(Xt[b]).float(), yt[b])
            loss.backward()  # DDP averages gradients across processes here
            opt.step()
            total += float(loss.detach()) * len(b)
            count += len(b)
        model.eval()
        with torch.no_grad():
            vb = torch.from_numpy(local_val).to(device)
            v_sum = float(loss_fn(net(Xt[vb]).float(), yt[vb])) * len(vb) if len(vb) else 0.0
        total, count, v_sum, v_count = _all_sum([total, float(count), v_sum, float(len(local_val))], env, device)
        train_loss = total / max(1.0, count)
        val_loss = v_sum / v_count if v_count else train_loss
        history.append({"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss})
        if env.is_main:
            log.info("epoch=%d train_loss=%.6f val_loss=%.6f", epoch + 1, train_loss, val_loss)
        if val_loss < best - 1e-5:
            best, bad = val_loss, 0
            best_state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
        else:
            bad += 1
            if bad >= est.patience:
                break

    net = net.cpu()
    if best_state is not None:
        net.load_state_dict(best_state)
    net.eval()
    est.network_ = net
    est.history_ = history
    est.n_features_in_ = X.shape[1]
    est.device_used_ = device.split(":")[0]
    return est


def _write_model_dir(out: Path, model: Any, info: dict[str, Any]) -> str:
    """Write the model directory atomically: a temporary sibling, then a rename."""
    from mlpipeline.artifacts import atomic_write_json, save_verified_object
    from mlpipeline.stages.train import MODEL_FILE, plot_curve

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        atomic_write_json(tmp / "train_info.json", info)
        plot_curve(info["curve"], tmp / "training_curve.png", f"{FAMILY} training curve (DDP x{info['world_size']})")
        digest = save_verified_object(model, tmp, MODEL_FILE)
        if out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # an empty output directory prepared by the caller (e.g. a KFP artifact path)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return digest


def train_ddp(
    train_path: str | Path,
    transform_dir: str | Path,
    best_params_path: str | Path,
    data_cfg: dict[str, Any],
    train_cfg: dict[str, Any],
    out_model: str | Path,
    *,
    device: str = "auto",
    env: DistEnv | None = None,
) -> dict[str, Any] | None:
    """Run this process's part of a DDP training; rank 0 writes ``out_model`` and returns train info."""
    import torch
    import torch.distributed as dist
    from sklearn.pipeline import Pipeline

    from mlpipeline.artifacts import load_verified_object, read_json, read_parquet
    from mlpipeline.config import DataConfig, TrainConfig, parse_section
    from mlpipeline.models.estimators import make_estimator, training_curve
    from mlpipeline.stages.common import resolve_classes, xy
    from mlpipeline.stages.preprocess import TRANSFORM_FILE

    env = env or DistEnv.from_env()
    dcfg = parse_section(DataConfig, data_cfg, "data")
    tcfg = parse_section(TrainConfig, train_cfg, "train")
    best = read_json(best_params_path)
    if best.get("family") != FAMILY:
        raise ConfigError(f"distributed training supports the {FAMILY} family, got {best.get('family')!r}")
    dev = _device(env, device)
    if env.distributed and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.startswith("cuda") else "gloo")
    try:
        transform = load_verified_object(transform_dir, TRANSFORM_FILE)
        X, y = xy(read_parquet(train_path), dcfg)
        if dcfg.task == "classification":
            resolve_classes(y, dcfg)
        torch_cfg = tcfg.torch.model_dump()
        est = make_estimator(FAMILY, best["params"], dcfg.task, tcfg.seed, torch_cfg)
        t0 = time.perf_counter()
        fit_distributed(transform.transform(X), y, est, env, dev)
        seconds = time.perf_counter() - t0
        info = None
        if env.is_main:
            info = {
                "family": FAMILY,
                "params": best["params"],
                "estimator": type(est).__name__,
                "fit_seconds": round(seconds, 3),
                "train_rows": int(len(X)),
                "device": est.device_used_,
                "seed": tcfg.seed,
                "world_size": env.world_size,
                "backend": dist.get_backend() if env.distributed else None,
                "torch": torch.__version__,
                "curve": training_curve(est),
            }
            model = Pipeline([("transform", transform), ("model", est)])
            info["sha256"] = _write_model_dir(Path(out_model), model, info)
        if env.distributed:
            dist.barrier()  # no process exits (tearing down the group) before rank 0 has written
        return info
    finally:
        if env.distributed and dist.is_initialized():
            dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mlpipeline.distributed.ddp", allow_abbrev=False, description=__doc__.splitlines()[0])
    p.add_argument("--train", required=True, help="training split (Parquet file or KFP dataset dir)")
    p.add_argument("--transform", required=True, help="fitted transform directory (transform.joblib + sha256)")
    p.add_argument("--params", required=True, help="best-params JSON from the tune stage ({family, params})")
    p.add_argument("--data-config", required=True, help="data section: inline JSON or a JSON file")
    p.add_argument("--train-config", default="{}", help="train section: inline JSON or a JSON file")
    p.add_argument("--out", required=True, help="model directory to create (rank 0)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    a = p.parse_args(argv)
    env = DistEnv.from_env()
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s rank{env.rank} %(levelname)s %(message)s")
    try:
        info = train_ddp(a.train, a.transform, a.params, _json_arg(a.data_config), _json_arg(a.train_config), a.out, device=a.device, env=env)
    except MLPipelineError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if info is not None:
        print(json.dumps({k: v for k, v in info.items() if k != "curve"}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
