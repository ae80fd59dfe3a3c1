"""Katib ``Experiment`` objects from the tuner's own search space (:data:`SEARCH_SPACE`).

Locally the tune stage runs Optuna over ``SEARCH_SPACE``; on a cluster the same space becomes one
Katib Experiment per model family (Katib has no conditional parameters, and each family has its own
space). Mapping: ``float`` -> ``double``, ``int`` -> ``int``, ``categorical`` -> ``categorical``;
``log: true`` -> ``distribution: logUniform``. The algorithm is TPE seeded with ``tune.seed``; the
objective is the tuner's primary metric with the tuner's direction.

Each trial is a ``batch/v1`` Job running :mod:`mlpipeline.distributed.katib_trial` in the project
image; it prints ``metric=value`` lines, which Katib's StdOut metrics collector parses. The data
(train/validation splits and the fitted transform) sit on a PVC mounted in every trial pod.
"""

from __future__ import annotations

import re
from typing import Any

from mlpipeline.config import DataConfig, TuneConfig, project_image
from mlpipeline.errors import ConfigError
from mlpipeline.models.estimators import SEARCH_SPACE, check_families
from mlpipeline.scoring import HIGHER_IS_BETTER

API_VERSION = "kubeflow.org/v1beta1"
KIND = "Experiment"
TRIAL_CONTAINER = "training"
_KATIB_TYPE = {"float": "double", "int": "int", "categorical": "categorical"}


def katib_parameter_name(name: str) -> str:
    """Katib parameter and trial-parameter names: lower-case letters, digits and dashes."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def katib_parameters(family: str) -> list[dict[str, Any]]:
    """``spec.parameters`` for one family, in ``SEARCH_SPACE`` order."""
    if family not in SEARCH_SPACE:
        raise ConfigError(f"no search space for family {family!r}")
    out = []
    for name, spec in SEARCH_SPACE[family].items():
        kind = spec["type"]
        if kind == "categorical":
            feasible: dict[str, Any] = {"list": [str(c) for c in spec["choices"]]}
        else:
            lo, hi = spec["low"], spec["high"]
            feasible = {"min": str(lo), "max": str(hi)}
            if kind == "int":
                feasible = {"min": str(int(lo)), "max": str(int(hi))}
            feasible["distribution"] = "logUniform" if spec.get("log") else "uniform"
        out.append({"name": katib_parameter_name(name), "parameterType": _KATIB_TYPE[kind], "feasibleSpace": feasible})
    return out


def render_experiment(
    family: str,
    dcfg: DataConfig,
    tcfg: TuneConfig,
    *,
    metric: str,
    namespace: str,
    pvc_name: str,
    train_path: str,
    validation_path: str,
    transform_dir: str,
    mount_path: str = "/mnt/shared",
    train_config: dict[str, Any] | None = None,
    image: str | None = None,
    parallel_trials: int = 3,
    cpu: str = "1",
    memory: str = "2Gi",
    name: str | None = None,
) -> dict[str, Any]:
    """One ``kubeflow.org/v1beta1`` Experiment tuning ``family`` on the given splits (paths on the PVC)."""
    import json

    check_families((family,), dcfg.task)
    if metric not in HIGHER_IS_BETTER:
        raise ConfigError(f"unknown metric {metric!r}; known: {', '.join(sorted(HIGHER_IS_BETTER))}")
    params = katib_parameters(family)
    exp_name = name or f"{katib_parameter_name(dcfg.target)[:20]}-{katib_parameter_name(family)}-tune"
    trial_params = [
        {"name": p["name"], "reference": p["name"], "description": f"{family} {p['name']}"} for p in params
    ]
    args = [
        "--family", family,
        "--train", train_path,
        "--validation", validation_path,
        "--transform", transform_dir,
        "--data-config", json.dumps(dcfg.model_dump(mode="json"), sort_keys=True, separators=(",", ":")),
        "--train-config", json.dumps(train_config or {}, sort_keys=True, separators=(",", ":")),
        "--metric", metric,
        "--seed", str(tcfg.seed),
    ]
    for p, (orig, _) in zip(params, SEARCH_SPACE[family].items(), strict=True):
        args += ["--param", f"{orig}=${{trialParameters.{p['name']}}}"]
    trial_spec = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"annotations": {"sidecar.istio.io/inject": "false"}},
                "spec": {
                    "restartPolicy": "Never",
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000},
                    "containers": [
                        {
                            "name": TRIAL_CONTAINER,
                            "image": image or project_image(),
                            "command": ["python", "-m", "mlpipeline.distributed.katib_trial"],
                            "args": args,
                            "resources": {"requests": {"cpu": cpu, "memory": memory}, "limits": {"memory": memory}},
                            "volumeMounts": [{"name": "shared", "mountPath": mount_path, "readOnly": True}],
                            "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                        }
                    ],
                    "volumes": [{"name": "shared", "persistentVolumeClaim": {"claimName": pvc_name, "readOnly": True}}],
                },
            },
        },
    }
    higher = HIGHER_IS_BETTER[metric]
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": exp_name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": "mlpipeline", "mlpipeline.io/family": katib_parameter_name(family)},
        },
        "spec": {
            "objective": {"type": "maximize" if higher else "minimize", "objectiveMetricName": metric},
            "algorithm": {
                "algorithmName": "tpe",
                "algorithmSettings": [{"name": "random_state", "value": str(tcfg.seed)}],
            },
            "parallelTrialCount": min(parallel_trials, tcfg.n_trials),
            "maxTrialCount": tcfg.n_trials,
            "maxFailedTrialCount": max(1, tcfg.n_trials // 4),
            "metricsCollectorSpec": {"collector": {"kind": "StdOut"}},
            "parameters": params,
            "trialTemplate": {
                "primaryContainerName": TRIAL_CONTAINER,
                "successCondition": 'status.conditions.#(type=="Complete")#|#(status=="True")#',
                "failureCondition": 'status.conditions.#(type=="Failed")#|#(status=="True")#',
                "trialParameters": trial_params,
                "trialSpec": trial_spec,
            },
        },
    }


def render_experiments(dcfg: DataConfig, tcfg: TuneConfig, **kwargs: Any) -> list[dict[str, Any]]:
    """One Experiment per family in ``tune.families``."""
    return [render_experiment(f, dcfg, tcfg, **kwargs) for f in tcfg.families]


def main(argv: list[str] | None = None) -> int:
    """``python -m mlpipeline.distributed.katib CONFIG ...``: write the Experiments as YAML (apply with kubectl)."""
    import argparse
    import sys

    import yaml

    from mlpipeline.config import load_config
    from mlpipeline.errors import MLPipelineError
    from mlpipeline.scoring import primary_metric

    p = argparse.ArgumentParser(prog="python -m mlpipeline.distributed.katib", allow_abbrev=False, description=main.__doc__)
    p.add_argument("config", help="use-case YAML (tune.families, tune.n_trials, tune.seed, data, train.torch)")
    p.add_argument("--namespace", required=True)
    p.add_argument("--pvc", required=True, help="PVC holding the splits and the fitted transform")
    p.add_argument("--mount-path", default="/mnt/shared")
    p.add_argument("--train", required=True, help="train split path inside the mount")
    p.add_argument("--validation", required=True, help="validation split path inside the mount")
    p.add_argument("--transform", required=True, help="fitted transform directory inside the mount")
    p.add_argument("--n-classes", type=int, default=2, help="classes of the target (picks the default metric)")
    p.add_argument("--image", default=None)
    p.add_argument("--parallel-trials", type=int, default=3)
    p.add_argument("--out", default="-", help="output file (default stdout)")
    a = p.parse_args(argv)
    try:
        cfg = load_config(a.config)
        metric = primary_metric(cfg.data.task, a.n_classes, cfg.tune.metric)
        exps = render_experiments(
            cfg.data, cfg.tune, metric=metric, namespace=a.namespace, pvc_name=a.pvc, mount_path=a.mount_path,
            train_path=a.train, validation_path=a.validation, transform_dir=a.transform,
            train_config=cfg.train.model_copy(update={"distributed": None}).model_dump(mode="json"),
            image=a.image, parallel_trials=a.parallel_trials,
        )
    except MLPipelineError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    text = yaml.safe_dump_all(exps, sort_keys=False)
    if a.out == "-":
        sys.stdout.write(text)
    else:
        from mlpipeline.artifacts import atomic_write_text

        atomic_write_text(a.out, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
