"""The predictor over real HTTP: v1 and v2 (JSON and binary tensors), with httpx, KServe's own REST
client and tritonclient; predictions must equal ``PackagedModel.predict_frame`` on the same rows."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import numpy as np
import pytest
from serving_support import MODEL_NAME, expected, records, v2_column_tensors

V1 = f"/v1/models/{MODEL_NAME}:predict"
V2 = f"/v2/models/{MODEL_NAME}/infer"


def test_health_and_metadata(server, packaged):
    assert httpx.get(server.url + "/v2/health/live").json() == {"live": True}
    assert httpx.get(server.url + "/v2/health/ready").json() == {"ready": True}
    meta = httpx.get(f"{server.url}/v2/models/{MODEL_NAME}").json()
    assert [i["name"] for i in meta["inputs"]] == packaged.signature.input_names
    types = {i["name"]: i["datatype"] for i in meta["inputs"]}
    assert types["tenure"] == "INT64" and types["monthly_charges"] == "FP64"
    assert types["contract"] == "BYTES" and types["has_internet"] == "BOOL"
    assert meta["outputs"] == [
        {"name": "prediction", "datatype": "BYTES", "shape": [-1]},
        {"name": "probability", "datatype": "FP64", "shape": [-1]},
    ]


def test_v1_objects_equal_predict_frame(server, packaged, rows):
    r = httpx.post(server.url + V1, json={"instances": records(rows)})
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    labels, proba = expected(packaged, rows)
    assert [p["label"] for p in preds] == labels
    assert np.array_equal([p["probability"] for p in preds], proba)
    assert rows["total_charges"].isna().sum() == 3  # the NaN rows went through


def test_v1_rows_in_signature_order(server, packaged, rows):
    names = packaged.signature.input_names
    body = {"instances": [[rec[c] for c in names] for rec in records(rows.head(20))]}
    preds = httpx.post(server.url + V1, json=body).json()["predictions"]
    labels, proba = expected(packaged, rows.head(20))
    assert [p["label"] for p in preds] == labels
    assert np.array_equal([p["probability"] for p in preds], proba)


def test_v1_without_content_type_is_read_as_json(server, packaged, rows):
    body = json.dumps({"instances": records(rows.head(3))}).encode()
    r = httpx.post(server.url + V1, content=body)  # httpx sets no Content-Type for raw content
    assert "content-type" not in r.request.headers
    assert r.status_code == 200, r.text
    assert [p["label"] for p in r.json()["predictions"]] == expected(packaged, rows.head(3))[0]


def test_v2_column_tensors_equal_predict_frame(server, packaged, rows):
    body = {"id": "req-1", "inputs": v2_column_tensors(rows, packaged.signature)}
    r = httpx.post(server.url + V2, json=body)
    assert r.status_code == 200, r.text
    out = {o["name"]: o for o in r.json()["outputs"]}
    labels, proba = expected(packaged, rows)
    assert r.json()["id"] == "req-1" and r.json()["model_version"] == packaged.version
    assert out["prediction"]["datatype"] == "BYTES" and out["prediction"]["shape"] == [len(rows)]
    assert out["prediction"]["data"] == labels
    assert np.array_equal(out["probability"]["data"], proba)


def test_v2_single_bytes_matrix(server, packaged, rows):
    df = rows.head(25)
    names = packaged.signature.input_names
    matrix = [["" if v is None else str(v) for v in (rec[c] for c in names)] for rec in records(df)]
    body = {"inputs": [{"name": "instances", "shape": [len(df), len(names)], "datatype": "BYTES", "data": matrix}]}
    r = httpx.post(server.url + V2, json=body)
    assert r.status_code == 200, r.text
    out = {o["name"]: o["data"] for o in r.json()["outputs"]}
    labels, proba = expected(packaged, df)
    assert out["prediction"] == labels
    np.testing.assert_allclose(out["probability"], proba, rtol=0, atol=1e-12)


def test_kserve_rest_client_v1_and_v2(server, packaged, rows):
    from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

    df = rows.head(15)
    labels, proba = expected(packaged, df)

    async def run() -> tuple[Any, Any]:
        v1 = InferenceRESTClient(RESTConfig(protocol="v1", timeout=30))
        res1 = await v1.infer(server.url, {"instances": records(df)}, model_name=MODEL_NAME)
        await v1.close()
        v2 = InferenceRESTClient(RESTConfig(protocol="v2", timeout=30))
        inputs = []
        for t in v2_column_tensors(df, packaged.signature):
            inp = InferInput(t["name"], t["shape"], t["datatype"])
            np_dtype = {"INT64": np.int64, "FP64": np.float64, "BOOL": bool, "BYTES": object}[t["datatype"]]
            inp.set_data_from_numpy(np.asarray(t["data"], dtype=np_dtype), binary_data=t["datatype"] != "BYTES")
            inputs.append(inp)
        res2 = await v2.infer(server.url, InferRequest(model_name=MODEL_NAME, infer_inputs=inputs), model_name=MODEL_NAME)
        await v2.close()
        return res1, res2

    res1, res2 = asyncio.run(run())
    assert [p["label"] for p in res1["predictions"]] == labels
    assert np.array_equal([p["probability"] for p in res1["predictions"]], proba)
    out = {o.name: o.as_numpy() for o in res2.outputs}
    assert [v.decode() if isinstance(v, bytes) else v for v in out["prediction"].tolist()] == labels
    assert np.array_equal(out["probability"], proba)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_http(server, packaged, rows, binary):
    import tritonclient.http as th

    df = rows.head(30).copy()
    client = th.InferenceServerClient(url=server.url.removeprefix("http://"))
    try:
        assert client.is_server_ready() and client.is_model_ready(MODEL_NAME)
        meta = client.get_model_metadata(MODEL_NAME)
        assert len(meta["inputs"]) == len(packaged.signature.inputs)
        inputs = []
        for spec in packaged.signature.inputs:
            if spec.dtype == "str":
                arr = df[spec.name].astype(object).to_numpy()
            elif spec.dtype == "bool":
                arr = df[spec.name].to_numpy(dtype=bool)
            else:
                arr = df[spec.name].to_numpy(dtype={"int": np.int64, "float": np.float64}[spec.dtype])
            inp = th.InferInput(spec.name, list(arr.shape), {"str": "BYTES", "bool": "BOOL", "int": "INT64", "float": "FP64"}[spec.dtype])
            inp.set_data_from_numpy(arr, binary_data=binary)
            inputs.append(inp)
        outputs = [th.InferRequestedOutput(n, binary_data=binary) for n in ("prediction", "probability")]
        res = client.infer(MODEL_NAME, inputs, outputs=outputs)
    finally:
        client.close()
    labels, proba = expected(packaged, df)
    got = [v.decode() if isinstance(v, bytes) else v for v in res.as_numpy("prediction").tolist()]
    assert got == labels
    assert np.array_equal(res.as_numpy("probability"), proba)


def test_v2_versioned_routes_take_the_served_version(server, packaged, rows):
    base = f"{server.url}/v2/models/{MODEL_NAME}/versions/{packaged.version}"
    assert httpx.get(base).json()["versions"] == [packaged.version]
    assert httpx.get(base + "/ready").json() == {"name": MODEL_NAME, "ready": True}
    r = httpx.post(base + "/infer", json={"inputs": v2_column_tensors(rows.head(4), packaged.signature)})
    assert r.status_code == 200, r.text
    assert {o["name"]: o for o in r.json()["outputs"]}["prediction"]["data"] == expected(packaged, rows.head(4))[0]
