"""The whole pipeline under kfp.local (every stage a KFP component in its own process), twice, on a
seeded 2,000-row churn sample: artifacts exist, the second run's gate compares with the first run's
production model, the sklearn model file is byte-identical, and `mlpipeline predict` reproduces the
evaluate step's test metrics exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from mlpipeline.cli import app

pytestmark = pytest.mark.slow


def small_config(repo_root: Path, tmp: Path, **overrides) -> Path:
    cfg = yaml.safe_load((repo_root / "configs" / "churn.yaml").read_text())
    cfg["data"]["sample_rows"] = 2000
    cfg["validation"]["min_rows"] = 100
    cfg["tune"] = {"families": ["logistic_regression", "gradient_boosting"], "n_trials": 4, "timeout_s": 300, "seed": 3}
    cfg["registry"]["path"] = str(tmp / "registry")
    cfg["deploy"]["output_dir"] = str(tmp / "deploy")
    for k, v in overrides.items():
        cfg[k] = {**cfg.get(k, {}), **v}
    p = tmp / "churn-small.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def run_dirs(root: Path) -> list[Path]:
    return sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, repo_root):
    tmp = tmp_path_factory.mktemp("local")
    cfg = small_config(repo_root, tmp)
    root = tmp / "runs"
    results = []
    for _ in range(2):
        res = CliRunner().invoke(app, ["run", str(cfg), "--pipeline-root", str(root)])
        assert res.exit_code == 0, res.output
        results.append(res.output)
    return tmp, run_dirs(root), results


def test_every_stage_ran_and_wrote_its_artifacts(two_runs):
    _, (first, _), outputs = two_runs
    for task in ("ingest-op", "validate-op", "eda-op", "split-op", "preprocess-op", "features-op", "tune-op", "train-op", "evaluate-op", "gate-op", "package-op", "deploy-op"):
        assert (first / task / "executor_output.json").is_file(), task
    assert "<img" in (first / "eda-op" / "report").read_text()
    assert (first / "evaluate-op" / "report").read_text().count("data:image/png") >= 4
    assert (first / "package-op" / "packaged" / "MANIFEST.json").is_file()
    isvc = yaml.safe_load((first / "deploy-op" / "manifest").read_text())
    assert isvc["kind"] == "InferenceService" and "/versions/" in json.dumps(isvc)
    assert "blessed" in outputs[0] and "test roc_auc" in outputs[0]


def test_kfp_metrics_artifacts(two_runs):
    _, (first, _), _ = two_runs
    out = json.loads((first / "evaluate-op" / "executor_output.json").read_text())
    metrics = out["artifacts"]["metrics"]["artifacts"][0]["metadata"]
    assert metrics["test_roc_auc"] > 0.8
    cls = out["artifacts"]["classification"]["artifacts"][0]["metadata"]
    assert "confusionMatrix" in cls and "confidenceMetrics" in cls


def test_same_config_and_data_twice_gives_identical_model_bytes(two_runs):
    _, (first, second), _ = two_runs
    a = (first / "train-op" / "model" / "model.joblib").read_bytes()
    b = (second / "train-op" / "model" / "model.joblib").read_bytes()
    assert a == b


def test_second_run_is_gated_against_the_first_production_model(two_runs):
    tmp, (first, second), _ = two_runs
    first_version = json.loads((first / "package-op" / "executor_output.json").read_text())["parameterValues"]["Output"]
    decision = json.loads((second / "gate-op" / "decision").read_text())
    assert decision["production"] == first_version
    assert any("production" in c["check"] for c in decision["checks"])
    idx = json.loads((tmp / "registry" / "churn" / "index.json").read_text())
    assert len(idx["versions"]) == 2 and idx["production"] != first_version


def test_predict_on_test_split_reproduces_evaluate_metrics(two_runs, tmp_path):
    _, (first, _), _ = two_runs
    res = CliRunner().invoke(
        app, ["predict", str(first / "package-op" / "packaged"), str(first / "split-op" / "test"), "--metrics-out", str(tmp_path / "m.json")]
    )
    assert res.exit_code == 0, res.output
    got = json.loads((tmp_path / "m.json").read_text())
    want = json.loads((first / "evaluate-op" / "evaluation").read_text())["test"]
    assert {k: v for k, v in got.items() if isinstance(v, float)} == {k: v for k, v in want.items() if isinstance(v, float)}


def test_gate_rejection_skips_package_and_deploy(tmp_path, repo_root):
    cfg = small_config(repo_root, tmp_path, gate={"min_metrics": {"roc_auc": 0.999}})
    res = CliRunner().invoke(app, ["run", str(cfg), "--pipeline-root", str(tmp_path / "runs")])
    assert res.exit_code == 0, res.output
    (run,) = run_dirs(tmp_path / "runs")
    assert json.loads((run / "gate-op" / "decision").read_text())["blessed"] is False
    assert not (run / "package-op").exists() and not (run / "deploy-op").exists()
    assert not (tmp_path / "registry" / "churn" / "index.json").exists()


def test_hard_validation_failure_fails_the_run(tmp_path, repo_root):
    cfg = small_config(repo_root, tmp_path, validation={"columns": {"tenure": {"dtype": "int", "max": 10}}})
    res = CliRunner().invoke(app, ["run", str(cfg), "--pipeline-root", str(tmp_path / "runs")])
    assert res.exit_code == 2
    assert "error: pipeline failed" in res.output and "validate-op" in res.output
    (run,) = run_dirs(tmp_path / "runs")
    assert not (run / "train-op").exists()
    report = json.loads((run / "validate-op" / "report").read_text())
    assert any("tenure" in f for f in report["hard_failures"])
