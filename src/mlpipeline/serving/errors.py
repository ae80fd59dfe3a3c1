"""HTTP status for every error the predictor can raise, in one place.

Models and codecs raise typed exceptions (``mlpipeline.errors`` classes, a few KServe and Starlette
ones); :func:`status_for` maps each to a status code and :func:`error_response` renders the JSON body
``{"error": <message>, "type": <class>, "field": <column/JSON path, when known>}``. The FastAPI
handlers and the ASGI middleware both answer through :func:`error_response`, so a client's mistake
is never a 500 whatever layer catches it.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from mlpipeline.errors import (
    ArtifactError,
    InvalidInputError,
    MLPipelineError,
    PayloadTooLargeError,
)


class RequestFieldError(InvalidInputError):
    """An invalid request whose offending field (column, tensor or JSON path) is known."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


class RequestSchemaError(RequestFieldError):
    """Well-formed JSON that does not have the protocol's shape (HTTP 422)."""


class UnsupportedMediaTypeError(RequestFieldError):
    """A body in a Content-Type the predictor does not read (HTTP 415)."""


class ModelNotFoundError(MLPipelineError):
    """A request names a model this server does not serve (HTTP 404)."""

    def __init__(self, name: str, served: list[str]):
        super().__init__(f"model {name!r} is not served here; served: {', '.join(served) or 'none'}")
        self.field = "model_name"


class RouteNotFoundError(MLPipelineError):
    """A path this server does not answer (HTTP 404)."""


def _kserve_status(exc: BaseException) -> int | None:
    """KServe's own exceptions, for code paths of the stock server that we keep (health, metadata)."""
    from kserve import errors as ke

    table: tuple[tuple[type[BaseException], int], ...] = (
        (ke.ModelNotFound, 404),
        (ke.InvalidInput, 400),
        (ke.ModelNotReady, 503),
        (ke.ServerNotReady, 503),
        (ke.ServerNotLive, 503),
        (ke.UnsupportedProtocol, 400),
    )
    for cls, code in table:
        if isinstance(exc, cls):
            return code
    return None


def status_for(exc: BaseException) -> int:
    """The HTTP status for ``exc``: 4xx for anything the client can fix, 5xx only for the server."""
    from starlette.exceptions import HTTPException

    if isinstance(exc, HTTPException):
        return exc.status_code
    if isinstance(exc, PayloadTooLargeError):
        return HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    if isinstance(exc, UnsupportedMediaTypeError):
        return HTTPStatus.UNSUPPORTED_MEDIA_TYPE
    if isinstance(exc, RequestSchemaError):
        return HTTPStatus.UNPROCESSABLE_ENTITY
    if isinstance(exc, InvalidInputError):
        return HTTPStatus.BAD_REQUEST
    if isinstance(exc, (ModelNotFoundError, RouteNotFoundError)):
        return HTTPStatus.NOT_FOUND
    if isinstance(exc, ArtifactError):
        return HTTPStatus.INTERNAL_SERVER_ERROR
    if isinstance(exc, NotImplementedError):
        return HTTPStatus.NOT_IMPLEMENTED
    code = _kserve_status(exc)
    return code if code is not None else HTTPStatus.INTERNAL_SERVER_ERROR


def grpc_status_for(exc: BaseException) -> Any:
    """The gRPC status code for ``exc``, derived from :func:`status_for` so both protocols agree."""
    from grpc import StatusCode

    return {
        400: StatusCode.INVALID_ARGUMENT,
        413: StatusCode.RESOURCE_EXHAUSTED,
        415: StatusCode.INVALID_ARGUMENT,
        422: StatusCode.INVALID_ARGUMENT,
        404: StatusCode.NOT_FOUND,
        501: StatusCode.UNIMPLEMENTED,
        503: StatusCode.UNAVAILABLE,
    }.get(int(status_for(exc)), StatusCode.INTERNAL)


def error_body(exc: BaseException) -> dict[str, Any]:
    from starlette.exceptions import HTTPException

    status = status_for(exc)
    if isinstance(exc, HTTPException):
        message = str(exc.detail)
    elif status >= 500 and not isinstance(exc, MLPipelineError):
        # never echo internals of an unexpected failure to the client; the log has the traceback
        message = "internal error while serving the request"
    else:
        message = str(exc)
    body: dict[str, Any] = {"error": message, "type": type(exc).__name__}
    field = getattr(exc, "field", None)
    if field:
        body["field"] = field
    return body


def json_response(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Any:
    """A ``starlette`` JSON Response rendered with orjson (numpy scalars and arrays allowed)."""
    import orjson
    from starlette.responses import Response

    body = orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(content=body, status_code=status, headers=headers, media_type="application/json")


def error_response(exc: BaseException) -> Any:
    """A JSON response for ``exc``."""
    return json_response(error_body(exc), int(status_for(exc)))


def _request_validation_error(exc: Any) -> RequestSchemaError:
    """FastAPI's RequestValidationError → one message naming every offending JSON path."""
    parts, first = [], None
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        first = first or loc
        parts.append(f"{loc or '<body>'}: {err.get('msg')}")
    return RequestSchemaError("request does not match the protocol schema: " + "; ".join(parts), first)


def install_exception_handlers(app: Any) -> None:
    """Register one handler per error family on a FastAPI app (replaces KServe's handlers)."""
    import logging

    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException

    log = logging.getLogger("mlpipeline.serving")

    async def handle(request: Any, exc: Exception) -> Any:
        if isinstance(exc, RequestValidationError):
            exc = _request_validation_error(exc)
        elif isinstance(exc, HTTPException) and exc.status_code == 404:
            exc = RouteNotFoundError(f"no route for {request.method} {request.url.path}")
        if status_for(exc) >= 500:
            log.error("request failed", exc_info=exc)
        else:
            log.info("rejected request: %s: %s", type(exc).__name__, exc)
        return error_response(exc)

    from kserve import errors as ke

    for cls in (
        MLPipelineError,
        HTTPException,
        RequestValidationError,
        ke.InvalidInput,
        ke.ModelNotFound,
        ke.ModelNotReady,
        ke.ServerNotReady,
        ke.ServerNotLive,
        ke.UnsupportedProtocol,
        ke.InferenceError,
        NotImplementedError,
        Exception,
    ):
        app.add_exception_handler(cls, handle)
