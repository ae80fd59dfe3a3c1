"""Train stage: fit the tuned family on the train split behind the fitted transform.

The saved model is ONE sklearn Pipeline ``[transform, estimator]`` taking raw columns. Seeded:
the same inputs give a byte-identical sklearn model file. The torch MLP uses CUDA (bf16 autocast)
when the step got a GPU, the CPU otherwise.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from mlpipeline.artifacts import (
    atomic_write_json,
    load_verified_object,
    read_json,
    read_parquet,
    save_verified_object,
)
from mlpipeline.config import DataConfig, TrainConfig, parse_section
from mlpipeline.models.estimators import make_estimator, training_curve
from mlpipeline.stages.common import resolve_classes, xy
from mlpipeline.stages.preprocess import TRANSFORM_FILE

MODEL_FILE = "model.joblib"


def plot_curve(curve: list[dict[str, float]], path: str | Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mlpipeline.artifacts import atomic_path

    fig, ax = plt.subplots(figsize=(6, 3.5))
    if curve:
        keys = [k for k in curve[0] if k != "epoch"]
        for k in keys:
            ax.plot([c["epoch"] for c in curve], [c.get(k) for c in curve], label=k)
        ax.set_xlabel("epoch / iteration")
        ax.legend()
    else:
        ax.text(0.5, 0.5, "estimator records no per-iteration curve\n(closed-form / single solve)", ha="center", va="center")
    ax.set_title(title)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)


def train(
    train_path: str | Path,
    transform_dir: str | Path,
    best_params_path: str | Path,
    data_cfg: dict[str, Any] | DataConfig,
    train_cfg: dict[str, Any] | TrainConfig,
    out_model: str | Path,
) -> dict[str, Any]:
    from sklearn.pipeline import Pipeline

    dcfg = parse_section(DataConfig, data_cfg, "data")
    tcfg = parse_section(TrainConfig, train_cfg, "train")
    if tcfg.distributed is not None:  # multi-node: a TrainJob/PyTorchJob trains, this step waits for it
        from mlpipeline.distributed.launcher import train_distributed

        return train_distributed(train_path, transform_dir, best_params_path, dcfg, tcfg, out_model)
    best = read_json(best_params_path)
    transform = load_verified_object(transform_dir, TRANSFORM_FILE)
    X, y = xy(read_parquet(train_path), dcfg)
    if dcfg.task == "classification":
        resolve_classes(y, dcfg)  # fails clearly on a single-class target
    torch_cfg = tcfg.torch.model_dump()
    est = make_estimator(best["family"], best["params"], dcfg.task, tcfg.seed, torch_cfg)
    t0 = time.perf_counter()
    est.fit(transform.transform(X), y)
    seconds = time.perf_counter() - t0
    model = Pipeline([("transform", transform), ("model", est)])
    out = Path(out_model)
    out.mkdir(parents=True, exist_ok=True)
    curve = training_curve(est)
    info = {
        "family": best["family"],
        "params": best["params"],
        "estimator": type(est).__name__,
        "fit_seconds": round(seconds, 3),
        "train_rows": int(len(X)),
        "device": getattr(est, "device_used_", "cpu"),
        "seed": tcfg.seed,
        "curve": curve,
    }
    atomic_write_json(out / "train_info.json", info)
    plot_curve(curve, out / "training_curve.png", f"{best['family']} training curve")
    info["sha256"] = save_verified_object(model, out, MODEL_FILE)
    return info
