"""Model families, their hyper-parameter search space (as data), and estimator construction.

The search space is plain data so the same definition drives the local Optuna tuner and the
Katib ``Experiment`` generated for tuning at scale on a cluster.
"""

from __future__ import annotations

from typing import Any

from mlpipeline.errors import ConfigError

# name -> {"type": float|int|categorical, "low", "high", "log", "choices"}
SEARCH_SPACE: dict[str, dict[str, dict[str, Any]]] = {
    "logistic_regression": {
        "C": {"type": "float", "low": 1e-3, "high": 100.0, "log": True},
    },
    "ridge": {
        "alpha": {"type": "float", "low": 1e-3, "high": 1e3, "log": True},
    },
    "gradient_boosting": {
        "learning_rate": {"type": "float", "low": 0.01, "high": 0.3, "log": True},
        "max_leaf_nodes": {"type": "int", "low": 4, "high": 64, "log": True},
        "min_samples_leaf": {"type": "int", "low": 10, "high": 200, "log": True},
        "l2_regularization": {"type": "float", "low": 1e-6, "high": 1.0, "log": True},
        "max_iter": {"type": "int", "low": 50, "high": 400, "log": False},
    },
    "random_forest": {
        "n_estimators": {"type": "int", "low": 100, "high": 400, "log": False},
        "max_depth": {"type": "int", "low": 3, "high": 20, "log": False},
        "min_samples_leaf": {"type": "int", "low": 1, "high": 30, "log": True},
        "max_features": {"type": "float", "low": 0.2, "high": 1.0, "log": False},
    },
    "torch_mlp": {
        "hidden": {"type": "int", "low": 16, "high": 256, "log": True},
        "layers": {"type": "int", "low": 1, "high": 3, "log": False},
        "dropout": {"type": "float", "low": 0.0, "high": 0.5, "log": False},
        "lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
        "weight_decay": {"type": "float", "low": 1e-6, "high": 1e-2, "log": True},
    },
}

FAMILIES_BY_TASK = {
    "classification": ("logistic_regression", "gradient_boosting", "random_forest", "torch_mlp"),
    "regression": ("ridge", "gradient_boosting", "random_forest", "torch_mlp"),
}


def check_families(families: tuple[str, ...], task: str) -> None:
    bad = [f for f in families if f not in FAMILIES_BY_TASK[task]]
    if bad:
        raise ConfigError(f"tune.families: {', '.join(bad)} not available for {task}; choose from {', '.join(FAMILIES_BY_TASK[task])}")


def make_estimator(family: str, params: dict[str, Any], task: str, seed: int, torch_cfg: dict[str, Any] | None = None) -> Any:
    """A fresh, unfitted estimator for ``family`` with ``params`` (seeded, single-threaded where it matters)."""
    check_families((family,), task)
    p = dict(params)
    clf = task == "classification"
    if family == "logistic_regression":
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=p.get("C", 1.0), max_iter=2000, random_state=seed)
    if family == "ridge":
        from sklearn.linear_model import Ridge

        return Ridge(alpha=p.get("alpha", 1.0), random_state=seed)
    if family == "gradient_boosting":
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

        cls = HistGradientBoostingClassifier if clf else HistGradientBoostingRegressor
        return cls(early_stopping=True, validation_fraction=0.1, n_iter_no_change=20, random_state=seed, **p)
    if family == "random_forest":
        from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

        cls = RandomForestClassifier if clf else RandomForestRegressor
        return cls(random_state=seed, n_jobs=-1, **p)
    if family == "torch_mlp":
        from mlpipeline.models.torch_mlp import TorchMLPClassifier, TorchMLPRegressor

        cls = TorchMLPClassifier if clf else TorchMLPRegressor
        return cls(random_state=seed, **(torch_cfg or {}), **p)
    raise ConfigError(f"unknown model family {family!r}")  # unreachable after check_families


def suggest(trial: Any, family: str) -> dict[str, Any]:
    """Draw one parameter set for ``family`` from an Optuna trial (names prefixed by family)."""
    out: dict[str, Any] = {}
    for name, spec in SEARCH_SPACE[family].items():
        key = f"{family}.{name}"
        if spec["type"] == "float":
            out[name] = trial.suggest_float(key, spec["low"], spec["high"], log=spec.get("log", False))
        elif spec["type"] == "int":
            out[name] = trial.suggest_int(key, spec["low"], spec["high"], log=spec.get("log", False))
        else:
            out[name] = trial.suggest_categorical(key, spec["choices"])
    return out


def training_curve(estimator: Any) -> list[dict[str, float]]:
    """Per-iteration losses/scores the estimator recorded, in one shape for every family."""
    if hasattr(estimator, "history_"):
        return list(estimator.history_)
    if hasattr(estimator, "train_score_") and len(getattr(estimator, "train_score_", [])):
        val = getattr(estimator, "validation_score_", [])
        return [
            {"epoch": i + 1, "train_score": float(t), **({"val_score": float(val[i])} if i < len(val) else {})}
            for i, t in enumerate(estimator.train_score_)
        ]
    return []
