"""Preprocess stage: fit derive → denoise → clean (impute, outliers, scale, encode) on the train split.

The output is ONE fitted sklearn transformer; the features stage appends selection to it and the
train stage puts the estimator behind it, so serving runs exactly this transform.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlpipeline.artifacts import atomic_write_json, read_parquet, save_verified_object
from mlpipeline.config import DataConfig, FeaturesConfig, PreprocessConfig, parse_section
from mlpipeline.models.transforms import build_preprocessor, split_columns
from mlpipeline.stages.common import xy

TRANSFORM_FILE = "transform.joblib"


def preprocess(
    train_path: str | Path,
    data_cfg: dict[str, Any] | DataConfig,
    preprocess_cfg: dict[str, Any] | PreprocessConfig,
    features_cfg: dict[str, Any] | FeaturesConfig,
    out_transform: str | Path,
    out_report: str | Path,
) -> dict[str, Any]:
    dcfg = parse_section(DataConfig, data_cfg, "data")
    pcfg = parse_section(PreprocessConfig, preprocess_cfg, "preprocess")
    fcfg = parse_section(FeaturesConfig, features_cfg, "features")
    X, y = xy(read_parquet(train_path), dcfg)
    pipe = build_preprocessor(pcfg, fcfg, X)
    Xt = pipe.fit_transform(X, y)
    derived = pipe.named_steps["derive"].transform(X.head(50))
    numeric, categorical = split_columns(derived.drop(columns=list(pcfg.text_columns)))
    clean = pipe.named_steps["clean"]
    report = {
        "input_columns": list(map(str, X.columns)),
        "derived_columns": [d.name for d in fcfg.derived],
        "numeric_columns": numeric,
        "categorical_columns": categorical,
        "text_columns": list(pcfg.text_columns),
        "text_embedding": pcfg.text_embedding if pcfg.text_columns else None,
        "output_features": [str(n) for n in clean.get_feature_names_out()],
        "n_output_features": int(Xt.shape[1]),
        "outliers": pcfg.outliers.model_dump(),
        "scaler": pcfg.scaler,
        "encoder": pcfg.encoder,
        "denoise": pcfg.denoise.model_dump() if pcfg.denoise else None,
    }
    Path(out_transform).mkdir(parents=True, exist_ok=True)
    report["sha256"] = save_verified_object(pipe, out_transform, TRANSFORM_FILE)
    atomic_write_json(out_report, report)
    return report
