"""HTTP side of the generative server: KServe ModelServer + our OpenAI-compatible FastAPI router + SSE.

KServe 0.21's own OpenAI routes import vLLM, so the routes here are our own: an ``APIRouter`` added to
KServe's FastAPI app by :class:`LLMRESTServer` (a ``RESTServer`` subclass) inside whichever process
serves, so ``--workers N`` (which rebuilds the app in every spawned worker) keeps them. The same process
starts its :class:`LLMRuntime` there (engine + scheduler thread); the runtime pickles without them, so
each worker loads its own copy. KServe's ``/metrics`` on the same port serves the default registry,
where :mod:`mlpipeline.metrics` lives. With ``--workers > 1`` every worker holds its own model copy,
scheduler and metrics (a scrape sees the worker that answered it); one worker per pod, scaled by
replicas, is the intended layout.

Errors: every client mistake is a 400 with an OpenAI-style body ``{"error": {message, type, param,
code}}``; a full waiting queue is a 429; once a stream has started, a failure is sent as an SSE
``error`` event followed by ``data: [DONE]``, never as a cut-off body.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ValidationError

from mlpipeline.errors import (
    GenerationError,
    InvalidInputError,
    MLPipelineError,
    PayloadTooLargeError,
    ServerBusyError,
)
from mlpipeline.llm import protocol as P
from mlpipeline.llm.engine import BatchEngine, EngineConfig, SamplingParams, resolve_checkpoint
from mlpipeline.llm.scheduler import (
    Finished,
    GenerationRequest,
    RequestHandle,
    Scheduler,
    SchedulerLimits,
    TextDelta,
)

log = logging.getLogger(__name__)

DEFAULT_SERVED_MODEL_NAME = "smollm2-135m-instruct"
DEFAULT_ROUTE_PREFIX = "/openai"


def openai_route_prefix() -> str:
    """``KSERVE_OPENAI_ROUTE_PREFIX`` the way KServe reads it: default ``/openai``, leading ``/`` added, may be empty."""
    prefix = os.environ.get("KSERVE_OPENAI_ROUTE_PREFIX", DEFAULT_ROUTE_PREFIX)
    if prefix and not prefix.startswith("/"):
        prefix = f"/{prefix}"
    return prefix.rstrip("/")


class OpenAIRequestError(InvalidInputError):
    """A client error with the ``param`` / ``code`` fields of an OpenAI error body (HTTP 400)."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.param = param
        self.code = code


# --------------------------------------------------------------------------- runtime (per process)
@dataclass(frozen=True)
class LLMServerSettings:
    """Everything a serving process needs; picklable (it travels to ``--workers`` processes)."""

    engine: EngineConfig = EngineConfig()
    served_model_name: str = DEFAULT_SERVED_MODEL_NAME
    limits: SchedulerLimits = SchedulerLimits()
    route_prefix: str = field(default_factory=openai_route_prefix)


class LLMRuntime:
    """Engine + scheduler of one process. ``start()`` is idempotent; pickling drops the live parts."""

    def __init__(self, settings: LLMServerSettings) -> None:
        self.settings = settings
        self.engine: BatchEngine | None = None
        self.scheduler: Scheduler | None = None
        self.created = P.now()

    def prepare(self) -> None:
        """Resolve (and if needed convert) the checkpoint, so workers only load it."""
        resolve_checkpoint(self.settings.engine.model_source, self.settings.engine.cache_dir)

    def start(self) -> None:
        if self.scheduler is not None:
            return
        from mlpipeline.llm.stats import PrometheusStats

        self.engine = BatchEngine.load(self.settings.engine, name=self.settings.served_model_name)
        self.engine.warmup()
        self.scheduler = Scheduler(
            self.engine, self.settings.limits, observer=PrometheusStats(self.settings.served_model_name)
        )
        self.scheduler.start()

    def stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.stop()
            self.scheduler = None

    @property
    def ready(self) -> bool:
        return self.scheduler is not None

    def __getstate__(self) -> dict[str, Any]:
        return {"settings": self.settings, "engine": None, "scheduler": None, "created": self.created}


# --------------------------------------------------------------------------- HTTP helpers
def _error_body(
    message: str, type_: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return P.ErrorResponse(
        error=P.ErrorDetail(message=message, type=type_, param=param, code=code)
    ).model_dump()


def error_response(exc: Exception) -> Response:
    """The one place that maps exceptions to HTTP status and OpenAI error bodies."""
    if isinstance(exc, OpenAIRequestError):
        return JSONResponse(
            _error_body(str(exc), "invalid_request_error", exc.param, exc.code), status_code=400
        )
    if isinstance(exc, PayloadTooLargeError):
        return JSONResponse(
            _error_body(str(exc), "invalid_request_error", code="payload_too_large"), status_code=413
        )
    if isinstance(exc, InvalidInputError):
        return JSONResponse(_error_body(str(exc), "invalid_request_error"), status_code=400)
    if isinstance(exc, ServerBusyError):
        return JSONResponse(
            _error_body(str(exc), "rate_limit_error", code="queue_full"),
            status_code=429,
            headers={"Retry-After": "1"},
        )
    if isinstance(exc, _NotReady):
        return JSONResponse(_error_body(str(exc), "server_error", code="model_not_ready"), status_code=503)
    log.error("request failed", exc_info=exc)
    return JSONResponse(_error_body(f"internal error: {exc}", "server_error"), status_code=500)


class _NotReady(MLPipelineError):
    pass


_UNION_TAGS = frozenset({"str", "int", "float", "bool", "none", "list", "dict"})


def _is_union_tag(part: str) -> bool:
    """pydantic puts union-member tags (``str``, ``list[str]``, ``function-after[...]``) in error locations."""
    return part in _UNION_TAGS or "[" in part or part.startswith(("function-", "constrained-"))


def _validation_error(e: ValidationError) -> OpenAIRequestError:
    err = e.errors()[0]
    loc = [str(p) for p in err["loc"] if not _is_union_tag(str(p))]
    param = ".".join(loc) or None
    msg = "unknown or missing field" if err["type"] == "missing" else err["msg"]
    more = f" (and {len(e.errors()) - 1} more errors)" if len(e.errors()) > 1 else ""
    return OpenAIRequestError(f"{param or 'body'}: {msg}{more}", param=param, code="invalid_value")


#: Request bodies above this are refused (HTTP 413) before parsing; prompts are capped far lower in tokens.
MAX_BODY_BYTES = 4 << 20


async def _read_request(request: Request, model_cls: type[BaseModel]) -> Any:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise PayloadTooLargeError(f"request body is {declared} bytes; the limit is {MAX_BODY_BYTES}")
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise PayloadTooLargeError(f"request body is {len(raw)} bytes; the limit is {MAX_BODY_BYTES}")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as e:  # RecursionError: absurdly nested JSON
        raise OpenAIRequestError(f"request body is not valid JSON: {e}", code="invalid_json") from e
    if not isinstance(body, dict):
        raise OpenAIRequestError("request body must be a JSON object", code="invalid_json")
    try:
        return model_cls.model_validate(body)
    except ValidationError as e:
        raise _validation_error(e) from e


def _sse(obj: BaseModel | dict[str, Any]) -> str:
    data = obj.model_dump_json() if isinstance(obj, BaseModel) else json.dumps(obj, separators=(",", ":"))
    return f"data: {data}\n\n"


_DONE = "data: [DONE]\n\n"


#: Prompts up to this many characters are tokenized on the event loop (tens of microseconds; a thread
#: hop would cost more than that, and adds to TTFT); longer ones in the default executor.
INLINE_TOKENIZE_CHARS = 8192


async def _off_loop_if_long(loop: asyncio.AbstractEventLoop, size: int, fn: Any, arg: Any) -> list[int]:
    if size <= INLINE_TOKENIZE_CHARS:
        return list(fn(arg))
    return list(await loop.run_in_executor(None, fn, arg))


@dataclass
class _Prepared:
    handle: RequestHandle
    request_id: str
    prompt_tokens: int


# --------------------------------------------------------------------------- router
class OpenAIRoutes:
    """The OpenAI-compatible endpoints over one :class:`LLMRuntime`."""

    def __init__(self, runtime: LLMRuntime) -> None:
        self.runtime = runtime
        self.name = runtime.settings.served_model_name

    def router(self) -> APIRouter:
        router = APIRouter(prefix=f"{self.runtime.settings.route_prefix}/v1")
        router.add_api_route("/models", self.models, methods=["GET"])
        router.add_api_route("/completions", self.completions, methods=["POST"])
        router.add_api_route("/chat/completions", self.chat_completions, methods=["POST"])
        return router

    async def models(self) -> Response:
        card = P.ModelCard(id=self.name, created=self.runtime.created)
        return JSONResponse(P.ModelList(data=[card]).model_dump())

    async def completions(self, request: Request) -> Response:
        return await self._serve(request, chat=False)

    async def chat_completions(self, request: Request) -> Response:
        return await self._serve(request, chat=True)

    # ---------------------------------------------------------------- flow
    def _scheduler(self) -> Scheduler:
        if self.runtime.scheduler is None or self.runtime.engine is None:
            raise _NotReady(f"model {self.name!r} is not loaded yet")
        return self.runtime.scheduler

    async def _serve(self, request: Request, chat: bool) -> Response:
        try:
            body: P.ChatCompletionRequest | P.CompletionRequest = await _read_request(
                request, P.ChatCompletionRequest if chat else P.CompletionRequest
            )
            prepared = await self._submit(body, chat)
        except Exception as e:
            return error_response(e)
        if body.stream:
            return StreamingResponse(
                self._stream(prepared, body, chat),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        return await self._complete(request, prepared, chat)

    async def _submit(self, body: P.ChatCompletionRequest | P.CompletionRequest, chat: bool) -> _Prepared:
        scheduler = self._scheduler()
        engine = self.runtime.engine
        assert engine is not None
        if body.model != self.name:
            raise OpenAIRequestError(
                f"model {body.model!r} does not exist; this server serves {self.name!r}",
                param="model",
                code="model_not_found",
            )
        loop = asyncio.get_running_loop()
        if isinstance(body, P.ChatCompletionRequest):
            if all(not m.text().strip() for m in body.messages):
                raise OpenAIRequestError("messages contain no text", param="messages", code="empty_prompt")
            try:
                messages = body.template_messages()
                prompt_ids = await _off_loop_if_long(
                    loop, sum(len(m["content"]) for m in messages), engine.apply_chat_template, messages
                )
            except GenerationError as e:
                raise OpenAIRequestError(str(e), param="messages") from e
            limit = body.token_limit()
        else:
            text = body.prompt_text()
            if not text:
                raise OpenAIRequestError("prompt must not be empty", param="prompt", code="empty_prompt")
            prompt_ids = await _off_loop_if_long(loop, len(text), engine.encode, text)
            limit = body.max_tokens
        limits = scheduler.limits
        n_prompt = len(prompt_ids)
        if n_prompt == 0:
            raise OpenAIRequestError("prompt encodes to zero tokens", param="prompt", code="empty_prompt")
        if n_prompt > limits.max_prompt_tokens:
            raise OpenAIRequestError(
                f"prompt has {n_prompt} tokens; this server accepts at most {limits.max_prompt_tokens}",
                param="messages" if chat else "prompt",
                code="context_length_exceeded",
            )
        if limit is None:  # chat without a limit: as much as the limits and the context allow
            limit = max(1, min(limits.max_new_tokens, engine.max_context_tokens - n_prompt))
        if limit > limits.max_new_tokens:
            raise OpenAIRequestError(
                f"max_tokens is {limit}; this server generates at most {limits.max_new_tokens}",
                param="max_completion_tokens"
                if chat and body.max_completion_tokens is not None
                else "max_tokens",
                code="invalid_value",
            )
        params = SamplingParams(temperature=body.temperature, top_p=body.top_p, seed=body.seed)
        gen = GenerationRequest(tuple(prompt_ids), limit, params, body.stop_list())
        try:
            handle = scheduler.submit(gen, loop)
        except InvalidInputError as e:
            if isinstance(e, OpenAIRequestError):
                raise
            raise OpenAIRequestError(str(e), code="context_length_exceeded") from e
        return _Prepared(handle, P.new_id("chatcmpl" if chat else "cmpl"), n_prompt)

    async def _complete(self, request: Request, prep: _Prepared, chat: bool) -> Response:
        parts: list[str] = []

        async def collect() -> Finished:
            async for ev in prep.handle.events():
                if isinstance(ev, TextDelta):
                    parts.append(ev.text)
            assert prep.handle.finished is not None
            return prep.handle.finished

        task = asyncio.ensure_future(collect())
        try:
            while True:  # watch for a client that gave up, so its slot is freed
                done, _ = await asyncio.wait({task}, timeout=0.25)
                if done:
                    break
                if await request.is_disconnected():
                    prep.handle.cancel()
                    await task
                    return JSONResponse(_error_body("client disconnected", "server_error"), status_code=499)
            fin = task.result()
        finally:
            prep.handle.cancel()
            if not task.done():
                task.cancel()
        if fin.reason in ("error", "abort"):
            return error_response(GenerationError(fin.error or f"generation ended: {fin.reason}"))
        text, reason = "".join(parts), _public_reason(fin)
        use = P.usage(fin.prompt_tokens, fin.completion_tokens)
        created = P.now()
        resp: BaseModel
        if chat:
            resp = P.ChatCompletionResponse(
                id=prep.request_id,
                created=created,
                model=self.name,
                choices=[P.ChatChoice(message=P.ChatMessageOut(content=text), finish_reason=reason)],
                usage=use,
            )
        else:
            resp = P.CompletionResponse(
                id=prep.request_id,
                created=created,
                model=self.name,
                choices=[P.CompletionChoice(text=text, finish_reason=reason)],
                usage=use,
            )
        return JSONResponse(resp.model_dump())

    async def _stream(
        self, prep: _Prepared, body: P.ChatCompletionRequest | P.CompletionRequest, chat: bool
    ) -> AsyncIterator[str]:
        created = P.now()

        def chunk(text: str | None, reason: P.FinishReasonOut = None, role: bool = False) -> BaseModel:
            if chat:
                delta = P.ChatDelta(role="assistant" if role else None, content=text)
                return P.ChatCompletionChunk(
                    id=prep.request_id,
                    created=created,
                    model=self.name,
                    choices=[P.ChatChunkChoice(delta=delta, finish_reason=reason)],
                )
            return P.CompletionResponse(
                id=prep.request_id,
                created=created,
                model=self.name,
                choices=[P.CompletionChoice(text=text or "", finish_reason=reason)],
            )

        try:
            if chat:
                yield _sse(chunk("", role=True))
            async for ev in prep.handle.events():
                if isinstance(ev, TextDelta):
                    if ev.text:
                        yield _sse(chunk(ev.text))
                    continue
                if ev.reason in ("error", "abort"):
                    yield _sse(_error_body(ev.error or f"generation ended: {ev.reason}", "server_error"))
                    break
                yield _sse(chunk(None if chat else "", _public_reason(ev)))
                if body.include_usage():
                    usage_chunk: dict[str, Any] = chunk(None).model_dump()
                    usage_chunk["choices"] = []
                    usage_chunk["usage"] = P.usage(ev.prompt_tokens, ev.completion_tokens).model_dump()
                    yield _sse(usage_chunk)
        except asyncio.CancelledError:  # client went away: free the slot, send nothing more
            prep.handle.cancel()
            raise
        except Exception as e:  # anything unexpected mid-stream still ends as a well-formed SSE stream
            log.exception("stream failed")
            yield _sse(_error_body(f"internal error: {e}", "server_error"))
        finally:
            prep.handle.cancel()
        yield _DONE


def _public_reason(fin: Finished) -> P.FinishReasonOut:
    return "length" if fin.reason == "length" else "stop"


# --------------------------------------------------------------------------- KServe glue
@contextlib.contextmanager
def _argv_for_kserve_import() -> Iterator[None]:
    """``import kserve`` parses ``sys.argv``: let it see none of ours (its values are passed explicitly)."""
    saved = sys.argv
    sys.argv = saved[:1]
    try:
        yield
    finally:
        sys.argv = saved


with _argv_for_kserve_import():
    import kserve
    from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING
    from kserve.model_server import args as kserve_args
    from kserve.protocol.grpc.server import GRPCServer
    from kserve.protocol.rest.multiprocess.server import RESTServerMultiProcess
    from kserve.protocol.rest.server import RESTServer


class GenerativeModel(kserve.Model):
    """The KServe model: readiness and lifecycle; generation goes through the OpenAI routes."""

    def __init__(self, runtime: LLMRuntime) -> None:
        super().__init__(runtime.settings.served_model_name)
        self.runtime = runtime

    def load(self) -> bool:
        self.runtime.prepare()
        self.ready = True
        return self.ready

    async def healthy(self) -> bool:
        scheduler = self.runtime.scheduler
        return self.ready and (scheduler is None or scheduler.alive)

    def predict(self, payload: Any, headers: Any = None, response_headers: Any = None) -> Any:
        raise kserve.errors.InvalidInput(
            f"model {self.name!r} is generative: use POST {self.runtime.settings.route_prefix}/v1/completions"
        )

    def stop(self) -> None:
        self.runtime.stop()
        self.ready = False


class LLMRESTServer(RESTServer):
    """KServe's REST server, plus our routes and runtime in the serving process, bound to ``host``."""

    def __init__(self, *args: Any, runtime: LLMRuntime, host: str = "0.0.0.0", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.runtime = runtime
        self.config.host = host

    def create_application(self) -> None:
        super().create_application()
        from kserve.model_server import app

        self.runtime.start()
        _install(app, self.runtime)


class LLMModelServer(kserve.ModelServer):
    """``ModelServer.start`` with :class:`LLMRESTServer` in place of KServe's REST server."""

    def __init__(self, runtime: LLMRuntime, host: str = "0.0.0.0", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.runtime = runtime
        self.host = host

    def start(self, models: list[Any]) -> None:
        self._register_and_check_atleast_one_model_is_ready(models)
        rest = LLMRESTServer(
            FASTAPI_APP_IMPORT_STRING,
            self.dataplane,
            self.model_repository_extension,
            self.http_port,
            runtime=self.runtime,
            host=self.host,
            access_log_format=self.access_log_format,
            workers=self.workers,
            grace_period=self.grace_period,
            event_loop=self.event_loop,
            timeout_keep_alive=self.timeout_keep_alive,
        )
        if self.workers > 1:
            multi = RESTServerMultiProcess(
                FASTAPI_APP_IMPORT_STRING,
                self.dataplane,
                self.model_repository_extension,
                self.http_port,
                workers=self.workers,
                grace_period=self.grace_period,
            )
            multi._rest_server = rest  # every spawned worker runs our create_application
            self._rest_multiprocess_server = multi
            self.servers.append(multi.start())
        else:
            self._rest_server = rest
            self.servers.append(rest.start())
        if self.enable_grpc:
            self._grpc_server = GRPCServer(
                self.grpc_port,
                self.dataplane,
                self.model_repository_extension,
                kwargs=vars(kserve_args),
                grace_period=self.grace_period,
            )
            self.servers.append(self._grpc_server.start(self.max_threads))
        self.setup_event_loop()
        self.register_signal_handler()
        asyncio.run(self._serve())


def _install(app: FastAPI, runtime: LLMRuntime) -> None:
    if getattr(app.state, "mlpipeline_llm_routes", False):
        return
    app.include_router(OpenAIRoutes(runtime).router())
    app.state.mlpipeline_llm_routes = True


def serve(
    settings: LLMServerSettings,
    http_port: int = 8080,
    host: str = "0.0.0.0",
    workers: int = 1,
    enable_grpc: bool = False,
    grpc_port: int = 8081,
) -> None:
    """Load the model and serve until SIGTERM/SIGINT (blocks)."""
    runtime = LLMRuntime(settings)
    model = GenerativeModel(runtime)
    model.load()
    server = LLMModelServer(
        runtime, host=host, http_port=http_port, grpc_port=grpc_port, workers=workers, enable_grpc=enable_grpc
    )
    try:
        server.start([model])
    finally:
        runtime.stop()


def serve_llm(
    model_source: str | None = None,
    *,
    served_model_name: str = DEFAULT_SERVED_MODEL_NAME,
    http_port: int = 8080,
    host: str = "0.0.0.0",
    workers: int = 1,
    cache_dir: str | None = None,
    device: str = "auto",
    dtype: str = "auto",
    threads: int | None = None,
    max_running: int = 32,
    max_waiting: int = 128,
    max_prompt_tokens: int = 1024,
    max_new_tokens: int = 512,
    enable_grpc: bool = False,
    grpc_port: int = 8081,
) -> None:
    """Serve a generative model with OpenAI-compatible routes on KServe's ModelServer (blocks).

    ``model_source``: ``None``/``"smollm2"`` (the packaged SmolLM2-135M-Instruct GGUF), a ``.gguf`` file,
    or a local HF model directory. GGUFs are converted once into ``cache_dir`` (default
    ``$MLPIPELINE_CACHE_DIR`` or ``~/.cache/mlpipeline``). Routes live under
    ``$KSERVE_OPENAI_ROUTE_PREFIX/v1`` (default ``/openai/v1``); metrics on ``/metrics``.
    """
    os.environ["HF_HUB_OFFLINE"] = os.environ["TRANSFORMERS_OFFLINE"] = "1"  # never reach a hub
    settings = LLMServerSettings(
        engine=EngineConfig(
            model_source=model_source, cache_dir=cache_dir, device=device, dtype=dtype, threads=threads
        ),
        served_model_name=served_model_name,
        limits=SchedulerLimits(
            max_running=max_running,
            max_waiting=max_waiting,
            max_prompt_tokens=max_prompt_tokens,
            max_new_tokens=max_new_tokens,
        ),
    )
    serve(
        settings,
        http_port=http_port,
        host=host,
        workers=workers,
        enable_grpc=enable_grpc,
        grpc_port=grpc_port,
    )
