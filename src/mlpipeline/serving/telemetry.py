"""Prometheus telemetry of the predictor: request middleware, prediction counts, ``/metrics``.

Multiprocess mode (``--workers N``): :func:`prepare_multiprocess_dir` must run before
``prometheus_client`` is first imported (its value class is chosen at import), wipes stale ``*.db``
files, and every scrape then builds a fresh registry with a ``MultiProcessCollector`` so the
exposition is the sum over workers.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.requests import Request

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_INFER_PATH = re.compile(r"^/(?P<proto>v1)/models/(?P<name>[^/]+):predict$|^/(?P<proto2>v2)/models/(?P<name2>[^/]+)(?:/versions/[^/]+)?/infer$")


def prepare_multiprocess_dir(path: str | os.PathLike[str]) -> Path:
    """Point prometheus_client at ``path`` (created, stale ``*.db`` removed) for this process tree."""
    if "prometheus_client" in sys.modules and os.environ.get(MULTIPROC_ENV) != str(path):
        from mlpipeline.errors import ConfigError

        raise ConfigError(
            "prometheus_client was imported before the multiprocess metrics directory was set; "
            f"set {MULTIPROC_ENV} before starting the process or start the server in a fresh process"
        )
    d = Path(path)
    d.mkdir(parents=True, exist_ok=True)
    for f in d.glob("*.db"):
        f.unlink()
    os.environ[MULTIPROC_ENV] = str(d)
    return d


def multiprocess_enabled() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


def classify_path(path: str) -> tuple[str, str] | None:
    """``(protocol, model_name)`` for an inference route, else None."""
    m = _INFER_PATH.match(path)
    if not m:
        return None
    if m.group("proto"):
        return "v1", m.group("name")
    return "v2", m.group("name2")


async def metrics_endpoint(request: Request) -> Any:
    """``GET /metrics``: the default registry, or the sum over workers in multiprocess mode."""
    from prometheus_client import REGISTRY, CollectorRegistry, exposition
    from prometheus_client.multiprocess import MultiProcessCollector
    from starlette.responses import Response

    if multiprocess_enabled():
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    encoder, content_type = exposition.choose_encoder(request.headers.get("accept"))
    return Response(content=encoder(registry), headers={"content-type": content_type})


class InferenceMetricsMiddleware:
    """Pure ASGI middleware: request count by status code, latency and in-flight, inference routes only.

    The model label is the path's model name when this server serves it, else ``unknown`` (bounded
    label cardinality whatever clients send).
    """

    def __init__(self, app: Any, served: Callable[[], set[str]]):
        self.app = app
        self.served = served

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        route = classify_path(scope.get("path", "")) if scope["type"] == "http" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        from mlpipeline import metrics as m

        protocol, name = route
        model = name if name in self.served() else "unknown"
        status = {"code": 500}

        async def send_wrapper(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        in_flight = m.INFERENCE_IN_FLIGHT.labels(model=model)
        in_flight.inc()
        start = time.perf_counter()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            in_flight.dec()
            m.INFERENCE_DURATION.labels(model=model, protocol=protocol).observe(time.perf_counter() - start)
            m.INFERENCE_REQUESTS.labels(model=model, protocol=protocol, code=str(status["code"])).inc()


def record_predictions(model: str, signature: Any, pred: Any) -> None:
    """Rows scored and predicted classes (or the value histogram for regression)."""
    from mlpipeline import metrics as m

    m.INFERENCE_ROWS.labels(model=model).inc(len(pred))
    if signature.task == "regression":
        hist = m.INFERENCE_PREDICTION_VALUE.labels(model=model)
        for v in pred["prediction"].to_numpy("float64"):
            hist.observe(float(v))
        return
    for label, count in pred["prediction"].value_counts(sort=False).items():
        m.INFERENCE_PREDICTIONS.labels(model=model, **{"class": str(label)}).inc(int(count))


def publish_model_info(model: str, version: str, sha256: str) -> None:
    from mlpipeline import metrics as m

    m.MODEL_INFO.labels(model=model, version=version, sha256=sha256).set(1)
