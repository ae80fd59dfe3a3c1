"""Fitted preprocessing that ships inside the model: derive → denoise → clean → select.

All classes are plain sklearn transformers defined at module level, so the pickled pipeline loads
anywhere ``mlpipeline`` is installed (the serving image) and applies exactly the training transform.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, OrdinalEncoder, RobustScaler, StandardScaler

from mlpipeline.config import FeaturesConfig, PreprocessConfig
from mlpipeline.errors import DataError
from mlpipeline.signature import dtype_of


class DeriveFeatures(TransformerMixin, BaseEstimator):
    """Config-declared engineered columns (stateless): ratio, product, difference, log1p, date parts.

    Datetime columns are dropped afterwards (their information is kept only through date parts).
    """

    def __init__(self, specs: tuple[dict[str, Any], ...] = ()):
        self.specs = specs

    def fit(self, X: pd.DataFrame, y: Any = None) -> DeriveFeatures:
        missing = sorted({c for s in self.specs for c in s["columns"] if c not in X.columns})
        if missing:
            raise DataError(f"features.derived uses column(s) not in the data: {', '.join(missing)}")
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        out = X.copy()
        with np.errstate(divide="ignore", invalid="ignore"):
            for s in self.specs:
                kind, cols, name = s["kind"], s["columns"], s["name"]
                if kind == "date_parts":
                    ts = pd.to_datetime(out[cols[0]], errors="coerce")
                    for part in s["parts"]:
                        out[f"{name}_{part}"] = getattr(ts.dt, part).astype("float64")
                    continue
                a = pd.to_numeric(out[cols[0]], errors="coerce").astype("float64")
                if kind == "log1p":
                    out[name] = np.log1p(a.clip(lower=0))
                    continue
                b = pd.to_numeric(out[cols[1]], errors="coerce").astype("float64")
                if kind == "ratio":
                    out[name] = (a / b).replace([np.inf, -np.inf], np.nan)
                elif kind == "product":
                    out[name] = a * b
                elif kind == "difference":
                    out[name] = a - b
        dt_cols = [c for c in out.columns if dtype_of(out[c]) == "datetime"]
        return out.drop(columns=dt_cols)


class RollingMedianDenoiser(TransformerMixin, BaseEstimator):
    """Causal rolling median over time-ordered signals, per group (e.g. per machine).

    Applied to the rows it is given, in ``order_by`` order: at serving, send a window of rows per
    entity to get the same smoothing as in training; single rows pass through unchanged.
    """

    def __init__(self, columns: tuple[str, ...] = (), window: int = 5, group_by: str | None = None, order_by: str | None = None):
        self.columns = columns
        self.window = window
        self.group_by = group_by
        self.order_by = order_by

    def fit(self, X: pd.DataFrame, y: Any = None) -> RollingMedianDenoiser:
        need = list(self.columns) + [c for c in (self.group_by, self.order_by) if c]
        missing = [c for c in need if c not in X.columns]
        if missing:
            raise DataError(f"preprocess.denoise uses column(s) not in the data: {', '.join(missing)}")
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        if not self.columns:
            return X
        out = X.copy()
        order = out.sort_values(self.order_by, kind="stable").index if self.order_by else out.index
        frame = out.loc[order, list(self.columns)].astype("float64")
        if self.group_by:
            keys = out.loc[order, self.group_by]
            smoothed = frame.groupby(keys.to_numpy(), sort=False).transform(
                lambda s: s.rolling(self.window, min_periods=1).median()
            )
        else:
            smoothed = frame.rolling(self.window, min_periods=1).median()
        out.loc[order, list(self.columns)] = smoothed.to_numpy()
        return out


class OutlierClipper(TransformerMixin, BaseEstimator):
    """Clip numeric columns to bounds learnt on training data: IQR fences or quantiles (winsorize)."""

    def __init__(self, method: str = "iqr_clip", iqr_factor: float = 1.5, quantiles: tuple[float, float] = (0.01, 0.99)):
        self.method = method
        self.iqr_factor = iqr_factor
        self.quantiles = quantiles

    def fit(self, X: Any, y: Any = None) -> OutlierClipper:
        A = np.asarray(X, dtype="float64")
        if self.method == "iqr_clip":
            q1, q3 = np.nanpercentile(A, [25, 75], axis=0)
            iqr = q3 - q1
            self.lower_, self.upper_ = q1 - self.iqr_factor * iqr, q3 + self.iqr_factor * iqr
            # binary / near-constant columns have iqr 0: do not clip them to a point
            flat = iqr == 0
            self.lower_[flat], self.upper_[flat] = -np.inf, np.inf
        elif self.method == "winsorize":
            self.lower_, self.upper_ = np.nanquantile(A, list(self.quantiles), axis=0)
        else:
            self.lower_ = np.full(A.shape[1], -np.inf)
            self.upper_ = np.full(A.shape[1], np.inf)
        self.n_features_in_ = A.shape[1]
        return self

    def transform(self, X: Any) -> np.ndarray:
        return np.clip(np.asarray(X, dtype="float64"), self.lower_, self.upper_)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.asarray(input_features if input_features is not None else [f"x{i}" for i in range(self.n_features_in_)], dtype=object)


class AsCategory(TransformerMixin, BaseEstimator):
    """Make categorical columns uniform: strings, with missing (None/NaN) as np.nan."""

    def fit(self, X: Any, y: Any = None) -> AsCategory:
        self.n_features_in_ = np.asarray(X).shape[1]
        return self

    def transform(self, X: Any) -> np.ndarray:
        A = np.asarray(X, dtype=object)
        out = np.empty(A.shape, dtype=object)
        for idx, v in np.ndenumerate(A):
            out[idx] = np.nan if v is None or (isinstance(v, float) and v != v) else str(v)
        return out

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.asarray(input_features, dtype=object)


_SCALERS = {"standard": StandardScaler, "robust": RobustScaler, "minmax": MinMaxScaler}


def split_columns(X: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Numeric (int/float/bool) and categorical (str) columns of a derived frame."""
    numeric, categorical = [], []
    for c in X.columns:
        kind = dtype_of(X[c])
        if kind in ("int", "float", "bool"):
            numeric.append(c)
        elif kind == "str":
            categorical.append(c)
    return numeric, categorical


def build_text_branch(cfg: PreprocessConfig) -> Pipeline:
    from mlpipeline.models.text import SentenceEmbedder, TextCleaner

    if cfg.text_embedding == "minilm":
        return Pipeline([("clean", TextCleaner()), ("embed", SentenceEmbedder())])
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    return Pipeline(
        [
            ("clean", TextCleaner()),
            ("tfidf", TfidfVectorizer(ngram_range=(1, 2), min_df=2, max_features=50_000, sublinear_tf=True)),
            ("svd", TruncatedSVD(n_components=128, random_state=0)),
        ]
    )


def build_cleaner(cfg: PreprocessConfig, numeric: list[str], categorical: list[str]) -> ColumnTransformer:
    num_steps: list[tuple[str, Any]] = [
        ("impute", SimpleImputer(strategy=cfg.numeric_imputer, add_indicator=cfg.add_missing_indicators, keep_empty_features=True)),
    ]
    if cfg.outliers.method != "none":
        num_steps.append(("outliers", OutlierClipper(cfg.outliers.method, cfg.outliers.iqr_factor, cfg.outliers.quantiles)))
    if cfg.scaler != "none":
        num_steps.append(("scale", _SCALERS[cfg.scaler]()))
    if cfg.encoder == "onehot":
        encoder: Any = OneHotEncoder(handle_unknown="infrequent_if_exist", max_categories=cfg.max_categories, sparse_output=False)
    else:
        encoder = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-1)
    cat_steps = [
        ("as_category", AsCategory()),
        ("impute", SimpleImputer(strategy=cfg.categorical_imputer, fill_value="__missing__", keep_empty_features=True)),
        ("encode", encoder),
    ]
    transformers: list[tuple[str, Any, Any]] = [(f"text_{c}", build_text_branch(cfg), [c]) for c in cfg.text_columns]
    if numeric:
        transformers.append(("num", Pipeline(num_steps), numeric))
    if categorical:
        transformers.append(("cat", Pipeline(cat_steps), categorical))
    if not transformers:
        raise DataError("no usable feature columns (need numeric, boolean or string columns besides the target)")
    return ColumnTransformer(transformers, remainder="drop", verbose_feature_names_out=True)


def build_preprocessor(pcfg: PreprocessConfig, fcfg: FeaturesConfig, X_train: pd.DataFrame) -> Pipeline:
    """Unfitted derive → denoise → clean pipeline whose column roles come from the training frame."""
    derive = DeriveFeatures(tuple(d.model_dump() for d in fcfg.derived))
    derived = derive.fit(X_train).transform(X_train.head(50))
    missing = [c for c in pcfg.text_columns if c not in derived.columns]
    if missing:
        raise DataError(f"preprocess.text_columns names column(s) not in the data: {', '.join(missing)}")
    numeric, categorical = split_columns(derived.drop(columns=list(pcfg.text_columns)))
    steps: list[tuple[str, Any]] = [("derive", derive)]
    if pcfg.denoise and pcfg.denoise.columns:
        d = pcfg.denoise
        steps.append(("denoise", RollingMedianDenoiser(tuple(d.columns), d.window, d.group_by, d.order_by)))
    steps.append(("clean", build_cleaner(pcfg, numeric, categorical)))
    return Pipeline(steps)


def build_selector(fcfg: FeaturesConfig, task: str, n_features: int, seed: int) -> Any:
    from sklearn.feature_selection import (
        SelectFromModel,
        SelectKBest,
        mutual_info_classif,
        mutual_info_regression,
    )

    sel = fcfg.selection
    k = min(sel.k, n_features)
    if sel.method == "none" or k >= n_features:
        return None
    if sel.method == "mutual_info":
        score = mutual_info_classif if task == "classification" else mutual_info_regression
        return SelectKBest(partial(score, random_state=seed), k=k)
    from sklearn.ensemble import ExtraTreesClassifier, ExtraTreesRegressor

    forest = (ExtraTreesClassifier if task == "classification" else ExtraTreesRegressor)(
        n_estimators=200, random_state=seed, n_jobs=1, min_samples_leaf=5
    )
    return SelectFromModel(forest, max_features=k, threshold=-np.inf)
