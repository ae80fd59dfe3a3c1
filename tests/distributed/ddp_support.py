"""Small seeded inputs for the DDP trainer and the Katib trial: train/validation splits, a fitted
transform (the preprocess stage's own), best params for the torch MLP, and the config sections.
Shared by tests/distributed and tests/containers (imported by module name)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DATA_CFG = {"source": "synthetic", "target": "label", "task": "classification", "positive_class": 1, "seed": 3}
TRAIN_CFG = {"seed": 7, "torch": {"max_epochs": 6, "batch_size": 128, "patience": 10, "mixed_precision": False}}
BEST_PARAMS = {"family": "torch_mlp", "params": {"hidden": 32, "layers": 2, "dropout": 0.0, "lr": 0.003, "weight_decay": 1e-4}}


def synthetic_frame(n: int, seed: int) -> Any:
    """Binary target driven by two numeric features and a category, with noise and a few NaNs."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    x1, x2, x3 = rng.normal(size=n), rng.normal(size=n), rng.uniform(0, 10, size=n)
    cat = rng.choice(["a", "b", "c"], size=n, p=[0.5, 0.3, 0.2])
    logit = 1.5 * x1 - x2 + 0.2 * (x3 - 5) + np.where(cat == "c", 1.0, 0.0) + rng.normal(scale=0.5, size=n)
    df = pd.DataFrame({"x1": x1, "x2": x2, "x3": x3, "segment": cat, "label": (logit > 0).astype(int)})
    df.loc[rng.random(n) < 0.02, "x3"] = np.nan
    return df


def build_ddp_inputs(d: Path) -> dict[str, Path]:
    from mlpipeline.artifacts import write_parquet
    from mlpipeline.stages.preprocess import preprocess

    write_parquet(synthetic_frame(3000, seed=1), d / "train.parquet")
    write_parquet(synthetic_frame(600, seed=2), d / "validation.parquet")
    preprocess(d / "train.parquet", DATA_CFG, {}, {}, d / "transform", d / "preprocess_report.json")
    (d / "best_params.json").write_text(json.dumps(BEST_PARAMS))
    (d / "data.json").write_text(json.dumps(DATA_CFG))
    (d / "train.json").write_text(json.dumps(TRAIN_CFG))
    return {
        "dir": d,
        "train": d / "train.parquet",
        "validation": d / "validation.parquet",
        "transform": d / "transform",
        "params": d / "best_params.json",
        "data": d / "data.json",
        "train_config": d / "train.json",
    }
