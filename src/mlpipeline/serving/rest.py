"""HTTP layer on KServe's FastAPI app: robust inference routes, body limit, errors, metrics.

KServe's stock routes decode bodies in several places that turn a client's mistake into a 5xx (a
v2 body without Content-Type, KeyErrors in the binary-tensor parser, odd model names, repository
endpoints). The two inference routes are therefore registered here *before* KServe's (Starlette
matches in order): they parse the body with KServe's own datamodels under guard, then hand the
decoded request to KServe's ``DataPlane.infer`` → ``Model.__call__`` (pre → validate → predict →
post, timed by KServe) and ``DataPlane.encode``. Health, readiness and model metadata stay KServe's.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, FastAPI, Request, Response

from mlpipeline.errors import PayloadTooLargeError
from mlpipeline.serving.errors import (
    ModelNotFoundError,
    RequestFieldError,
    RequestSchemaError,
    RouteNotFoundError,
    UnsupportedMediaTypeError,
    error_response,
    install_exception_handlers,
    json_response,
)
from mlpipeline.serving.telemetry import InferenceMetricsMiddleware, metrics_endpoint

INFERENCE_HEADER = "inference-header-content-length"
_JSON_TYPES = ("application/json", "application/cloudevents+json", "application/ld+json")


class BodyLimitMiddleware:
    """Answer 413 when a request body is over ``max_bytes`` (Content-Length first, then as streamed)."""

    def __init__(self, app: Any, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                await error_response(RequestFieldError("Content-Length is not an integer", "Content-Length"))(scope, receive, send)
                return
            if size > limit:
                err = PayloadTooLargeError(f"request body of {size} bytes is over this server's limit of {limit} bytes")
                await error_response(err)(scope, receive, send)
                return
        seen = 0

        async def limited_receive() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise PayloadTooLargeError(f"request body is over this server's limit of {limit} bytes")
            return message

        await self.app(scope, limited_receive, send)


def _media_type(request: Request) -> str | None:
    raw = request.headers.get("content-type")
    return raw.split(";")[0].strip().lower() if raw else None


def _require_json(request: Request) -> None:
    """JSON bodies may come without a Content-Type (tritonclient sends none); any other type is refused."""
    media = _media_type(request)
    if media is not None and media not in _JSON_TYPES:
        raise UnsupportedMediaTypeError(
            f"Content-Type {media!r} is not accepted here; send JSON (application/json)", "Content-Type"
        )


def _loads(body: bytes) -> Any:
    if not body:
        raise RequestFieldError("request body is empty; send a JSON object", "<body>")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise RequestFieldError(f"request body is not valid JSON: {e}", "<body>") from e


def _schema_error(err: Any, prefix: str = "") -> RequestSchemaError:
    parts, first = [], None
    for e in err.errors():
        loc = prefix + ".".join(str(p) for p in e.get("loc", ()))
        first = first or loc
        parts.append(f"{loc or '<body>'}: {e.get('msg')}")
    return RequestSchemaError("request does not match the v2 inference schema: " + "; ".join(parts), first)


def decode_v2(body: bytes, headers: dict[str, str], model_name: str) -> Any:
    """Raw v2 body (JSON, or JSON + binary tensors) → kserve ``InferRequest``; never a 5xx for bad input."""
    import pydantic
    from kserve import InferRequest
    from kserve.errors import InferenceError, InvalidInput
    from kserve.protocol.rest.v2_datamodels import InferenceRequest

    json_length = headers.get(INFERENCE_HEADER)
    if json_length is not None:
        try:
            n = int(json_length)
        except ValueError as e:
            raise RequestFieldError(f"{INFERENCE_HEADER} is not an integer: {json_length!r}", INFERENCE_HEADER) from e
        if not 0 < n <= len(body):
            raise RequestFieldError(f"{INFERENCE_HEADER}={n} does not fit a body of {len(body)} bytes", INFERENCE_HEADER)
        head = _loads(body[:n])
        if not isinstance(head, dict) or not isinstance(head.get("inputs"), list) or not all(
            isinstance(i, dict) and {"name", "shape", "datatype"} <= i.keys() for i in head["inputs"]
        ):
            raise RequestSchemaError("binary v2 request: JSON header needs 'inputs' with name, shape, datatype", "inputs")
        try:
            return InferRequest.from_bytes(body, n, model_name)
        except (InvalidInput, InferenceError, KeyError, TypeError, ValueError) as e:
            raise RequestFieldError(f"binary v2 request cannot be decoded: {e}", "inputs") from e
    _loads(body)  # a clear 400 for malformed JSON before schema validation
    try:
        parsed = InferenceRequest.model_validate_json(body)
    except pydantic.ValidationError as e:
        raise _schema_error(e) from e
    try:
        return InferRequest.from_inference_request(parsed, model_name)
    except (InvalidInput, InferenceError) as e:
        raise RequestFieldError(str(e), "inputs") from e


class PredictorRoutes:
    def __init__(self, dataplane: Any):
        self.dataplane = dataplane

    def served(self) -> set[str]:
        return set(self.dataplane.model_registry.get_models())

    def _check_model(self, name: str, version: str | None = None) -> Any:
        served = self.served()
        if name not in served:
            raise ModelNotFoundError(name, sorted(served))
        model = self.dataplane.model_registry.get_model(name)
        current = getattr(model, "version", None)
        if version is not None and version != current:
            raise ModelNotFoundError(f"{name}/versions/{version}", [f"{name}/versions/{current}"])
        return model

    async def v2_version_metadata(self, model_name: str, model_version: str) -> Response:
        self._check_model(model_name, model_version)
        return json_response({**(await self.dataplane.model_metadata(model_name)), "versions": [model_version]})

    async def v2_version_ready(self, model_name: str, model_version: str) -> Response:
        self._check_model(model_name, model_version)
        ready = await self.dataplane.model_ready(model_name)
        return json_response({"name": model_name, "ready": ready}, 200 if ready else 503)

    async def v1_predict(self, model_name: str, request: Request) -> Response:
        self._check_model(model_name)
        _require_json(request)
        body = _loads(await request.body())
        headers = dict(request.headers)
        response, response_headers = await self.dataplane.infer(model_name=model_name, request=body, headers=headers)
        return json_response(response, headers=_clean(response_headers))

    async def v2_infer(self, model_name: str, request: Request, model_version: str | None = None) -> Response:
        self._check_model(model_name, model_version)
        headers = dict(request.headers)
        if INFERENCE_HEADER not in headers:
            _require_json(request)
        infer_request = decode_v2(await request.body(), headers, model_name)
        response, response_headers = await self.dataplane.infer(model_name=model_name, request=infer_request, headers=headers)
        response, encoded_headers = self.dataplane.encode(model_name=model_name, response=response, headers=headers, req_attributes={})
        out_headers = _clean({**response_headers, **encoded_headers})
        if isinstance(response, bytes):
            return Response(content=response, headers=out_headers, media_type="application/octet-stream")
        return json_response(response, headers=out_headers)

    async def repository(self, model_name: str) -> Response:
        raise RouteNotFoundError("the model repository extension is disabled: this server serves one packaged model")

    def router(self) -> APIRouter:
        r = APIRouter()
        r.add_api_route("/metrics", metrics_endpoint, methods=["GET"], include_in_schema=False)
        r.add_api_route("/v1/models/{model_name}:predict", self.v1_predict, methods=["POST"], response_model=None)
        r.add_api_route("/v2/models/{model_name}/infer", self.v2_infer, methods=["POST"], response_model=None)
        r.add_api_route(
            "/v2/models/{model_name}/versions/{model_version}/infer", self.v2_infer, methods=["POST"], response_model=None
        )
        r.add_api_route("/v2/models/{model_name}/versions/{model_version}", self.v2_version_metadata, methods=["GET"])
        r.add_api_route("/v2/models/{model_name}/versions/{model_version}/ready", self.v2_version_ready, methods=["GET"])
        for action in ("load", "unload"):
            r.add_api_route(f"/v2/repository/models/{{model_name}}/{action}", self.repository, methods=["POST"])
        r.add_api_route("/v2/repository/index", self.repository_index, methods=["POST"])
        return r

    async def repository_index(self) -> Response:
        raise RouteNotFoundError("the model repository extension is disabled: this server serves one packaged model")


def _clean(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() not in ("content-length", "content-type")}


def install_routes(app: FastAPI, dataplane: Any) -> PredictorRoutes:
    routes = PredictorRoutes(dataplane)
    app.include_router(routes.router())
    return routes


def install_middleware(app: FastAPI, dataplane: Any, max_body_bytes: int) -> None:
    """Outermost first: metrics see every answer, including a 413 from the body limit."""
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_body_bytes)
    app.add_middleware(InferenceMetricsMiddleware, served=lambda: set(dataplane.model_registry.get_models()))


__all__ = ["install_exception_handlers", "install_middleware", "install_routes", "decode_v2", "BodyLimitMiddleware"]
