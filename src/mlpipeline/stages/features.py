"""Features stage: feature selection on top of the fitted preprocessing (mutual information or
model-based, top-k), recorded with per-feature scores; emits the final fitted transform."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mlpipeline.artifacts import atomic_write_json, load_verified_object, read_parquet, save_verified_object
from mlpipeline.config import DataConfig, FeaturesConfig, parse_section
from mlpipeline.models.transforms import build_selector
from mlpipeline.stages.common import xy
from mlpipeline.stages.preprocess import TRANSFORM_FILE


def features(
    train_path: str | Path,
    transform_dir: str | Path,
    data_cfg: dict[str, Any] | DataConfig,
    features_cfg: dict[str, Any] | FeaturesConfig,
    out_transform: str | Path,
    out_report: str | Path,
) -> dict[str, Any]:
    from sklearn.pipeline import Pipeline

    dcfg = parse_section(DataConfig, data_cfg, "data")
    fcfg = parse_section(FeaturesConfig, features_cfg, "features")
    pre = load_verified_object(transform_dir, TRANSFORM_FILE)
    X, y = xy(read_parquet(train_path), dcfg)
    Xt = pre.transform(X)
    names = [str(n) for n in pre.named_steps["clean"].get_feature_names_out()]
    selector = build_selector(fcfg, dcfg.task, Xt.shape[1], dcfg.seed)
    report: dict[str, Any] = {"method": fcfg.selection.method, "k": fcfg.selection.k, "n_input_features": len(names)}
    if selector is None:
        final = pre
        report.update(selected=names, scores=[])
    else:
        y_fit = y if dcfg.task == "regression" else y.astype(str)
        selector.fit(Xt, y_fit)
        mask = selector.get_support()
        if hasattr(selector, "scores_"):
            scores = np.nan_to_num(np.asarray(selector.scores_, dtype=float))
        else:
            scores = np.asarray(selector.estimator_.feature_importances_, dtype=float)
        final = Pipeline([*pre.steps, ("select", selector)])
        report.update(
            selected=[n for n, m in zip(names, mask, strict=True) if m],
            dropped=[n for n, m in zip(names, mask, strict=True) if not m],
            scores=[{"feature": n, "score": round(float(s), 6)} for n, s in sorted(zip(names, scores, strict=True), key=lambda t: -t[1])],
        )
    report["n_selected"] = len(report["selected"])
    Path(out_transform).mkdir(parents=True, exist_ok=True)
    report["sha256"] = save_verified_object(final, out_transform, TRANSFORM_FILE)
    atomic_write_json(out_report, report)
    return report
