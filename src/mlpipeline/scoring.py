"""Metric computation shared by tune, evaluate and ``mlpipeline predict`` (one definition, no skew)."""

from __future__ import annotations

from typing import Any

import numpy as np

from mlpipeline.errors import DataError

HIGHER_IS_BETTER = {
    "roc_auc": True, "pr_auc": True, "f1": True, "f1_macro": True, "accuracy": True, "precision": True,
    "recall": True, "log_loss": False, "brier": False, "ece": False, "rmse": False, "mae": False,
    "mape": False, "r2": True,
}


def primary_metric(task: str, n_classes: int, override: str | None = None) -> str:
    if override:
        if override not in HIGHER_IS_BETTER:
            from mlpipeline.errors import ConfigError

            raise ConfigError(f"tune.metric: unknown metric {override!r}; choose from {', '.join(sorted(HIGHER_IS_BETTER))}")
        return override
    if task == "regression":
        return "rmse"
    return "roc_auc" if n_classes == 2 else "f1_macro"


def choose_threshold(y_bin: np.ndarray, p: np.ndarray, strategy: str, fixed: float = 0.5) -> float:
    """Decision threshold for the positive class, chosen on validation data."""
    from sklearn.metrics import precision_recall_curve, roc_curve

    if strategy == "fixed":
        return float(fixed)
    if strategy == "youden":
        fpr, tpr, thr = roc_curve(y_bin, p)
        i = int(np.argmax(tpr - fpr))
        return float(min(max(thr[i], 1e-6), 1 - 1e-6))
    prec, rec, thr = precision_recall_curve(y_bin, p)
    f1 = 2 * prec[:-1] * rec[:-1] / np.clip(prec[:-1] + rec[:-1], 1e-12, None)
    return float(thr[int(np.argmax(f1))])


def expected_calibration_error(y_bin: np.ndarray, p: np.ndarray, bins: int = 10) -> tuple[float, list[dict[str, float]]]:
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    table, ece = [], 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            conf, acc = float(p[m].mean()), float(y_bin[m].mean())
            ece += m.mean() * abs(conf - acc)
            table.append({"bin": b, "mean_predicted": conf, "fraction_positive": acc, "count": int(m.sum())})
    return float(ece), table


def classification_metrics(
    y_true: Any, proba: np.ndarray, classes: list[Any], positive_class: Any = None, threshold: float | None = None, bins: int = 10
) -> dict[str, Any]:
    """Metrics for class probabilities ``proba`` (n × len(classes)); binary uses ``threshold``."""
    from sklearn.metrics import (
        accuracy_score,
        average_precision_score,
        brier_score_loss,
        confusion_matrix,
        f1_score,
        log_loss,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    y = np.asarray(y_true, dtype=object)
    proba = np.clip(np.asarray(proba, dtype=np.float64), 0.0, 1.0)
    out: dict[str, Any] = {"rows": int(len(y))}
    if len(classes) == 2:
        pos = classes.index(positive_class)
        p = proba[:, pos]
        yb = (y == positive_class).astype(int)
        thr = 0.5 if threshold is None else threshold
        pred_b = (p >= thr).astype(int)
        labels = [classes[1 - pos], classes[pos]]
        out.update(
            roc_auc=float(roc_auc_score(yb, p)) if len(set(yb)) == 2 else float("nan"),
            pr_auc=float(average_precision_score(yb, p)) if yb.any() else float("nan"),
            f1=float(f1_score(yb, pred_b, zero_division=0)),
            precision=float(precision_score(yb, pred_b, zero_division=0)),
            recall=float(recall_score(yb, pred_b, zero_division=0)),
            accuracy=float(accuracy_score(yb, pred_b)),
            log_loss=float(log_loss(yb, p, labels=[0, 1])),
            brier=float(brier_score_loss(yb, p)),
            threshold=float(thr),
            positive_rate=float(yb.mean()),
        )
        out["ece"], out["calibration"] = expected_calibration_error(yb, p, bins)
        out["confusion_matrix"] = {"labels": [str(v) for v in labels], "matrix": confusion_matrix(yb, pred_b, labels=[0, 1]).tolist()}
    else:
        # Score on class indices in the model's own column order: string forms of int labels sort
        # differently ("10" < "2") and would misalign probability columns.
        index = {str(c): i for i, c in enumerate(classes)}
        y_idx = np.array([index.get(str(v), -1) for v in y])
        if (y_idx < 0).any():
            unknown = sorted({str(v) for v in y if str(v) not in index})
            raise DataError(f"target values not seen in training: {unknown[:5]}")
        pred_idx = proba.argmax(axis=1)
        k = list(range(len(classes)))
        out.update(
            accuracy=float(accuracy_score(y_idx, pred_idx)),
            f1_macro=float(f1_score(y_idx, pred_idx, average="macro", labels=k, zero_division=0)),
            log_loss=float(log_loss(y_idx, proba, labels=k)),
        )
        try:
            out["roc_auc"] = float(roc_auc_score(y_idx, proba, multi_class="ovr", labels=k))
        except ValueError:
            out["roc_auc"] = float("nan")
        out["confusion_matrix"] = {
            "labels": [str(c) for c in classes],
            "matrix": confusion_matrix(y_idx, pred_idx, labels=k).tolist(),
        }
    return out


def regression_metrics(y_true: Any, pred: np.ndarray) -> dict[str, Any]:
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    y = np.asarray(y_true, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    nz = np.abs(y) > 1e-12
    return {
        "rows": int(len(y)),
        "rmse": float(np.sqrt(mean_squared_error(y, pred))),
        "mae": float(mean_absolute_error(y, pred)),
        "mape": float(np.mean(np.abs((y[nz] - pred[nz]) / y[nz]))) if nz.any() else float("nan"),
        "r2": float(r2_score(y, pred)),
    }


def score_predictions(y_true: Any, scored: dict[str, Any], signature: Any, bins: int = 10) -> dict[str, Any]:
    """Metrics for the output of :func:`mlpipeline.packaging.predict_from_estimator`."""
    if signature.task == "regression":
        return regression_metrics(y_true, scored["prediction"])
    return classification_metrics(
        y_true, scored["probabilities"], list(signature.classes), signature.positive_class, signature.threshold, bins
    )
