"""Small helpers shared by the modelling stages."""

from __future__ import annotations

from typing import Any

import numpy as np

from mlpipeline.config import DataConfig
from mlpipeline.errors import DataError, TrainingError


def xy(df: Any, dcfg: DataConfig) -> tuple[Any, np.ndarray]:
    """Feature frame (every column but the target) and target array."""
    if dcfg.target not in df.columns:
        raise DataError(f"target column {dcfg.target!r} not in the data")
    y = df[dcfg.target].to_numpy()
    if dcfg.task == "regression":
        y = y.astype(np.float64)
    return df.drop(columns=[dcfg.target]), y


def resolve_classes(y: np.ndarray, dcfg: DataConfig) -> tuple[list[Any], Any]:
    """Sorted class labels (as python scalars) and the positive class (binary: config or minority)."""
    values, counts = np.unique(y, return_counts=True)
    classes = [v.item() if hasattr(v, "item") else v for v in values]
    if len(classes) < 2:
        raise TrainingError(f"target {dcfg.target!r} has a single class {classes}; cannot train a classifier")
    if len(classes) != 2:
        return classes, None
    if dcfg.positive_class is not None:
        matches = [c for c in classes if c == dcfg.positive_class or str(c) == str(dcfg.positive_class)]
        if not matches:
            raise DataError(f"data.positive_class {dcfg.positive_class!r} is not a target value {classes}")
        return classes, matches[0]
    return classes, classes[int(np.argmin(counts))]
