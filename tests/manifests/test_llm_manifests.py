"""manifests/llm: kustomize renders, objects validate against the real CRDs / Kubernetes / Grafana
schemas (../shared/schemas), the rules pass promtool, and every metric they use is one the LLM
server exports."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from schemas import (
    REPO_ROOT,
    SHARED_SCHEMAS,
    dashboard_exprs,
    have,
    kustomize,
    validate_dashboard,
    validate_object,
)

LLM = REPO_ROOT / "manifests" / "llm"
RULES = LLM / "rules" / "llm.rules.yaml"
RULES_TEST = LLM / "rules" / "llm.rules.test.yaml"
DASHBOARD = LLM / "base" / "dashboards" / "mlpipeline-llm.json"
TARGETS = ["base", "overlays/dev", "overlays/gpu"]
#: a metric name not part of a recording rule's name (those contain colons)
METRIC = re.compile(r"(?<![:\w])(mlpipeline_[a-z0-9_]+)(?![:\w])")

pytestmark = pytest.mark.skipif(not have("kubectl"), reason="kubectl not installed")


@pytest.fixture(scope="module", params=TARGETS)
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, kustomize(LLM / request.param)


def by_kind(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind]


def test_schemas_come_from_the_shared_folder() -> None:
    assert SHARED_SCHEMAS == REPO_ROOT.parent / "shared" / "schemas"
    assert (SHARED_SCHEMAS / "crds" / "serving.kserve.io_inferenceservices.yaml").is_file()


def test_every_object_validates(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    target, objs = rendered
    assert {o["kind"] for o in objs} == {"InferenceService", "PodMonitor", "PrometheusRule", "ConfigMap"}, (
        target
    )
    for obj in objs:
        validate_object(
            obj
        )  # CRs against their CRD's openAPIV3Schema (strict), core kinds with kubernetes-validate


def test_inference_service_runs_the_llm_server(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    from mlpipeline.llm.__main__ import build_parser

    target, objs = rendered
    (isvc,) = by_kind(objs, "InferenceService")
    (container,) = isvc["spec"]["predictor"]["containers"]
    assert container["command"] == ["python", "-m", "mlpipeline.llm"]
    args = build_parser().parse_args(container["args"])  # every flag is one our entry point knows
    assert args.http_port == 8080 and container["ports"][0]["containerPort"] == 8080
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["HF_HUB_OFFLINE"] == "1" and env["KSERVE_OPENAI_ROUTE_PREFIX"] == "openai"
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert env["MLPIPELINE_CACHE_DIR"] in mounts  # the checkpoint cache is writable under a read-only root
    probe = container["readinessProbe"]["httpGet"]["path"]
    assert probe == f"/v2/models/{args.served_model_name}/ready"
    gpu = container["resources"].get("limits", {}).get("nvidia.com/gpu")
    if target == "overlays/gpu":
        assert container["image"] == "localhost/mlpipeline:0.1.0-cuda"
        assert gpu == "1" and args.torch_device == "cuda" and args.torch_dtype == "bfloat16"
        assert isvc["spec"]["predictor"]["tolerations"][0]["key"] == "nvidia.com/gpu"
    else:
        assert container["image"] == "localhost/mlpipeline:0.1.0"
        assert gpu is None and args.torch_device == "auto"
    if target == "overlays/dev":
        assert isvc["metadata"]["namespace"] == "mlpipeline-dev" and args.max_running_seqs == 8


def test_pod_monitor_selects_the_llm_predictor(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, objs = rendered
    (isvc,) = by_kind(objs, "InferenceService")
    (pm,) = by_kind(objs, "PodMonitor")
    assert pm["spec"]["selector"]["matchLabels"] == {
        "serving.kserve.io/inferenceservice": isvc["metadata"]["name"]
    }
    assert pm["spec"]["podMetricsEndpoints"][0]["path"] == "/metrics"


def test_dashboard_configmap_for_the_grafana_sidecar(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, objs = rendered
    (cm,) = by_kind(objs, "ConfigMap")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"]["mlpipeline-llm.json"]) == json.loads(DASHBOARD.read_text())


def test_dashboard_validates_and_shows_the_required_panels() -> None:
    dash = json.loads(DASHBOARD.read_text())
    validate_dashboard(dash)
    exprs = dashboard_exprs(dash)
    joined = "\n".join(exprs)
    for metric in ("time_to_first_token_seconds", "inter_token_latency_seconds"):
        for q in ("0.5", "0.95", "0.99"):
            assert f"histogram_quantile({q}, sum by (le) (rate(mlpipeline_llm_{metric}_bucket" in joined, (
                metric,
                q,
            )
    assert "rate(mlpipeline_llm_generation_tokens_total" in joined  # tokens/s
    assert "rate(mlpipeline_llm_request_success_total" in joined  # req/s
    assert "mlpipeline_llm_requests_waiting" in joined and "mlpipeline_llm_requests_running" in joined


def test_prometheus_rule_carries_the_raw_rule_file() -> None:
    raw = yaml.safe_load(RULES.read_text())
    (rule,) = [o for o in kustomize(LLM / "base") if o["kind"] == "PrometheusRule"]
    assert rule["spec"]["groups"] == raw["groups"]
    alerts = {r["alert"] for g in raw["groups"] for r in g["rules"] if "alert" in r}
    assert {
        "MLPipelineLLMTimeToFirstTokenHigh",
        "MLPipelineLLMQueueBackingUp",
        "MLPipelineLLMNoTokensGenerated",
    } <= alerts
    tested = {
        t["alertname"]
        for case in yaml.safe_load(RULES_TEST.read_text())["tests"]
        for t in case["alert_rule_test"]
    }
    assert alerts <= tested  # every alert has a promtool unit test


@pytest.mark.skipif(not have("promtool"), reason="promtool not installed (make system-deps)")
def test_promtool_checks_and_unit_tests_pass() -> None:
    for cmd in (["promtool", "check", "rules", str(RULES)], ["promtool", "test", "rules", str(RULES_TEST)]):
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=RULES.parent)
        assert out.returncode == 0, out.stdout + out.stderr


def used_metric_names() -> set[str]:
    """Metric names the dashboard and the rules query (recording-rule names excluded)."""
    raw = yaml.safe_load(RULES.read_text())
    exprs = [r["expr"] for g in raw["groups"] for r in g["rules"]]
    exprs += dashboard_exprs(json.loads(DASHBOARD.read_text()))
    return {m for e in exprs for m in METRIC.findall(e)}


def exported_sample_names(scrape: str) -> set[str]:
    from prometheus_client.parser import text_string_to_metric_families

    return {s.name for fam in text_string_to_metric_families(scrape) for s in fam.samples}


def test_every_used_metric_is_exported_by_the_llm_stat_logger() -> None:
    """The server's metrics come from PrometheusStats on the default registry; exercise every series once.
    (tests/llm/test_llm_server.py repeats this check against a scrape of the running server.)"""
    from prometheus_client import REGISTRY, generate_latest

    from mlpipeline.llm.scheduler import RequestStats
    from mlpipeline.llm.stats import PrometheusStats

    stats = PrometheusStats("manifest-check")
    stats.on_scheduled(0.01, 5)
    stats.on_first_token(0.02)
    stats.on_tokens(2, [0.03])
    stats.on_finished("length", RequestStats(arrival=0.0, prompt_tokens=5, scheduled=0.01, first_token=0.02,
                                             last_token=0.05, finished=0.05, completion_tokens=2))  # fmt: skip
    stats.on_queue_sizes(0, 0)
    used = used_metric_names()
    assert len(used) >= 8
    missing = used - exported_sample_names(generate_latest(REGISTRY).decode())
    assert not missing, f"dashboard/rules use metrics nobody exports: {sorted(missing)}"


def test_manifest_files_parse() -> None:
    for f in sorted(LLM.rglob("*.yaml")):
        assert list(yaml.safe_load_all(f.read_text())), f
    assert isinstance(json.loads(DASHBOARD.read_text()), dict)
    assert Path(RULES).is_file() and Path(RULES_TEST).is_file()
