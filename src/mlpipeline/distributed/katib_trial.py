"""One Katib trial: fit one family with the given parameters, score it on validation, print metrics.

    python -m mlpipeline.distributed.katib_trial --family gradient_boosting \\
        --train T.parquet --validation V.parquet --transform DIR --data-config JSON \\
        --metric roc_auc --param learning_rate=0.05 --param max_leaf_nodes=31

Same objective as one trial of the local Optuna tuner (:func:`mlpipeline.stages.tune.tune`): the
fitted transform applied to both splits, :func:`~mlpipeline.models.estimators.make_estimator` with
the tuner's seed, scored with :func:`~mlpipeline.scoring.score_predictions` at a 0.5 threshold.
Parameters are parsed and range-checked against ``SEARCH_SPACE``. Output is one ``name=value`` line
per numeric metric (objective first), the format of Katib's StdOut metrics collector.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from mlpipeline.errors import ConfigError, MLPipelineError
from mlpipeline.models.estimators import SEARCH_SPACE


def parse_params(family: str, pairs: list[str]) -> dict[str, Any]:
    """``["name=value", ...]`` -> typed parameters, checked against ``SEARCH_SPACE[family]``."""
    space = SEARCH_SPACE.get(family)
    if space is None:
        raise ConfigError(f"no search space for family {family!r}")
    out: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or name not in space:
            raise ConfigError(f"--param {pair!r}: expected NAME=VALUE with NAME in {sorted(space)}")
        spec = space[name]
        try:
            if spec["type"] == "categorical":
                matches = [c for c in spec["choices"] if str(c) == raw]
                if not matches:
                    raise ValueError(f"not one of {spec['choices']}")
                value: Any = matches[0]
            elif spec["type"] == "int":
                f = float(raw)
                if f != int(f):
                    raise ValueError("not an integer")
                value = int(f)
            else:
                value = float(raw)
                if not math.isfinite(value):
                    raise ValueError("not finite")
        except ValueError as e:
            raise ConfigError(f"--param {pair!r}: {e}") from e
        if spec["type"] != "categorical" and not spec["low"] <= value <= spec["high"]:
            raise ConfigError(f"--param {pair!r}: outside [{spec['low']}, {spec['high']}]")
        out[name] = value
    return out


def run_trial(
    family: str,
    params: dict[str, Any],
    train_path: str | Path,
    validation_path: str | Path,
    transform_dir: str | Path,
    data_cfg: dict[str, Any],
    train_cfg: dict[str, Any] | None = None,
    metric: str | None = None,
    seed: int = 42,
) -> tuple[str, dict[str, float]]:
    """Fit and score one trial; returns (objective metric name, numeric metrics)."""
    from mlpipeline.artifacts import load_verified_object, read_parquet
    from mlpipeline.config import DataConfig, TrainConfig, parse_section
    from mlpipeline.models.estimators import check_families, make_estimator
    from mlpipeline.packaging import predict_from_estimator
    from mlpipeline.scoring import primary_metric, score_predictions
    from mlpipeline.signature import ColumnSpec, Signature
    from mlpipeline.stages.common import resolve_classes, xy
    from mlpipeline.stages.preprocess import TRANSFORM_FILE

    dcfg = parse_section(DataConfig, data_cfg, "data")
    tcfg = parse_section(TrainConfig, train_cfg or {}, "train")
    check_families((family,), dcfg.task)
    transform = load_verified_object(transform_dir, TRANSFORM_FILE)
    X_tr, y_tr = xy(read_parquet(train_path), dcfg)
    X_va, y_va = xy(read_parquet(validation_path), dcfg)
    classes, positive = resolve_classes(y_tr, dcfg) if dcfg.task == "classification" else ([], None)
    metric = primary_metric(dcfg.task, len(classes), metric)
    sig = Signature(
        inputs=(ColumnSpec("x", "float"),), task=dcfg.task, target=dcfg.target,
        classes=tuple(classes), positive_class=positive, threshold=0.5 if positive is not None else None,
    )
    torch_cfg = {k: v for k, v in tcfg.torch.model_dump().items() if k in ("max_epochs", "batch_size", "patience", "mixed_precision")}
    est = make_estimator(family, params, dcfg.task, seed, torch_cfg)
    est.fit(transform.transform(X_tr), y_tr)
    scores = score_predictions(y_va, predict_from_estimator(est, transform.transform(X_va), sig), sig)
    numeric = {k: float(v) for k, v in scores.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if metric not in numeric or not math.isfinite(numeric[metric]):
        raise MLPipelineError(f"objective {metric} is missing or not finite: {numeric.get(metric)}")
    return metric, numeric


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mlpipeline.distributed.katib_trial", allow_abbrev=False)
    p.add_argument("--family", required=True, choices=sorted(SEARCH_SPACE))
    p.add_argument("--train", required=True)
    p.add_argument("--validation", required=True)
    p.add_argument("--transform", required=True)
    p.add_argument("--data-config", required=True, help="data section as inline JSON")
    p.add_argument("--train-config", default="{}", help="train section as inline JSON (torch settings)")
    p.add_argument("--metric", default=None, help="objective; default: the tuner's primary metric for the task")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    a = p.parse_args(argv)
    try:
        params = parse_params(a.family, a.param)
        metric, scores = run_trial(
            a.family, params, a.train, a.validation, a.transform,
            json.loads(a.data_config), json.loads(a.train_config), a.metric, a.seed,
        )
    except (MLPipelineError, json.JSONDecodeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{metric}={scores[metric]:.10g}")
    for k, v in scores.items():
        if k != metric and math.isfinite(v):
            print(f"{k}={v:.10g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
