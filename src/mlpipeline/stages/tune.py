"""Tune stage: one seeded Optuna study across model families, scored on the validation split.

The fitted transform is applied once to train and validation; each trial fits only the estimator.
Outputs: best family + params (JSON) and the full trial table (CSV).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from mlpipeline.artifacts import atomic_path, atomic_write_json, load_verified_object, read_parquet
from mlpipeline.config import DataConfig, TrainConfig, TuneConfig, parse_section
from mlpipeline.models.estimators import check_families, make_estimator, suggest
from mlpipeline.packaging import predict_from_estimator
from mlpipeline.scoring import HIGHER_IS_BETTER, primary_metric, score_predictions
from mlpipeline.signature import ColumnSpec, Signature
from mlpipeline.stages.common import resolve_classes, xy
from mlpipeline.stages.preprocess import TRANSFORM_FILE


def _score_signature(dcfg: DataConfig, classes: list[Any], positive: Any) -> Signature:
    """A signature carrying only what scoring needs (task, classes, positive class, 0.5 threshold)."""
    return Signature(
        inputs=(ColumnSpec("x", "float"),), task=dcfg.task, target=dcfg.target,
        classes=tuple(classes), positive_class=positive, threshold=0.5 if positive is not None else None,
    )


def tune(
    train_path: str | Path,
    validation_path: str | Path,
    transform_dir: str | Path,
    data_cfg: dict[str, Any] | DataConfig,
    tune_cfg: dict[str, Any] | TuneConfig,
    train_cfg: dict[str, Any] | TrainConfig,
    out_best: str | Path,
    out_trials: str | Path,
) -> dict[str, Any]:
    import optuna

    dcfg = parse_section(DataConfig, data_cfg, "data")
    tcfg = parse_section(TuneConfig, tune_cfg, "tune")
    trcfg = parse_section(TrainConfig, train_cfg, "train")
    check_families(tcfg.families, dcfg.task)
    transform = load_verified_object(transform_dir, TRANSFORM_FILE)
    X_tr, y_tr = xy(read_parquet(train_path), dcfg)
    X_va, y_va = xy(read_parquet(validation_path), dcfg)
    Xt_tr, Xt_va = transform.transform(X_tr), transform.transform(X_va)
    classes, positive = (resolve_classes(y_tr, dcfg) if dcfg.task == "classification" else ([], None))
    metric = primary_metric(dcfg.task, len(classes), tcfg.metric)
    higher = HIGHER_IS_BETTER[metric]
    sig = _score_signature(dcfg, classes, positive)
    torch_cfg = {k: v for k, v in trcfg.torch.model_dump().items() if k in ("max_epochs", "batch_size", "patience", "mixed_precision")}

    def objective(trial: Any) -> float:
        family = trial.suggest_categorical("family", list(tcfg.families))
        params = suggest(trial, family)
        est = make_estimator(family, params, dcfg.task, tcfg.seed, torch_cfg)
        t0 = time.perf_counter()
        est.fit(Xt_tr, y_tr)
        trial.set_user_attr("fit_seconds", round(time.perf_counter() - t0, 3))
        value = score_predictions(y_va, predict_from_estimator(est, Xt_va, sig), sig)[metric]
        if not np.isfinite(value):
            raise optuna.TrialPruned(f"{metric} is not finite")
        return float(value)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize" if higher else "minimize",
        sampler=optuna.samplers.TPESampler(seed=tcfg.seed),
        study_name=f"{dcfg.target}-tune",
    )
    # Always try each family once with its defaults first, so a short budget still compares families.
    for fam in tcfg.families:
        study.enqueue_trial({"family": fam})
    study.optimize(objective, n_trials=tcfg.n_trials, timeout=tcfg.timeout_s, gc_after_trial=False)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        from mlpipeline.errors import TrainingError

        raise TrainingError("no tuning trial completed; raise tune.timeout_s or check the data")
    best = study.best_trial
    family = best.params["family"]
    prefix = f"{family}."
    params = {k[len(prefix):]: v for k, v in best.params.items() if k.startswith(prefix)}
    result = {
        "family": family,
        "params": params,
        "metric": metric,
        "direction": "maximize" if higher else "minimize",
        "value": float(best.value),
        "n_trials": len(study.trials),
        "n_complete": len(done),
        "best_by_family": {
            fam: max((t.value for t in done if t.params["family"] == fam), default=None)
            if higher
            else min((t.value for t in done if t.params["family"] == fam), default=None)
            for fam in tcfg.families
        },
        "seed": tcfg.seed,
    }
    table = study.trials_dataframe(attrs=("number", "value", "params", "state", "user_attrs", "duration"))
    with atomic_path(out_trials) as tmp:
        table.to_csv(tmp, index=False)
    atomic_write_json(out_best, result)
    return result
