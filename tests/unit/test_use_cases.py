"""Every shipped config runs the full stage chain (ingest → package) with no code of its own: the
pipeline is generic. Tuning is shortened; data sets are the shipped ones (sampled where large)."""

from __future__ import annotations

import json

import pytest

from mlpipeline.config import load_config
from mlpipeline.packaging import PackagedModel
from mlpipeline.stages import (
    eda,
    evaluate,
    features,
    gate,
    ingest,
    package,
    preprocess,
    split,
    train,
    tune,
    validate,
)

CASES = {
    # config: (sample_rows, metric, floor) — floors well below what the full runs reach
    "churn": (None, "roc_auc", 0.83),  # the bar, on the full 7,043 rows
    "fraud": (None, "roc_auc", 0.70),
    "maintenance": (None, "roc_auc", 0.85),
    "demand": (None, "mape", None),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_config_runs_end_to_end(name, repo_root, tmp_path):
    sample, metric, floor = CASES[name]
    cfg = load_config(repo_root / "configs" / f"{name}.yaml")
    s = cfg.sections()
    if sample:
        s["data"] = dict(s["data"], sample_rows=sample)
    fams = list(s["tune"]["families"])
    s["tune"] = dict(s["tune"], families=[f for f in fams if f != "torch_mlp"], n_trials=3, timeout_s=120)
    d = tmp_path
    ingest.ingest(s["data"], d / "data", d / "schema.json")
    validate.validate(d / "data", s["data"], s["validation"], d / "report.json")
    eda.eda(d / "data", s["data"], s["eda"], d / "eda.html", d / "eda.md")
    split.split(d / "data", s["data"], s["split"], d / "tr", d / "va", d / "te", d / "split.json")
    preprocess.preprocess(d / "tr", s["data"], s["preprocess"], s["features"], d / "pre", d / "pre.json")
    features.features(d / "tr", d / "pre", s["data"], s["features"], d / "feat", d / "feat.json")
    tune.tune(d / "tr", d / "va", d / "feat", s["data"], s["tune"], s["train"], d / "best.json", d / "trials.csv")
    train.train(d / "tr", d / "feat", d / "best.json", s["data"], s["train"], d / "model")
    m = evaluate.evaluate(d / "model", d / "va", d / "te", s["data"], s["evaluate"], s["validation"], d / "m.json", d / "sig.json", d / "eval.html")
    if floor is not None:
        assert m["test"][metric] > floor, m["test"]
    else:
        assert 0 < m["test"]["mape"] < 0.3 and m["test"]["rmse"] > 0
    reg = {**s["registry"], "path": str(d / "registry")}
    gate.gate(d / "m.json", s["gate"], reg, d / "gate.json")
    conf = {**cfg.model_dump(mode="json"), **s, "registry": reg}
    out = package.package(d / "model", d / "m.json", d / "sig.json", d / "schema.json", d / "split.json", conf, d / "pkg")
    model = PackagedModel.load(d / "pkg")
    assert model.version == out["version"]
    import pandas as pd

    preds = model.predict_frame(pd.read_parquet(d / "te").head(20), allow_extra=True)
    assert len(preds) == 20
    if name == "maintenance":
        info = json.loads((d / "split.json").read_text())
        assert info["method"] == "grouped by machine_id"
        machines = [set(pd.read_parquet(d / p)["machine_id"]) for p in ("tr", "va", "te")]
        assert not (machines[0] & machines[2]) and not (machines[0] & machines[1])
