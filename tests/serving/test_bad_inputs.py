"""A client's mistakes get a 4xx with a JSON body naming the problem, never a 5xx; the server stays up."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from serving_support import MAX_BATCH_ROWS, MAX_BODY_BYTES, MODEL_NAME, records, v2_column_tensors

V1 = f"/v1/models/{MODEL_NAME}:predict"
V2 = f"/v2/models/{MODEL_NAME}/infer"


@dataclass
class Case:
    name: str
    path: str
    body: Callable[[dict[str, Any], list[dict[str, Any]]], Any]  # (valid record, valid v2 tensors) -> payload
    status: int
    needle: str  # must appear in the error message (case-insensitive)
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "POST"
    raw: bool = False  # body() returns bytes to send as-is


def with_(rec: dict[str, Any], **kv: Any) -> dict[str, Any]:
    return {**rec, **kv}


def without(rec: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in rec.items() if k != key}


def tensor(tensors: list[dict[str, Any]], name: str, **kv: Any) -> list[dict[str, Any]]:
    return [{**t, **kv} if t["name"] == name else t for t in tensors]


CASES = [
    # ---- v1
    Case("v1-malformed-json", V1, lambda r, t: b'{"instances": [', 400, "not valid json", raw=True),
    Case("v1-empty-body", V1, lambda r, t: b"", 400, "empty", raw=True),
    Case("v1-nan-literal", V1, lambda r, t: b'{"instances": [{"tenure": NaN}]}', 400, "not valid json", raw=True),
    Case("v1-body-not-object", V1, lambda r, t: [r], 422, "json object"),
    Case("v1-no-instances", V1, lambda r, t: {"rows": [r]}, 422, "instances"),
    Case("v1-instances-not-list", V1, lambda r, t: {"instances": r}, 400, "instances"),
    Case("v1-empty-batch", V1, lambda r, t: {"instances": []}, 400, "empty batch"),
    Case("v1-missing-column", V1, lambda r, t: {"instances": [r, without(r, "tenure")]}, 400, "instances[1]: missing column(s): tenure"),
    Case("v1-extra-column", V1, lambda r, t: {"instances": [with_(r, favourite_colour="blue")]}, 400, "unexpected column(s): favourite_colour"),
    Case("v1-wrong-dtype-int", V1, lambda r, t: {"instances": [with_(r, tenure="abc")]}, 400, "'tenure'"),
    Case("v1-bool-as-number", V1, lambda r, t: {"instances": [with_(r, monthly_charges=True)]}, 400, "'monthly_charges'"),
    Case("v1-null-not-allowed", V1, lambda r, t: {"instances": [with_(r, tenure=None)]}, 400, "'tenure': null"),
    Case("v1-infinity", V1, lambda r, t: {"instances": [with_(r, total_charges="Infinity")]}, 400, "'total_charges': infinite"),
    Case("v1-object-in-str-column", V1, lambda r, t: {"instances": [with_(r, contract={"a": 1})]}, 400, "'contract'"),
    Case("v1-not-a-boolean", V1, lambda r, t: {"instances": [with_(r, has_internet="maybe")]}, 400, "'has_internet'"),
    Case("v1-row-wrong-length", V1, lambda r, t: {"instances": [list(r.values())[:-1]]}, 400, "signature order"),
    Case("v1-mixed-rows", V1, lambda r, t: {"instances": [r, list(r.values())]}, 400, "instances[1]"),
    Case("v1-scalar-instances", V1, lambda r, t: {"instances": [1, 2]}, 422, "instances[0]"),
    Case("v1-too-many-rows", V1, lambda r, t: {"instances": [r] * (MAX_BATCH_ROWS + 1)}, 413, f"limit of {MAX_BATCH_ROWS} rows"),
    Case("v1-body-too-large", V1, lambda r, t: {"instances": [r], "id": "x" * MAX_BODY_BYTES}, 413, "bytes"),
    Case("v1-text-plain", V1, lambda r, t: json.dumps({"instances": [r]}).encode(), 415, "content-type", {"content-type": "text/plain"}, raw=True),
    Case("v1-unknown-model", "/v1/models/nope:predict", lambda r, t: {"instances": [r]}, 404, "'nope' is not served"),
    Case("v1-odd-model-name", "/v1/models/a:b:c:predict", lambda r, t: {"instances": [r]}, 404, "not served"),
    Case("v1-model-ready-unknown", "/v1/models/nope", lambda r, t: None, 404, "nope", method="GET"),
    # ---- v2
    Case("v2-malformed-json", V2, lambda r, t: b'{"inputs": [{"name": ', 400, "not valid json", raw=True),
    Case("v2-no-inputs", V2, lambda r, t: {"id": "1"}, 422, "inputs"),
    Case("v2-empty-inputs", V2, lambda r, t: {"inputs": []}, 422, "inputs"),
    Case("v2-data-not-list", V2, lambda r, t: {"inputs": tensor(t, "tenure", data=5)}, 422, "inputs.4.data"),
    Case("v2-unknown-datatype", V2, lambda r, t: {"inputs": tensor(t, "tenure", datatype="FP99")}, 400, "'tenure'"),
    Case("v2-wrong-datatype", V2, lambda r, t: {"inputs": tensor(t, "tenure", datatype="BYTES", data=["x"])}, 400, "datatype bytes does not fit column type int"),
    Case("v2-shape-mismatch", V2, lambda r, t: {"inputs": tensor(t, "tenure", shape=[3])}, 400, "does not fit shape"),
    Case("v2-bad-shape-rank", V2, lambda r, t: {"inputs": tensor(t, "tenure", shape=[1, 1, 1])}, 400, "shape"),
    Case("v2-missing-tensor", V2, lambda r, t: {"inputs": [x for x in t if x["name"] != "contract"]}, 400, "missing input tensor(s): contract"),
    Case("v2-unknown-tensor", V2, lambda r, t: {"inputs": t + [{"name": "zip", "shape": [1], "datatype": "INT64", "data": [1]}]}, 400, "'zip'"),
    Case("v2-duplicate-tensor", V2, lambda r, t: {"inputs": t + [t[0]]}, 400, "more than once"),
    Case("v2-lengths-differ", V2, lambda r, t: {"inputs": tensor(t, "tenure", shape=[2], data=[1, 2])}, 400, "different lengths"),
    Case("v2-matrix-wrong-width", V2, lambda r, t: {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "BYTES", "data": [["a", "b", "c"]]}]}, 400, "shape [n, 20]"),
    Case("v2-matrix-fp64-with-strings", V2, lambda r, t: {"inputs": [{"name": "x", "shape": [1, 20], "datatype": "FP64", "data": [0.0] * 20}]}, 400, "bytes"),
    Case("v2-null-not-allowed", V2, lambda r, t: {"inputs": tensor(t, "tenure", datatype="FP64", data=[None])}, 400, "'tenure': null"),
    Case("v2-unknown-output", V2, lambda r, t: {"inputs": t, "outputs": [{"name": "shap_values"}]}, 400, "shap_values"),
    Case("v2-binary-bad-header", V2, lambda r, t: b'{"inputs": []}', 400, "inference-header-content-length", {"inference-header-content-length": "abc"}, raw=True),
    Case("v2-binary-header-too-long", V2, lambda r, t: b'{"inputs": []}', 400, "does not fit", {"inference-header-content-length": "9999"}, raw=True),
    Case("v2-binary-missing-data", V2, lambda r, t: b'{"inputs": [{"name": "tenure", "shape": [1], "datatype": "INT64"}]}', 400, "tenure", {"inference-header-content-length": "67"}, raw=True),
    Case("v2-unknown-model", "/v2/models/nope/infer", lambda r, t: {"inputs": t}, 404, "'nope' is not served"),
    Case("v2-odd-model-name", "/v2/models/%2E%2E%2Fx/infer", lambda r, t: {"inputs": t}, 404, "no route for post"),
    Case("v2-unknown-version-infer", f"/v2/models/{MODEL_NAME}/versions/7/infer", lambda r, t: {"inputs": t}, 404, "versions/7"),
    Case("v2-metadata-unknown-model", "/v2/models/nope", lambda r, t: None, 404, "nope", method="GET"),
    Case("v2-repository-load", f"/v2/repository/models/{MODEL_NAME}/load", lambda r, t: None, 404, "repository extension is disabled"),
    Case("v2-unknown-version-metadata", f"/v2/models/{MODEL_NAME}/versions/7", lambda r, t: None, 404, "versions/7", method="GET"),
    Case("v2-unknown-version-ready", f"/v2/models/{MODEL_NAME}/versions/7/ready", lambda r, t: None, 404, "versions/7", method="GET"),
    Case("unknown-route", "/v3/anything", lambda r, t: None, 404, "no route for get /v3/anything", method="GET"),
    Case("wrong-method", V2, lambda r, t: None, 405, "method not allowed", method="GET"),
]


@pytest.fixture(scope="module")
def valid(rows, packaged):
    one = rows.head(1)
    return records(one)[0], v2_column_tensors(one, packaged.signature)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_request_is_a_4xx_with_a_helpful_json_body(server, valid, case: Case):
    rec, tensors = valid
    payload = case.body(rec, tensors)
    kwargs: dict[str, Any] = {"headers": case.headers, "timeout": 30}
    if payload is not None:
        kwargs["content" if case.raw else "json"] = payload
    if case.raw and "content-type" not in case.headers and "inference-header-content-length" not in case.headers:
        kwargs["headers"] = {"content-type": "application/json"}
    r = httpx.request(case.method, server.url + case.path, **kwargs)
    assert r.status_code == case.status, f"{r.status_code}: {r.text[:500]}"
    body = r.json()
    assert set(body) >= {"error", "type"}, body
    assert case.needle.lower() in body["error"].lower(), body


def test_no_5xx_and_server_still_serving(server, valid):
    """After every bad request above (run first in this module order) the server answers normally."""
    rec, _ = valid
    r = httpx.post(server.url + V1, json={"instances": [rec]})
    assert r.status_code == 200
    metrics = httpx.get(server.url + "/metrics").text
    codes = {
        line.split('code="')[1].split('"')[0]
        for line in metrics.splitlines()
        if line.startswith("mlpipeline_inference_requests_total{")
    }
    assert codes and all(not c.startswith("5") for c in codes), codes


def test_chunked_body_over_the_limit_is_413(server):
    """No Content-Length to check up front: the limit is enforced while the body streams in."""

    def chunks():
        yield b'{"instances": ['
        for _ in range(MAX_BODY_BYTES // 50_000 + 2):
            yield b"[" + b"1," * 25_000 + b"1],"
        yield b"[1]]}"

    r = httpx.post(server.url + V1, content=chunks(), headers={"content-type": "application/json"}, timeout=30)
    assert "content-length" not in {k.lower() for k in r.request.headers}
    assert r.status_code == 413, r.text[:300]
    assert f"limit of {MAX_BODY_BYTES} bytes" in r.json()["error"]
