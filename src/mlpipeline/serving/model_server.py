"""KServe ModelServer subclasses that install :mod:`mlpipeline.serving.rest` on every serving process.

KServe builds its FastAPI app in ``RESTServer.create_application``, which runs once per serving
process (with ``--workers N`` in each spawned worker, after the RESTServer is unpickled there), so
routes, middleware, exception handlers and model-info metrics are installed by overriding its three
hooks. Importing this module imports kserve, which parses ``sys.argv``: only
:func:`mlpipeline.serving.server.serve` imports it, after making argv safe.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import fastapi
from grpc import StatusCode
from kserve import ModelServer
from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING
from kserve.logging import logger
from kserve.model_server import args as kserve_args
from kserve.protocol.grpc.interceptors import ExceptionToStatusInterceptor
from kserve.protocol.grpc.server import GRPCServer
from kserve.protocol.rest.multiprocess.server import RESTServerMultiProcess, RESTServerProcess
from kserve.protocol.rest.server import RESTServer

from mlpipeline.errors import MLPipelineError
from mlpipeline.serving.errors import grpc_status_for, install_exception_handlers
from mlpipeline.serving.predictor import TabularModel
from mlpipeline.serving.rest import install_middleware, install_routes
from mlpipeline.serving.telemetry import publish_model_info


class PredictorRESTServer(RESTServer):
    def __init__(self, *args: Any, host: str, max_body_bytes: int, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.config.host = host  # KServe hard-codes 0.0.0.0
        self.max_body_bytes = max_body_bytes

    def _register_endpoints(self, app: fastapi.FastAPI) -> None:
        install_routes(app, self.dataplane)  # first: shadows KServe's inference routes and /metrics
        super()._register_endpoints(app)
        for model in self.dataplane.model_registry.get_models().values():
            if isinstance(model, TabularModel) and model.packaged is not None:
                publish_model_info(model.name, model.packaged.version, model.packaged.manifest_sha256)

    def _add_exception_handlers(self, app: fastapi.FastAPI) -> None:
        install_exception_handlers(app)

    def _add_middlewares(self, app: fastapi.FastAPI) -> None:
        super()._add_middlewares(app)
        install_middleware(app, self.dataplane, self.max_body_bytes)


class PredictorRESTServerMultiProcess(RESTServerMultiProcess):
    """KServe's worker supervisor with our REST server in each worker, and dead workers' gauges dropped."""

    def __init__(self, app: str, data_plane: Any, repo_ext: Any, http_port: int, *, host: str, max_body_bytes: int, startup_grace_s: float = 120.0, **kw: Any):
        super().__init__(app, data_plane, repo_ext, http_port, **kw)
        self._rest_server = PredictorRESTServer(
            app,
            data_plane,
            repo_ext,
            http_port,
            host=host,
            max_body_bytes=max_body_bytes,
            access_log_format=kw.get("access_log_format"),
            workers=kw.get("workers", 1),
            grace_period=kw.get("grace_period", 30),
            event_loop=kw.get("event_loop", "auto"),
            timeout_keep_alive=kw.get("timeout_keep_alive", 65),
        )
        self.startup_grace_s = startup_grace_s
        self._born: dict[int | None, float] = {}

    async def keep_subprocess_alive(self, sockets: Any) -> None:
        """KServe's supervision loop, with a start-up grace and metrics bookkeeping.

        KServe pings every worker each 0.5 s with a 5 s timeout, but a spawned worker only answers
        once it has unpickled the model, i.e. after importing kserve, pandas and scikit-learn: on a
        busy node that takes longer than 5 s, and KServe then kills and respawns it forever. Workers
        younger than ``startup_grace_s`` are only checked for having exited. A replaced worker's
        live gauges are dropped from the multiprocess directory.
        """
        from prometheus_client import multiprocess

        now = time.monotonic()
        for idx, process in enumerate(self._processes):
            if self.should_exit.is_set():
                return
            born = self._born.setdefault(process.pid, now)
            running = process._process.is_alive()  # no public "has exited" on RESTServerProcess
            if running and (now - born < self.startup_grace_s or process.ping(timeout=5)):
                continue
            process.kill()
            await process.wait_for_termination()
            if self.should_exit.is_set():
                return
            logger.warning("worker process [%s] died or hung; starting a new one", process.pid)
            replacement = RESTServerProcess(sockets, self._rest_server.run, log_config_file=self.log_config_file)
            replacement.start()
            self._processes[idx] = replacement
            multiprocess.mark_process_dead(process.pid)


class PredictorExceptionInterceptor(ExceptionToStatusInterceptor):
    """gRPC twin of the REST exception handlers: our typed errors get the matching status."""

    async def handle_exception(self, ex: Exception, request_or_iterator: Any, context: Any, method_name: str) -> None:
        if isinstance(ex, MLPipelineError):
            code = grpc_status_for(ex)
            (logger.error if code == StatusCode.INTERNAL else logger.info)("%s: %s (%s)", method_name, ex, code.name)
            await context.abort(code, str(ex))
        await super().handle_exception(ex, request_or_iterator, context, method_name)


class PredictorGRPCServer(GRPCServer):
    """KServe's gRPC server bound to ``host`` (KServe hard-codes [::]) with our exception mapping."""

    def __init__(self, *args: Any, host: str, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._host = host

    async def start(self, max_workers: int) -> None:
        from concurrent import futures

        from grpc import aio
        from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
        from kserve.protocol.grpc.interceptors import LoggingInterceptor
        from kserve.protocol.grpc.servicer import InferenceServicer

        self._server = aio.server(
            futures.ThreadPoolExecutor(max_workers=max_workers),
            interceptors=(LoggingInterceptor(), PredictorExceptionInterceptor()),
            options=[
                ("grpc.max_send_message_length", self._kwargs.get("grpc_max_send_message_length")),
                ("grpc.max_receive_message_length", self._kwargs.get("grpc_max_receive_message_length")),
            ],
        )
        servicer = InferenceServicer(self._data_plane, self._model_repository_extension)
        grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, self._server)
        address = f"[{self._host}]:{self._port}" if ":" in self._host else f"{self._host}:{self._port}"
        self._server.add_insecure_port(address)
        logger.info("Starting gRPC server on %s with %d threads", address, max_workers)
        await self._server.start()
        await self._server.wait_for_termination()


class PredictorModelServer(ModelServer):
    """``ModelServer.start`` with our REST servers; everything else (gRPC, signals, loop) is KServe's."""

    def __init__(self, *, host: str, max_body_bytes: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.host = host
        self.max_body_bytes = max_body_bytes

    def start(self, models: list[Any]) -> None:
        self._register_and_check_atleast_one_model_is_ready(models)
        common = dict(
            access_log_format=self.access_log_format,
            workers=self.workers,
            grace_period=self.grace_period,
            event_loop=self.event_loop,
            timeout_keep_alive=self.timeout_keep_alive,
        )
        if self.workers > 1:
            self._rest_multiprocess_server = PredictorRESTServerMultiProcess(
                FASTAPI_APP_IMPORT_STRING,
                self.dataplane,
                self.model_repository_extension,
                self.http_port,
                host=self.host,
                max_body_bytes=self.max_body_bytes,
                log_config_file=kserve_args.log_config_file,
                **common,
            )
            self.servers.append(self._rest_multiprocess_server.start())
        else:
            self._rest_server = PredictorRESTServer(
                FASTAPI_APP_IMPORT_STRING,
                self.dataplane,
                self.model_repository_extension,
                self.http_port,
                host=self.host,
                max_body_bytes=self.max_body_bytes,
                **common,
            )
            self.servers.append(self._rest_server.start())
        if self.enable_grpc:
            self._grpc_server = PredictorGRPCServer(
                self.grpc_port,
                self.dataplane,
                self.model_repository_extension,
                kwargs=vars(kserve_args),
                grace_period=self.grace_period,
                host=self.host,
            )
            self.servers.append(self._grpc_server.start(self.max_threads))
        self.setup_event_loop()
        self.register_signal_handler()
        asyncio.run(self._serve())
