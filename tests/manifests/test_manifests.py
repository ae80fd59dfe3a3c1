"""Kustomize base + overlays render with the real kubectl, and every object validates against the
real CRDs (KServe, Prometheus Operator), Kubernetes' own schemas and Grafana's dashboard schemas."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from schemas import (
    REPO_ROOT,
    dashboard_exprs,
    have,
    kustomize,
    validate_core,
    validate_custom_resource,
    validate_dashboard,
    validate_object,
)

from mlpipeline.errors import DeploymentError
from mlpipeline.serving.manifests import render_inference_service

MANIFESTS = REPO_ROOT / "manifests"
MONITORING = MANIFESTS / "base" / "monitoring"
RULES = MONITORING / "rules" / "inference.rules.yaml"
DASHBOARD = MONITORING / "dashboards" / "mlpipeline-serving.json"
TARGETS = ["base", "overlays/dev", "overlays/gpu", "overlays/prod"]
IMAGE = "localhost/mlpipeline"
BASE_VALUES: dict[str, Any] = dict(
    name="churn",
    namespace="mlpipeline",
    storage_uri="pvc://mlpipeline-registry/churn/production",
    image=f"{IMAGE}:0.1.0",
    min_replicas=1,
    max_replicas=3,
    scale_metric="concurrency",
    scale_target=8,
    cpu="1",
    memory="1Gi",
    service_account="mlpipeline-predictor",
)

needs_kubectl = pytest.mark.skipif(not have("kubectl"), reason="kubectl is not installed (CI installs it)")
needs_promtool = pytest.mark.skipif(not have("promtool"), reason="promtool is not installed (`make system-deps`)")


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    if not have("kubectl"):
        pytest.skip("kubectl is not installed (CI installs it)")
    return {t: kustomize(MANIFESTS / t) for t in TARGETS}


def one(objs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def predictor(objs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    isvc = one(objs, "InferenceService", "churn")
    pred = isvc["spec"]["predictor"]
    return pred, pred["containers"][0]


# --------------------------------------------------------------------------- every object validates
@needs_kubectl
@pytest.mark.parametrize("target", TARGETS)
def test_every_object_validates(rendered, target):
    objs = rendered[target]
    kinds = sorted(o["kind"] for o in objs)
    for kind in ("InferenceService", "PodMonitor", "PrometheusRule", "ConfigMap", "NetworkPolicy", "Role", "RoleBinding"):
        assert kind in kinds, f"{target}: no {kind}"
    for obj in objs:
        validate_object(obj)
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "mlpipeline"
    namespaces = {o["metadata"].get("namespace") for o in objs}
    assert len(namespaces) == 1 and None not in namespaces, namespaces
    binding = one(objs, "RoleBinding")
    assert {s["namespace"] for s in binding["subjects"]} == namespaces  # the deployer binds in its own namespace


@needs_kubectl
@pytest.mark.parametrize("target", TARGETS)
def test_predictor_pod_is_locked_down(rendered, target):
    pred, c = predictor(rendered[target])
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 1000
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]} and sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pred["securityContext"]["runAsNonRoot"] is True
    assert pred["automountServiceAccountToken"] is False
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pred["volumes"]}
    env = {e["name"]: e["value"] for e in c["env"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert "emptyDir" in volumes[mounts[env["PROMETHEUS_MULTIPROC_DIR"]]]
    assert env["STORAGE_URI"].startswith("pvc://")
    assert c["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": 8080}
    assert c["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": 8080}
    assert c["command"] == ["python", "-m", "mlpipeline.serving"] and c["args"][0] == "/mnt/models"
    assert c["image"].split(":")[0] == IMAGE
    assert pred["minReplicas"] <= pred["maxReplicas"] and pred["scaleMetric"] in ("concurrency", "rps", "cpu", "memory")


@needs_kubectl
def test_overlays_differ_where_they_should(rendered):
    _, base_c = predictor(rendered["base"])
    dev_p, dev_c = predictor(rendered["overlays/dev"])
    gpu_p, gpu_c = predictor(rendered["overlays/gpu"])
    prod_p, prod_c = predictor(rendered["overlays/prod"])
    assert {o["metadata"]["namespace"] for o in rendered["overlays/dev"]} == {"mlpipeline-dev"}
    assert dev_p["maxReplicas"] == 1
    assert gpu_c["image"] == f"{IMAGE}:0.1.0-cuda" and base_c["image"] == f"{IMAGE}:0.1.0"
    assert gpu_c["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in gpu_p["tolerations"]
    assert prod_p["minReplicas"] >= 2 and prod_p["maxReplicas"] > prod_p["minReplicas"]
    assert prod_c["args"][-2:] == ["--workers", "2"]
    pdb = one(rendered["overlays/prod"], "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"] == {"serving.kserve.io/inferenceservice": "churn"}
    assert not [o for o in rendered["base"] if o["kind"] == "PodDisruptionBudget"]


@needs_kubectl
def test_rbac_grants_only_inferenceservices(rendered):
    role = one(rendered["base"], "Role")
    assert {g for r in role["rules"] for g in r["apiGroups"]} == {"serving.kserve.io"}
    assert {res for r in role["rules"] for res in r["resources"]} == {"inferenceservices", "inferenceservices/status"}
    binding = one(rendered["base"], "RoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert [s["name"] for s in binding["subjects"]] == ["mlpipeline-deployer"]


@needs_kubectl
def test_network_policy_admits_serving_and_monitoring_only(rendered):
    pol = one(rendered["base"], "NetworkPolicy")
    pred_labels = {"serving.kserve.io/inferenceservice": "churn"}
    assert pol["spec"]["podSelector"]["matchLabels"] == pred_labels
    assert pol["spec"]["policyTypes"] == ["Ingress"]
    ports = {p["port"] for rule in pol["spec"]["ingress"] for p in rule["ports"]}
    assert ports == {8080, 8012}
    monitoring = [r for r in pol["spec"]["ingress"] if any(
        (f.get("namespaceSelector") or {}).get("matchLabels", {}).get("kubernetes.io/metadata.name") == "monitoring" for f in r["from"]
    )]
    assert monitoring and {p["port"] for p in monitoring[0]["ports"]} == {8080}
    podmon = one(rendered["base"], "PodMonitor")
    assert podmon["spec"]["selector"]["matchLabels"] == pred_labels
    assert podmon["spec"]["podMetricsEndpoints"][0]["portNumber"] == 8080


@needs_kubectl
def test_dashboard_configmap_for_grafana_sidecar(rendered):
    cm = one(rendered["base"], "ConfigMap", "mlpipeline-serving-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    (payload,) = cm["data"].values()
    dashboard = json.loads(payload)
    assert dashboard == json.loads(DASHBOARD.read_text())
    validate_dashboard(dashboard)
    titles = " | ".join(p["title"].lower() for p in dashboard["panels"])
    for needle in ("request rate", "error ratio", "p50 / p95 / p99", "rows", "in-flight", "model version"):
        assert needle in titles


@needs_kubectl
def test_prometheusrule_carries_the_raw_rules(rendered):
    rule = one(rendered["base"], "PrometheusRule")
    assert rule["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]


# --------------------------------------------------------------------------- render_inference_service
def test_render_inference_service_is_the_base_manifest():
    base = yaml.safe_load((MANIFESTS / "base" / "inferenceservice.yaml").read_text())
    rendered = render_inference_service(**BASE_VALUES)
    assert rendered == base
    validate_custom_resource(rendered)


def test_render_inference_service_variants_validate():
    gpu = render_inference_service(**{**BASE_VALUES, "image": f"{IMAGE}:0.1.0-cuda", "gpu": 2})
    validate_custom_resource(gpu)
    pred = gpu["spec"]["predictor"]
    assert pred["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert pred["tolerations"][0]["key"] == "nvidia.com/gpu"
    rps = render_inference_service(**{**BASE_VALUES, "name": "churn-b", "namespace": "team-a", "scale_metric": "rps", "min_replicas": 0})
    validate_custom_resource(rps)
    assert rps["metadata"]["namespace"] == "team-a" and "--model-name" in rps["spec"]["predictor"]["containers"][0]["args"]


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ({"name": "Churn_Model"}, "name"),
        ({"namespace": "Bad NS"}, "namespace"),
        ({"storage_uri": "/local/path"}, "storage_uri"),
        ({"min_replicas": 4}, "replicas"),
        ({"scale_metric": "qps"}, "scale_metric"),
        ({"cpu": "one"}, "cpu"),
        ({"memory": "1 GB"}, "memory"),
        ({"gpu": -1}, "gpu"),
    ],
)
def test_render_inference_service_rejects_bad_values(override, needle):
    with pytest.raises(DeploymentError, match=needle):
        render_inference_service(**{**BASE_VALUES, **override})


# --------------------------------------------------------------------------- the helpers can fail
def test_schema_helpers_reject_broken_objects():
    isvc = render_inference_service(**BASE_VALUES)
    isvc["spec"]["predictor"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(AssertionError, match="imagePullPolicyy"):
        validate_custom_resource(isvc)
    isvc = render_inference_service(**BASE_VALUES)
    isvc["spec"]["predictor"]["scaleMetric"] = "latency"
    with pytest.raises(AssertionError, match="scaleMetric"):
        validate_custom_resource(isvc)
    with pytest.raises(AssertionError):
        validate_core({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "x"}, "automount": False})
    with pytest.raises(AssertionError):
        validate_core({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "x"}, "spec": {"minAvailable": [1]}})
    dashboard = json.loads(DASHBOARD.read_text())
    dashboard["panels"][0]["targets"][0].pop("refId")
    with pytest.raises(AssertionError, match="refId"):
        validate_dashboard(dashboard)


# --------------------------------------------------------------------------- Prometheus rules
@needs_promtool
def test_promtool_check_rules():
    out = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


@needs_promtool
def test_promtool_rule_unit_tests():
    out = subprocess.run(
        ["promtool", "test", "rules", "inference.rules.test.yaml"], cwd=RULES.parent, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stdout + out.stderr


# --------------------------------------------------------------------------- metric names are real
_METRIC = re.compile(r"(?<![\w:])mlpipeline_[a-z0-9_]+(?![\w:])")


def used_metric_names() -> set[str]:
    exprs = dashboard_exprs(json.loads(DASHBOARD.read_text()))
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        exprs += [r["expr"] for r in group["rules"]]
    return {m for e in exprs for m in _METRIC.findall(e)}


def exported_sample_names(exposition: str) -> set[str]:
    return {line.split("{")[0].split(" ")[0] for line in exposition.splitlines() if line and not line.startswith("#")}


def test_dashboard_and_rules_use_metrics_the_server_exports(tmp_path: Path):
    from serving_support import MODEL_NAME, ServerProcess, build_churn_model, churn_frame

    model_dir = build_churn_model(tmp_path / "model", n_rows=400)
    rows = json.loads(churn_frame(5, seed=2).drop(columns=["churn"]).to_json(orient="records"))
    with ServerProcess(model_dir, tmp_path / "server.log") as srv:
        srv.wait_ready()
        assert httpx.post(f"{srv.url}/v1/models/{MODEL_NAME}:predict", json={"instances": rows}).status_code == 200
        exported = exported_sample_names(httpx.get(f"{srv.url}/metrics").text)
    used = used_metric_names()
    assert {"mlpipeline_inference_requests_total", "mlpipeline_inference_request_duration_seconds_bucket",
            "mlpipeline_model_info", "mlpipeline_inference_rows_total"} <= used
    assert used <= exported, f"used but not exported: {sorted(used - exported)}"
