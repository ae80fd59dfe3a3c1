from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlpipeline.config import FeaturesConfig, PreprocessConfig
from mlpipeline.errors import DataError
from mlpipeline.models.transforms import (
    AsCategory,
    DeriveFeatures,
    OutlierClipper,
    RollingMedianDenoiser,
    build_preprocessor,
)


def test_derive_ratio_product_log_and_date_parts():
    df = pd.DataFrame({"a": [1.0, 4.0, 3.0], "b": [2.0, 0.0, None], "t": pd.to_datetime(["2024-01-31 10:00", "2024-06-01 00:00", "2025-12-24 23:00"])})
    specs = (
        {"name": "r", "kind": "ratio", "columns": ("a", "b"), "parts": ()},
        {"name": "p", "kind": "product", "columns": ("a", "b"), "parts": ()},
        {"name": "l", "kind": "log1p", "columns": ("a",), "parts": ()},
        {"name": "t", "kind": "date_parts", "columns": ("t",), "parts": ("month", "dayofweek", "hour")},
    )
    out = DeriveFeatures(specs).fit(df).transform(df)
    assert out["r"].tolist()[0] == 0.5 and np.isnan(out["r"][1]) and np.isnan(out["r"][2])  # x/0 -> NaN, not inf
    assert out["p"][0] == 2.0 and out["l"][1] == pytest.approx(np.log(5))
    assert out["t_month"].tolist() == [1, 6, 12] and out["t_hour"].tolist() == [10, 0, 23]
    assert "t" not in out.columns  # raw datetimes are not fed to the model


def test_derive_unknown_column():
    with pytest.raises(DataError, match="features.derived uses column.*zz"):
        DeriveFeatures(({"name": "r", "kind": "ratio", "columns": ("a", "zz"), "parts": ()},)).fit(pd.DataFrame({"a": [1]}))


def test_iqr_clip_learns_bounds_on_train_and_spares_binary_columns():
    train = np.array([[1, 0], [2, 1], [3, 0], [4, 1], [100, 0]], dtype=float)
    clip = OutlierClipper("iqr_clip", 1.5).fit(train)
    out = clip.transform(np.array([[1000.0, 1.0], [-1000.0, 0.0]]))
    q1, q3 = 2, 4
    assert out[0, 0] == q3 + 1.5 * (q3 - q1) and out[1, 0] == q1 - 1.5 * (q3 - q1)
    assert out[:, 1].tolist() == [1.0, 0.0]


def test_winsorize_quantiles():
    x = np.arange(101, dtype=float).reshape(-1, 1)
    clip = OutlierClipper("winsorize", quantiles=(0.05, 0.95)).fit(x)
    assert clip.transform(np.array([[-5.0], [500.0]])).ravel().tolist() == [5.0, 95.0]


def test_rolling_median_denoiser_per_group_in_time_order():
    df = pd.DataFrame(
        {"m": ["a"] * 4 + ["b"] * 4, "t": [3, 0, 1, 2] * 2, "v": [100.0, 1.0, 2.0, 3.0, 10.0, 10.0, 10.0, 10.0]}
    )
    out = RollingMedianDenoiser(("v",), window=3, group_by="m", order_by="t").fit(df).transform(df)
    # machine a in time order: 1, 2, 3, 100 -> causal medians 1, 1.5, 2, 3 (the spike is removed)
    assert out.loc[[1, 2, 3, 0], "v"].tolist() == [1.0, 1.5, 2.0, 3.0]
    assert out.loc[df.m == "b", "v"].tolist() == [10.0] * 4


def test_as_category_makes_none_and_nan_missing():
    out = AsCategory().fit(np.array([["x"], [None]], dtype=object)).transform(np.array([[None], [float("nan")], [3]], dtype=object))
    assert np.isnan(out[0, 0]) and np.isnan(out[1, 0]) and out[2, 0] == "3"


def test_preprocessor_handles_unseen_categories_missing_values_and_pickles(churn_df):
    import joblib

    X = churn_df.drop(columns=["churn"])
    pipe = build_preprocessor(PreprocessConfig(), FeaturesConfig(), X).fit(X)
    Xt = pipe.transform(X)
    assert not np.isnan(Xt).any()
    odd = X.head(3).copy()
    odd.loc[0, "contract"] = "Weekly"  # unseen category
    odd.loc[1, "tenure"] = np.nan
    odd.loc[2, "payment_method"] = None
    out = pipe.transform(odd)
    assert out.shape == (3, Xt.shape[1]) and not np.isnan(out).any()
    import io

    buf = io.BytesIO()
    joblib.dump(pipe, buf)
    buf.seek(0)
    assert np.array_equal(joblib.load(buf).transform(X.head(50)), pipe.transform(X.head(50)))
