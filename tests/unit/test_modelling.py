"""The modelling chain run as plain functions (no kfp): split → preprocess → features → tune → train
→ evaluate → gate → package, on a 1,500-row churn sample."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mlpipeline.artifacts import sha256_file
from mlpipeline.errors import ArtifactError, DataError, IntegrityError, TrainingError
from mlpipeline.stages import evaluate, features, gate, package, preprocess, split, train, tune

FAST_TUNE = {"families": ["logistic_regression", "gradient_boosting"], "n_trials": 4, "timeout_s": 120, "seed": 7}


@pytest.fixture(scope="module")
def chain(tmp_path_factory, churn_config):
    from mlpipeline.datasets import load_dataset

    d = tmp_path_factory.mktemp("chain")
    s = churn_config.sections()
    s["tune"] = FAST_TUNE
    df = load_dataset("churn").sample(1500, random_state=0).reset_index(drop=True)
    df.to_parquet(d / "data.parquet", index=False)
    (d / "schema.json").write_text(json.dumps({"sha256": "x" * 64, "source": "test"}))
    split.split(d / "data.parquet", s["data"], s["split"], d / "train", d / "val", d / "test", d / "split.json")
    preprocess.preprocess(d / "train", s["data"], s["preprocess"], s["features"], d / "pre", d / "pre.json")
    features.features(d / "train", d / "pre", s["data"], s["features"], d / "feat", d / "feat.json")
    tune.tune(d / "train", d / "val", d / "feat", s["data"], s["tune"], s["train"], d / "best.json", d / "trials.csv")
    train.train(d / "train", d / "feat", d / "best.json", s["data"], s["train"], d / "model")
    evaluate.evaluate(d / "model", d / "val", d / "test", s["data"], s["evaluate"], s["validation"], d / "metrics.json", d / "sig.json", d / "eval.html")
    return d, s


def test_split_is_stratified_and_disjoint(chain):
    d, _ = chain
    info = json.loads((d / "split.json").read_text())
    assert info["rows"] == {"train": 900, "validation": 300, "test": 300}
    rates = [v["Yes"] / sum(v.values()) for v in info["class_balance"].values()]
    assert max(rates) - min(rates) < 0.01
    parts = [pd.read_parquet(d / p) for p in ("train", "val", "test")]
    assert len(pd.concat(parts).drop_duplicates()) == len(pd.concat(parts).drop_duplicates()), "no row lost"


def test_time_ordered_split():
    from mlpipeline.config import DataConfig, SplitConfig

    df = pd.DataFrame({"t": pd.date_range("2024-01-01", periods=100, freq="h")[::-1], "y": np.arange(100) % 2})
    tr, va, te, info = split.split_frame(df, DataConfig(source="x", target="y", time_column="t"), SplitConfig())
    assert tr["t"].max() < va["t"].min() and va["t"].max() < te["t"].min() and "time-ordered" in info["method"]


def test_split_too_small():
    from mlpipeline.config import DataConfig, SplitConfig

    with pytest.raises(DataError, match="too few"):
        split.split_frame(pd.DataFrame({"y": [0, 1, 0]}), DataConfig(source="x", target="y"), SplitConfig())


def test_features_selection_recorded(chain):
    d, _ = chain
    rep = json.loads((d / "feat.json").read_text())
    assert rep["n_selected"] == 30 and rep["n_input_features"] > 30
    scores = [r["score"] for r in rep["scores"]]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0
    assert set(rep["selected"]).isdisjoint(rep["dropped"])


def test_tune_covers_every_family(chain):
    d, _ = chain
    best = json.loads((d / "best.json").read_text())
    assert best["metric"] == "roc_auc" and best["n_complete"] == 4
    assert all(v is not None for v in best["best_by_family"].values())
    assert best["value"] == max(v for v in best["best_by_family"].values())
    assert len(pd.read_csv(d / "trials.csv")) == 4


def test_train_is_bit_reproducible(chain, tmp_path):
    d, s = chain
    a = train.train(d / "train", d / "feat", d / "best.json", s["data"], s["train"], tmp_path / "a")
    b = train.train(d / "train", d / "feat", d / "best.json", s["data"], s["train"], tmp_path / "b")
    assert a["sha256"] == b["sha256"] == sha256_file(tmp_path / "a" / "model.joblib")
    assert (tmp_path / "a" / "training_curve.png").stat().st_size > 1000


def test_torch_mlp_family_trains_with_curve(chain, tmp_path):
    d, s = chain
    (tmp_path / "best.json").write_text(json.dumps({"family": "torch_mlp", "params": {"hidden": 32, "layers": 1, "dropout": 0.0, "lr": 3e-3, "weight_decay": 1e-4}}))
    cfg = dict(s["train"], torch={"max_epochs": 8, "batch_size": 128, "patience": 3})
    info = train.train(d / "train", d / "feat", tmp_path / "best.json", s["data"], cfg, tmp_path / "m")
    assert info["estimator"] == "TorchMLPClassifier" and info["device"] == "cpu"
    losses = [c["train_loss"] for c in info["curve"]]
    assert len(losses) >= 3 and losses[-1] < losses[0]


def test_train_single_class_target(chain, tmp_path):
    d, s = chain
    df = pd.read_parquet(d / "train")
    df["churn"] = "No"
    df.to_parquet(tmp_path / "one.parquet", index=False)
    with pytest.raises(TrainingError, match="single class"):
        train.train(tmp_path / "one.parquet", d / "feat", d / "best.json", s["data"], s["train"], tmp_path / "m")


def test_evaluate_metrics_threshold_and_report(chain):
    d, _ = chain
    m = json.loads((d / "metrics.json").read_text())
    for split_name in ("validation", "test"):
        assert {"roc_auc", "pr_auc", "f1", "log_loss", "brier", "ece", "calibration"} <= set(m[split_name])
    assert 0 < m["threshold"] < 1 and m["test"]["threshold"] == m["threshold"]
    assert m["test"]["roc_auc"] > 0.78  # 1,500-row sample; the full data set is checked in the pipeline test
    html = (d / "eval.html").read_text()
    assert html.count("data:image/png;base64") >= 4
    sig = json.loads((d / "sig.json").read_text())
    assert sig["positive_class"] == "Yes" and sig["threshold"] == m["threshold"] and "churn" not in [c["name"] for c in sig["inputs"]]


def test_gate_decisions():
    from mlpipeline.config import GateConfig

    test = {"roc_auc": 0.84, "brier": 0.14}
    cfg = GateConfig(min_metrics={"roc_auc": 0.8}, max_metrics={"brier": 0.2}, max_regression=0.01)
    assert gate.decide(test, "roc_auc", cfg, None)["blessed"]
    prod = {"version": "abc", "metrics": {"roc_auc": 0.86}}
    d = gate.decide(test, "roc_auc", cfg, prod)
    assert not d["blessed"] and "production 0.8600" in d["reason"]
    assert gate.decide(test, "roc_auc", cfg.model_copy(update={"max_regression": 0.03}), prod)["blessed"]
    assert not gate.decide(test, "roc_auc", GateConfig(min_metrics={"roc_auc": 0.9}), None)["blessed"]
    from mlpipeline.errors import ConfigError

    with pytest.raises(ConfigError, match="'auc' is not computed"):
        gate.decide(test, "roc_auc", GateConfig(min_metrics={"auc": 0.5}), None)


def _package(chain, tmp_path, churn_config, name="pkg"):
    d, _ = chain
    cfg = churn_config.model_dump(mode="json")
    cfg["registry"]["path"] = str(tmp_path / "registry")
    return package.package(d / "model", d / "metrics.json", d / "sig.json", d / "schema.json", d / "split.json", cfg, tmp_path / name)


def test_package_registers_production_and_gate_reads_it(chain, tmp_path, churn_config):
    d, s = chain
    out = _package(chain, tmp_path, churn_config)
    files = sorted(p.name for p in (tmp_path / "pkg").iterdir())
    assert files == ["MANIFEST.json", "lineage.json", "metrics.json", "model.joblib", "model_card.json", "model_card.md", "signature.json"]
    idx = json.loads((tmp_path / "registry" / "churn" / "index.json").read_text())
    assert idx["production"] == out["version"] and idx["versions"][0]["metrics"]["roc_auc"] > 0.7
    lineage = json.loads((tmp_path / "pkg" / "lineage.json").read_text())
    assert lineage["model_sha256"] == sha256_file(d / "model" / "model.joblib") and len(lineage["config_hash"]) == 64
    card = (tmp_path / "pkg" / "model_card.md").read_text()
    assert "Decision threshold" in card and "| test | roc_auc |" in card
    # the gate now compares against that production model
    strict = dict(s["gate"], max_regression=0.0, min_metrics={}, max_metrics={})
    dec = gate.gate(d / "metrics.json", strict, {"path": str(tmp_path / "registry"), "model_name": "churn"}, tmp_path / "g.json")
    assert dec["production"] == out["version"] and dec["blessed"]  # equal metrics: no regression


def test_packaged_model_refuses_tampering(chain, tmp_path, churn_config):
    from mlpipeline.packaging import PackagedModel

    _package(chain, tmp_path, churn_config)
    pkg = tmp_path / "pkg"
    model = PackagedModel.load(pkg)
    assert model.version == json.loads((tmp_path / "registry" / "churn" / "index.json").read_text())["production"]
    with open(pkg / "model.joblib", "ab") as f:
        f.write(b"\0")
    with pytest.raises(IntegrityError, match="modified model.joblib"):
        PackagedModel.load(pkg)


@pytest.mark.parametrize("damage", ["remove-file", "extra-file", "no-manifest", "bad-manifest"])
def test_incomplete_model_dir_is_refused(chain, tmp_path, churn_config, damage):
    from mlpipeline.packaging import PackagedModel

    _package(chain, tmp_path, churn_config)
    pkg = tmp_path / "pkg"
    if damage == "remove-file":
        (pkg / "signature.json").unlink()
        match = "missing signature.json"
    elif damage == "extra-file":
        (pkg / "evil.pkl").write_bytes(b"x")
        match = "unexpected evil.pkl"
    elif damage == "no-manifest":
        (pkg / "MANIFEST.json").unlink()
        match = "no MANIFEST.json"
    else:
        (pkg / "MANIFEST.json").write_text("{not json")
        match = "not valid JSON"
    with pytest.raises(ArtifactError, match=match):
        PackagedModel.load(pkg)


def test_predict_cli_reproduces_evaluate_metrics_exactly(chain, tmp_path, churn_config):
    from typer.testing import CliRunner

    from mlpipeline.cli import app

    d, _ = chain
    _package(chain, tmp_path, churn_config)
    res = CliRunner().invoke(app, ["predict", str(tmp_path / "pkg"), str(d / "test"), "--output", str(tmp_path / "p.csv"), "--metrics-out", str(tmp_path / "m.json")])
    assert res.exit_code == 0, res.output
    got = json.loads((tmp_path / "m.json").read_text())
    want = json.loads((d / "metrics.json").read_text())["test"]
    for k, v in want.items():
        if isinstance(v, float):
            assert got[k] == v, k  # exact: same transform, same threshold, same code path
    preds = pd.read_csv(tmp_path / "p.csv")
    assert len(preds) == 300 and set(preds["prediction"]) <= {"Yes", "No"}


def test_predict_cli_errors_are_one_line(tmp_path):
    from typer.testing import CliRunner

    from mlpipeline.cli import app

    res = CliRunner().invoke(app, ["predict", str(tmp_path / "nope"), "x.csv"])
    assert res.exit_code == 2 and "error: model directory not found" in res.output and "Traceback" not in res.output


def test_multiclass_metrics_follow_the_models_class_order_for_int_labels():
    """Labels 1, 2, 10: their string forms sort as 1, 10, 2; metrics must still align columns."""
    from mlpipeline.scoring import classification_metrics

    classes = [1, 2, 10]
    y = np.array([1, 2, 10, 10, 2, 1])
    proba = np.eye(3)[[0, 1, 2, 2, 1, 0]] * 0.98 + 0.02 / 3  # confident and right
    m = classification_metrics(y, proba, classes)
    assert m["accuracy"] == 1.0 and m["f1_macro"] == 1.0 and m["roc_auc"] == 1.0 and m["log_loss"] < 0.05
    assert m["confusion_matrix"]["labels"] == ["1", "2", "10"]
    with pytest.raises(DataError, match="not seen in training"):
        classification_metrics(np.array([1, 3]), proba[:2], classes)
