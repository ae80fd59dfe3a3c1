"""Evaluate stage: validation + held-out test metrics, threshold chosen on validation, plots.

Scoring goes through the same ``conform`` → ``predict_from_estimator`` path as ``mlpipeline
predict`` and the KServe predictor, so the packaged model reproduces these numbers exactly.
Writes ``metrics.json`` (validation, test, threshold, curves) and ``signature.json`` for packaging.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mlpipeline.artifacts import atomic_write_json, atomic_write_text, load_verified_object, read_parquet
from mlpipeline.config import DataConfig, EvaluateConfig, ValidationConfig, parse_section
from mlpipeline.packaging import predict_from_estimator
from mlpipeline.scoring import choose_threshold, primary_metric, score_predictions
from mlpipeline.signature import ColumnSpec, Signature, conform, infer_inputs
from mlpipeline.stages.common import resolve_classes, xy
from mlpipeline.stages.train import MODEL_FILE


def build_signature(
    X: Any, dcfg: DataConfig, vcfg: ValidationConfig, classes: list[Any], positive: Any, threshold: float | None
) -> Signature:
    inputs = tuple(
        ColumnSpec(c.name, c.dtype, nullable=vcfg.columns[c.name].nullable if c.name in vcfg.columns else True, categories=c.categories)
        for c in infer_inputs(X)
    )
    if dcfg.task == "regression":
        outputs = ({"name": "prediction", "dtype": "float"},)
    else:
        outputs = ({"name": "prediction", "dtype": "str"},) + (
            ({"name": "probability", "dtype": "float"},) if len(classes) == 2 else tuple({"name": f"proba_{c}", "dtype": "float"} for c in classes)
        )
    return Signature(
        inputs=inputs, task=dcfg.task, target=dcfg.target, classes=tuple(classes),
        positive_class=positive, threshold=threshold, outputs=outputs,
    )


def _curves(y: np.ndarray, p: np.ndarray, positive: Any, max_points: int = 200) -> dict[str, Any]:
    from sklearn.metrics import precision_recall_curve, roc_curve

    yb = (y == positive).astype(int)
    fpr, tpr, thr = roc_curve(yb, p)
    prec, rec, _ = precision_recall_curve(yb, p)
    step = max(1, len(fpr) // max_points)
    step_pr = max(1, len(prec) // max_points)
    thr = np.where(np.isfinite(thr), thr, 1.0)
    return {
        "roc": {"fpr": fpr[::step].tolist(), "tpr": tpr[::step].tolist(), "thresholds": thr[::step].tolist()},
        "pr": {"precision": prec[::step_pr].tolist(), "recall": rec[::step_pr].tolist()},
    }


def _plots_html(result: dict[str, Any], task: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mlpipeline.stages.eda import fig_to_img, html_page

    t = result["test"]
    parts = [f"<h1>Evaluation: {result['target']}</h1>"]
    rows = "".join(
        f"<tr><td>{k}</td><td>{result['validation'].get(k, float('nan')):.4f}</td><td>{v:.4f}</td></tr>"
        for k, v in t.items()
        if isinstance(v, float)
    )
    parts.append(f"<h2>Metrics</h2><table><tr><th>metric</th><th>validation</th><th>test</th></tr>{rows}</table>")
    if result.get("threshold") is not None:
        parts.append(f"<p>Decision threshold chosen on validation ({result['threshold_strategy']}): <b>{result['threshold']:.4f}</b></p>")
    imgs = []
    if task == "classification" and "curves" in result:
        c = result["curves"]["test"]
        fig, ax = plt.subplots(figsize=(4.5, 4))
        ax.plot(c["roc"]["fpr"], c["roc"]["tpr"], label=f"AUC {t['roc_auc']:.3f}")
        ax.plot([0, 1], [0, 1], "k--", lw=0.7)
        ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (test)")
        ax.legend()
        imgs.append(fig_to_img(fig))
        fig, ax = plt.subplots(figsize=(4.5, 4))
        ax.plot(c["pr"]["recall"], c["pr"]["precision"], label=f"AP {t['pr_auc']:.3f}")
        ax.set(xlabel="recall", ylabel="precision", title="Precision-recall (test)")
        ax.legend()
        imgs.append(fig_to_img(fig))
        cal = t.get("calibration", [])
        fig, ax = plt.subplots(figsize=(4.5, 4))
        ax.plot([b["mean_predicted"] for b in cal], [b["fraction_positive"] for b in cal], "o-", label=f"ECE {t['ece']:.3f}")
        ax.plot([0, 1], [0, 1], "k--", lw=0.7)
        ax.set(xlabel="mean predicted probability", ylabel="fraction positive", title="Calibration (test)")
        ax.legend()
        imgs.append(fig_to_img(fig))
    if task == "classification":
        cm = t["confusion_matrix"]
        m = np.asarray(cm["matrix"])
        fig, ax = plt.subplots(figsize=(4.5, 4))
        ax.imshow(m, cmap="Blues")
        for (i, j), v in np.ndenumerate(m):
            ax.text(j, i, str(v), ha="center", va="center")
        ax.set_xticks(range(len(cm["labels"])), cm["labels"])
        ax.set_yticks(range(len(cm["labels"])), cm["labels"])
        ax.set(xlabel="predicted", ylabel="actual", title="Confusion matrix (test)")
        imgs.append(fig_to_img(fig))
    else:
        pr = result["regression_points"]
        fig, ax = plt.subplots(figsize=(4.5, 4))
        ax.scatter(pr["actual"], pr["predicted"], s=4, alpha=0.4)
        lo, hi = min(pr["actual"]), max(pr["actual"])
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.7)
        ax.set(xlabel="actual", ylabel="predicted", title="Predicted vs actual (test)")
        imgs.append(fig_to_img(fig))
    parts.append("<div class='grid'>" + "".join(f"<div>{i}</div>" for i in imgs) + "</div>")
    return html_page("Evaluation", "\n".join(parts))


def evaluate(
    model_dir: str | Path,
    validation_path: str | Path,
    test_path: str | Path,
    data_cfg: dict[str, Any] | DataConfig,
    evaluate_cfg: dict[str, Any] | EvaluateConfig,
    validation_cfg: dict[str, Any] | ValidationConfig,
    out_metrics: str | Path,
    out_signature: str | Path,
    out_html: str | Path,
) -> dict[str, Any]:
    dcfg = parse_section(DataConfig, data_cfg, "data")
    ecfg = parse_section(EvaluateConfig, evaluate_cfg, "evaluate")
    vcfg = parse_section(ValidationConfig, validation_cfg, "validation")
    model = load_verified_object(model_dir, MODEL_FILE)
    X_va, y_va = xy(read_parquet(validation_path), dcfg)
    X_te, y_te = xy(read_parquet(test_path), dcfg)
    classes: list[Any] = []
    positive = None
    if dcfg.task == "classification":
        classes = [c.item() if hasattr(c, "item") else c for c in model.classes_]  # the estimator's order
        if len(classes) == 2:
            positive = resolve_classes(np.asarray(y_va), dcfg)[1]
    # threshold on validation, with a provisional signature
    sig = build_signature(X_va, dcfg, vcfg, classes, positive, 0.5 if len(classes) == 2 else None)
    scored_va = predict_from_estimator(model, conform(X_va, sig), sig)
    threshold = None
    if dcfg.task == "classification" and len(classes) == 2:
        yb = (np.asarray(y_va, dtype=object) == positive).astype(int)
        threshold = choose_threshold(yb, scored_va["probability"], ecfg.threshold_strategy, ecfg.fixed_threshold)
    sig = build_signature(X_va, dcfg, vcfg, classes, positive, threshold)
    scored_va = predict_from_estimator(model, conform(X_va, sig), sig)
    scored_te = predict_from_estimator(model, conform(X_te, sig), sig)
    result: dict[str, Any] = {
        "target": dcfg.target,
        "task": dcfg.task,
        "primary_metric": primary_metric(dcfg.task, len(classes)),
        "threshold": threshold,
        "threshold_strategy": ecfg.threshold_strategy,
        "validation": score_predictions(y_va, scored_va, sig, ecfg.calibration_bins),
        "test": score_predictions(y_te, scored_te, sig, ecfg.calibration_bins),
    }
    if threshold is not None:
        result["curves"] = {"test": _curves(np.asarray(y_te, dtype=object), scored_te["probability"], positive)}
    if dcfg.task == "regression":
        k = min(2000, len(y_te))
        result["regression_points"] = {"actual": np.asarray(y_te)[:k].tolist(), "predicted": scored_te["prediction"][:k].tolist()}
    atomic_write_json(out_signature, sig.to_dict())
    atomic_write_text(out_html, _plots_html(result, dcfg.task))
    atomic_write_json(out_metrics, result)
    return result
