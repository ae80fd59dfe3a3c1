from __future__ import annotations

import http.server
import json
import threading
from functools import partial

import pandas as pd
import pytest

from mlpipeline.errors import DataError, UnknownDatasetError
from mlpipeline.stages.ingest import fingerprint, ingest


def run(tmp_path, **data):
    cfg = {"target": "churn", **data}
    fp = ingest(cfg, tmp_path / "out" / "data.parquet", tmp_path / "out" / "schema.json")
    return fp, pd.read_parquet(tmp_path / "out" / "data.parquet")


def test_shipped_churn_dataset(tmp_path):
    fp, df = run(tmp_path, source="churn")
    assert fp["rows"] == 7043 and len(df.columns) == 20 and "rownames" not in df.columns
    assert df["total_charges"].isna().sum() == 11
    assert json.loads((tmp_path / "out" / "schema.json").read_text())["sha256"] == fp["sha256"]


def test_csv_and_parquet_give_the_same_fingerprint(tmp_path, churn_df):
    churn_df.to_csv(tmp_path / "d.csv", index=False)
    churn_df.to_parquet(tmp_path / "d.parquet", index=False)
    a, _ = run(tmp_path / "a", source=str(tmp_path / "d.csv"))
    b, _ = run(tmp_path / "b", source=str(tmp_path / "d.parquet"))
    assert a["sha256"] == b["sha256"] and a["rows"] == 1500


def test_http_url(tmp_path, churn_df):
    churn_df.to_csv(tmp_path / "d.csv", index=False)
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        fp, _ = run(tmp_path / "h", source=f"http://127.0.0.1:{server.server_port}/d.csv")
        assert fp["rows"] == 1500
        with pytest.raises(DataError, match="cannot download"):
            run(tmp_path / "h2", source=f"http://127.0.0.1:{server.server_port}/missing.csv")
    finally:
        server.shutdown()


def test_sample_rows_is_seeded(tmp_path):
    a, _ = run(tmp_path / "a", source="churn", sample_rows=500)
    b, _ = run(tmp_path / "b", source="churn", sample_rows=500)
    assert a["rows"] == 500 and a["sha256"] == b["sha256"]


@pytest.mark.parametrize(
    ("setup", "match"),
    [
        (lambda p: p.write_text(""), "file is empty"),
        (lambda p: p.write_text("churn,a\n"), "no rows"),
        (lambda p: p.write_text("x,y\n1,2\n"), "target column 'churn' not found"),
        (lambda p: p.write_bytes(b"\xff\xfe\x00garbage\x00\x01"), "cannot read"),
    ],
    ids=["empty-file", "header-only", "missing-target", "binary-garbage"],
)
def test_bad_files(tmp_path, setup, match):
    p = tmp_path / "bad.csv"
    setup(p)
    with pytest.raises(DataError, match=match):
        run(tmp_path, source=str(p))
    assert not (tmp_path / "out" / "data.parquet").exists(), "nothing half-written"


def test_unknown_dataset_and_missing_file(tmp_path):
    with pytest.raises(UnknownDatasetError, match="unknown dataset name 'churnn'.*churn"):
        run(tmp_path, source="churnn")
    with pytest.raises(DataError, match="data file not found"):
        run(tmp_path, source=str(tmp_path / "nope.csv"))
    with pytest.raises(DataError, match="unsupported file type"):
        (tmp_path / "x.json").write_text("{}")
        run(tmp_path, source=str(tmp_path / "x.json"))


def test_drop_columns_must_exist(tmp_path):
    with pytest.raises(DataError, match="drop_columns.*nope"):
        run(tmp_path, source="churn", drop_columns=["nope"])


def test_synthetic_generators_are_seeded_and_realistic():
    from mlpipeline.datasets import load_dataset

    f1, f2 = load_dataset("fraud", seed=1), load_dataset("fraud", seed=1)
    assert fingerprint(f1)["sha256"] == fingerprint(f2)["sha256"]
    rate = f1["is_fraud"].mean()
    assert 0.003 < rate < 0.05, rate  # rare positives
    assert f1.loc[f1.is_fraud == 1, "amount"].median() > f1.loc[f1.is_fraud == 0, "amount"].median()
    m = load_dataset("maintenance", seed=1)
    assert set(m["failure_within_20"].unique()) == {0, 1}
    late = m.groupby("machine_id").tail(10)["vibration"].mean()
    early = m.groupby("machine_id").head(10)["vibration"].mean()
    assert late > early  # wear shows in the signal
