"""Generated TrainJob / PyTorchJob / Katib Experiment objects against the real CRDs (../shared/schemas/crds).

The Katib Experiment CRD carries no structural schema (``x-kubernetes-preserve-unknown-fields``), so
beyond the CRD check the Experiment is held to what Katib's webhook enforces, its trial Job to the
Kubernetes batch/v1 schema, and its trial command is run here the way a Katib trial runs it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from schemas import CRD_DIR, validate_core, validate_custom_resource

from mlpipeline.config import DataConfig, DistributedConfig, TuneConfig
from mlpipeline.distributed.jobs import COMMAND, render_job
from mlpipeline.distributed.katib import katib_parameter_name, render_experiment, render_experiments
from mlpipeline.distributed.launcher import ddp_args
from mlpipeline.errors import ConfigError
from mlpipeline.models.estimators import SEARCH_SPACE

#: Katib's default StdOut metrics filter (pkg/metricscollector/v1beta1/common/const.go).
KATIB_STDOUT_FILTER = re.compile(r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)")

ENGINE_CASES = [
    pytest.param({"engine": "trainjob", "num_nodes": 4, "gpus_per_node": 8}, id="trainjob-gpu"),
    pytest.param({"engine": "trainjob", "num_nodes": 2, "gpus_per_node": 0, "procs_per_node": 4, "service_account": "trainer"}, id="trainjob-cpu"),
    pytest.param({"engine": "pytorchjob", "num_nodes": 3, "gpus_per_node": 2}, id="pytorchjob-gpu"),
    pytest.param({"engine": "pytorchjob", "num_nodes": 1, "gpus_per_node": 0, "procs_per_node": 2}, id="pytorchjob-single-cpu"),
]


def test_crds_are_present():
    assert CRD_DIR.is_dir(), f"{CRD_DIR} missing: the schemas live beside the repository"
    names = {p.name for p in CRD_DIR.glob("*.yaml")}
    assert {"trainer.kubeflow.org_trainjobs.yaml", "kubeflow.org_pytorchjobs.yaml", "kubeflow.org_experiments.yaml"} <= names


@pytest.mark.parametrize("overrides", ENGINE_CASES)
def test_job_validates_against_its_crd(overrides):
    d = DistributedConfig(pvc_name="ml-shared", namespace="team-a", **overrides)
    args = ddp_args(Path("/mnt/shared/mlpipeline-ddp/ddp-churn-1234abcd"))
    obj = render_job("ddp-churn-1234abcd", d, args, "registry.example/mlpipeline:0.1.0")
    validate_custom_resource(obj)
    procs = d.gpus_per_node or d.procs_per_node
    if d.engine == "trainjob":
        t = obj["spec"]["trainer"]
        assert obj["spec"]["runtimeRef"]["name"] == "torch-distributed"
        assert (t["numNodes"], t["numProcPerNode"]) == (d.num_nodes, procs)
        assert t["command"] == COMMAND and t["args"] == args
        gpus = t["resourcesPerNode"]["limits"].get("nvidia.com/gpu")
        pod = obj["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]
        assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "ml-shared"
        assert pod["containers"][0]["volumeMounts"][0]["mountPath"] == d.mount_path
    else:
        specs = obj["spec"]["pytorchReplicaSpecs"]
        assert specs["Master"]["replicas"] == 1
        assert specs.get("Worker", {}).get("replicas", 0) == d.num_nodes - 1
        assert obj["spec"]["nprocPerNode"] == str(procs)
        c = specs["Master"]["template"]["spec"]["containers"][0]
        assert c["name"] == "pytorch" and c["command"] == COMMAND and c["args"] == args
        gpus = c["resources"]["limits"].get("nvidia.com/gpu")
        pod = specs["Master"]["template"]["spec"]
    assert gpus == (str(d.gpus_per_node) if d.gpus_per_node else None)
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["fsGroup"] == 1000
    assert pod.get("serviceAccountName") == d.service_account


def test_job_name_longer_than_jobset_allows_is_refused():
    d = DistributedConfig(pvc_name="ml-shared")
    with pytest.raises(ConfigError, match="1..40"):
        render_job("x" * 41, d, [], "img")


def test_distributed_config_is_strict():
    with pytest.raises(ValueError):
        DistributedConfig(pvc_name="ml-shared", engine="mpijob")
    with pytest.raises(ValueError):
        DistributedConfig(pvc_name="ml-shared", gpus_per_nodes=2)  # typo: extra fields are forbidden


# --------------------------------------------------------------------------- Katib
DCFG = DataConfig(source="churn", target="churn", task="classification", positive_class="Yes")
TCFG = TuneConfig(families=("logistic_regression", "gradient_boosting", "torch_mlp"), n_trials=24, seed=11)
PATHS = {
    "train_path": "/mnt/shared/churn/train.parquet",
    "validation_path": "/mnt/shared/churn/validation.parquet",
    "transform_dir": "/mnt/shared/churn/transform",
}


def _experiments():
    return render_experiments(DCFG, TCFG, metric="roc_auc", namespace="team-a", pvc_name="ml-shared", **PATHS)


def test_one_experiment_per_family_validates_against_the_crd():
    exps = _experiments()
    assert [e["metadata"]["labels"]["mlpipeline.io/family"] for e in exps] == ["logistic-regression", "gradient-boosting", "torch-mlp"]
    assert len({e["metadata"]["name"] for e in exps}) == len(exps)
    for e in exps:
        validate_custom_resource(e)


@pytest.mark.parametrize("family", list(SEARCH_SPACE))
def test_parameters_are_the_tuner_search_space(family):
    task = "regression" if family == "ridge" else "classification"
    dcfg = DCFG.model_copy(update={"task": task, "positive_class": None})
    exp = render_experiment(family, dcfg, TCFG, metric="rmse" if task == "regression" else "roc_auc",
                            namespace="ns", pvc_name="pvc", **PATHS)
    params = {p["name"]: p for p in exp["spec"]["parameters"]}
    assert list(params) == [katib_parameter_name(n) for n in SEARCH_SPACE[family]]
    for name, spec in SEARCH_SPACE[family].items():
        p = params[katib_parameter_name(name)]
        fs = p["feasibleSpace"]
        assert p["parameterType"] == {"float": "double", "int": "int"}[spec["type"]]
        assert float(fs["min"]) == spec["low"] and float(fs["max"]) == spec["high"]
        assert fs["distribution"] == ("logUniform" if spec.get("log") else "uniform")
    assert exp["spec"]["objective"]["type"] == ("minimize" if task == "regression" else "maximize")


def test_experiment_meets_katib_webhook_rules():
    """What Katib's validator (pkg/webhook/v1beta1/experiment/validator) rejects at admission."""
    for exp in _experiments():
        spec = exp["spec"]
        assert spec["objective"]["type"] in ("maximize", "minimize") and spec["objective"]["objectiveMetricName"]
        assert spec["algorithm"]["algorithmName"] == "tpe"
        assert 0 < spec["parallelTrialCount"] <= spec["maxTrialCount"]
        for p in spec["parameters"]:
            assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", p["name"])
            assert p["parameterType"] in ("double", "int", "discrete", "categorical")
            if p["parameterType"] in ("double", "int"):
                assert float(p["feasibleSpace"]["min"]) < float(p["feasibleSpace"]["max"])
        tt = spec["trialTemplate"]
        job = tt["trialSpec"]
        containers = job["spec"]["template"]["spec"]["containers"]
        assert tt["primaryContainerName"] in [c["name"] for c in containers]
        defined = {t["name"] for t in tt["trialParameters"]}
        assert {t["reference"] for t in tt["trialParameters"]} == {p["name"] for p in spec["parameters"]}
        used = set(re.findall(r"\$\{trialParameters\.([^}]+)\}", repr(job)))
        assert used == defined, f"trialParameters defined {defined} but used {used}"
        # the trial Job itself against Kubernetes' batch/v1 schema (placeholders are plain strings)
        validate_core({**job, "metadata": {"name": "trial"}})


def test_trial_command_prints_what_katibs_stdout_collector_parses(ddp_inputs):
    """Substitute values from the feasible space into the trial's args, run it like a Katib trial,
    and parse its output with Katib's own filter."""
    from ddp_support import DATA_CFG

    from mlpipeline.distributed.katib_trial import main

    dcfg = DataConfig.model_validate(DATA_CFG)
    paths = {"train_path": str(ddp_inputs["train"]), "validation_path": str(ddp_inputs["validation"]), "transform_dir": str(ddp_inputs["transform"])}
    exp = render_experiment("gradient_boosting", dcfg, TCFG, metric="roc_auc", namespace="ns", pvc_name="pvc", **paths)
    values = {}
    for p in exp["spec"]["parameters"]:  # geometric/arithmetic midpoint of each range, as Katib would send it
        lo, hi = float(p["feasibleSpace"]["min"]), float(p["feasibleSpace"]["max"])
        mid = (lo * hi) ** 0.5 if p["feasibleSpace"]["distribution"] == "logUniform" else (lo + hi) / 2
        values[p["name"]] = str(int(round(mid))) if p["parameterType"] == "int" else repr(mid)
    container = exp["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["python", "-m", "mlpipeline.distributed.katib_trial"]
    args = [re.sub(r"\$\{trialParameters\.([^}]+)\}", lambda m: values[m.group(1)], a) for a in container["args"]]
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(args) == 0
    metrics = {m.group(1): float(m.group(2)) for m in KATIB_STDOUT_FILTER.finditer(buf.getvalue())}
    objective = exp["spec"]["objective"]["objectiveMetricName"]
    assert buf.getvalue().splitlines()[0].startswith(f"{objective}=")
    assert 0.8 < metrics[objective] <= 1.0


def test_trial_rejects_values_outside_the_search_space(ddp_inputs):
    from mlpipeline.distributed.katib_trial import parse_params

    assert parse_params("gradient_boosting", ["max_leaf_nodes=31", "learning_rate=0.05"]) == {"max_leaf_nodes": 31, "learning_rate": 0.05}
    with pytest.raises(ConfigError, match="outside"):
        parse_params("gradient_boosting", ["learning_rate=3"])
    with pytest.raises(ConfigError, match="integer"):
        parse_params("gradient_boosting", ["max_leaf_nodes=3.5"])
    with pytest.raises(ConfigError, match="NAME=VALUE"):
        parse_params("gradient_boosting", ["depth=3"])


def test_launcher_rbac_validates_and_covers_every_call_the_launcher_makes():
    from mlpipeline.distributed.jobs import PYTORCHJOB, TRAINJOB, render_launcher_rbac

    role, binding = render_launcher_rbac("team-a", "pipeline-runner")
    validate_core(role)
    validate_core(binding)
    granted = {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    for api in (TRAINJOB, PYTORCHJOB):  # JobLauncher: create, get (poll), delete (timeout)
        assert {(api.group, api.plural, v) for v in ("create", "get", "delete")} <= granted
    assert binding["subjects"][0] == {"kind": "ServiceAccount", "name": "pipeline-runner", "namespace": "team-a"}


def test_katib_cli_writes_experiments_for_a_config(tmp_path, repo_root):
    import yaml

    from mlpipeline.distributed.katib import main

    out = tmp_path / "experiments.yaml"
    code = main([
        str(repo_root / "configs" / "churn.yaml"), "--namespace", "team-a", "--pvc", "ml-shared",
        "--train", "/mnt/shared/churn/train.parquet", "--validation", "/mnt/shared/churn/validation.parquet",
        "--transform", "/mnt/shared/churn/transform", "--out", str(out),
    ])
    assert code == 0
    exps = list(yaml.safe_load_all(out.read_text()))
    from mlpipeline.config import load_config

    assert len(exps) == len(load_config(repo_root / "configs" / "churn.yaml").tune.families)
    for e in exps:
        validate_custom_resource(e)
        assert e["spec"]["objective"] == {"type": "maximize", "objectiveMetricName": "roc_auc"}
