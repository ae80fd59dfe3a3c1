"""Baseline servers for benchmarks/serving_bench.py, each doing the same model work as ours
(``predict_proba`` of the packaged sklearn Pipeline on a DataFrame of the request rows):

- ``stock``: a minimal ``kserve.Model`` on KServe's ModelServer, the way KServe's docs write one
  (no signature checks, no request metrics beyond KServe's own);
- ``fastapi``: a bare FastAPI + uvicorn app with one POST route.

Run: ``python benchmarks/baselines.py {stock|fastapi} MODEL_DIR PORT``.
"""


import sys


def load(model_dir: str):
    # The benchmark compares serving overhead, so the baselines load the same verified model.
    from mlpipeline.packaging import PackagedModel

    return PackagedModel.load(model_dir)


def score(pm, instances):
    import pandas as pd

    df = pd.DataFrame(instances)
    proba = pm.estimator.predict_proba(df)
    return proba[:, list(pm.signature.classes).index(pm.signature.positive_class)].tolist()


def stock(model_dir: str, port: int) -> None:
    sys.argv = [sys.argv[0], "--http_port", str(port), "--enable_grpc", "false"]
    import kserve

    class Stock(kserve.Model):
        def load(self) -> bool:
            self.pm = load(model_dir)
            self.ready = True
            return True

        def predict(self, payload, headers=None):
            return {"predictions": score(self.pm, payload["instances"])}

    m = Stock("churn")
    m.load()
    kserve.ModelServer(http_port=port, enable_grpc=False, workers=1).start([m])


def fastapi(model_dir: str, port: int) -> None:
    import uvicorn
    from fastapi import FastAPI, Request

    pm = load(model_dir)
    app = FastAPI()

    @app.post("/v1/models/churn:predict")
    async def predict(request: Request):
        body = await request.json()
        return {"predictions": score(pm, body["instances"])}

    @app.get("/v2/health/ready")
    async def ready():
        return {"ready": True}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    kind, model_dir, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    {"stock": stock, "fastapi": fastapi}[kind](model_dir, port)
