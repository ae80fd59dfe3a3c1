"""gRPC is off by default and, when asked for, serves the same predictions (KServe's own gRPC client)
with client mistakes mapped to INVALID_ARGUMENT, never INTERNAL."""

from __future__ import annotations

import asyncio
import sys

import numpy as np
import pytest
from serving_support import MODEL_NAME, ServerProcess, expected, free_port, v2_column_tensors

NP = {"INT64": np.int64, "FP64": np.float64, "BOOL": bool, "BYTES": object}


def infer_inputs(tensors):
    from kserve import InferInput

    out = []
    for t in tensors:
        inp = InferInput(t["name"], t["shape"], t["datatype"])
        inp.set_data_from_numpy(np.asarray(t["data"], dtype=NP[t["datatype"]]))
        out.append(inp)
    return out


def test_grpc_is_off_by_default(server):
    assert "gRPC server" not in server.log()


def test_grpc_predictions_and_errors(model_dir, packaged, rows, tmp_path, monkeypatch):
    import grpc

    monkeypatch.setattr(sys, "argv", ["pytest"])  # `import kserve` parses sys.argv
    from kserve import InferenceGRPCClient, InferRequest

    grpc_port = free_port()
    df = rows.head(12)
    good = infer_inputs(v2_column_tensors(df, packaged.signature))
    bad = infer_inputs([t for t in v2_column_tensors(df, packaged.signature) if t["name"] != "contract"])

    async def call(inputs):
        client = InferenceGRPCClient(f"127.0.0.1:{grpc_port}", timeout=30)
        try:
            return await client.infer(InferRequest(model_name=MODEL_NAME, infer_inputs=inputs))
        finally:
            await client.close()

    with ServerProcess(model_dir, tmp_path / "server.log", "--enable-grpc", "--grpc-port", str(grpc_port)) as srv:
        srv.wait_ready()
        res = asyncio.run(call(good))
        with pytest.raises(grpc.RpcError) as err:
            asyncio.run(call(bad))
        assert f"127.0.0.1:{grpc_port}" in srv.log()  # bound to the requested host, not [::]
    out = {o.name: o.as_numpy() for o in res.outputs}
    labels, proba = expected(packaged, df)
    assert [v.decode() if isinstance(v, bytes) else v for v in out["prediction"].tolist()] == labels
    assert np.array_equal(out["probability"], proba)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "contract" in err.value.details()
