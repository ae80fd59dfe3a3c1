"""``serve()``: run the KServe predictor for one packaged model directory.

The one entry point for ``python -m mlpipeline.serving`` (the container command), ``mlpipeline
serve`` and the tests. It prepares the process *before* kserve is imported: ``import kserve``
parses ``sys.argv`` with abbreviations (``--model X`` would become its model name, ``--grpc`` exits),
and prometheus_client picks its multiprocess value class at import.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from pathlib import Path

from mlpipeline.errors import ConfigError

DEFAULT_PORT = 8080
DEFAULT_MAX_BATCH_ROWS = 10_000
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024

log = logging.getLogger("mlpipeline.serving")


def default_model_name(model_dir: str | os.PathLike[str]) -> str:
    """The model card's name when the directory has one, else ``model``."""
    import json

    card = Path(model_dir) / "model_card.json"
    try:
        name = json.loads(card.read_text(encoding="utf-8")).get("name")
    except (OSError, ValueError, AttributeError):
        name = None
    return name if isinstance(name, str) and name else "model"


def serve(
    model_dir: str,
    *,
    port: int = DEFAULT_PORT,
    workers: int = 1,
    model_name: str | None = None,
    enable_grpc: bool = False,
    grpc_port: int = 8081,
    max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    host: str = "127.0.0.1",
) -> None:
    """Load, verify and serve ``model_dir`` until SIGTERM/SIGINT; blocks.

    Raises ``IntegrityError``/``ArtifactError`` (tampered or incomplete model dir) or ``ConfigError``
    (bad arguments) before anything listens, so the process exits and never reports ready.
    With ``workers > 1`` metrics use prometheus_client's multiprocess mode in
    ``$PROMETHEUS_MULTIPROC_DIR`` (default: a fresh temp dir), wiped at start.
    ``host`` defaults to loopback; the container passes ``--host 0.0.0.0``.
    """
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    if max_batch_rows < 1 or max_body_bytes < 1:
        raise ConfigError("max_batch_rows and max_body_bytes must be positive")
    if not 0 < port < 65536:
        raise ConfigError(f"port must be in 1..65535, got {port}")

    from mlpipeline.artifacts import verify_manifest
    from mlpipeline.serving.telemetry import MULTIPROC_ENV, prepare_multiprocess_dir

    # fail in well under a second on a tampered/incomplete dir, before the heavy imports;
    # TabularModel.load() verifies again right before unpickling
    verify_manifest(model_dir)

    mp_dir = os.environ.get(MULTIPROC_ENV)
    if workers > 1 and not mp_dir:
        mp_dir = tempfile.mkdtemp(prefix="mlpipeline-metrics-")
    if mp_dir:
        prepare_multiprocess_dir(mp_dir)

    # kserve parses sys.argv at import (and spawned workers inherit argv): give it nothing to misread.
    sys.argv = [sys.argv[0] if sys.argv and sys.argv[0] else "mlpipeline-serve"]

    from mlpipeline.serving.model_server import PredictorModelServer
    from mlpipeline.serving.predictor import TabularModel

    name = model_name or default_model_name(model_dir)
    model = TabularModel(name, model_dir, max_batch_rows=max_batch_rows)
    model.load()  # verifies the manifest; raises before the server exists
    log.info("serving model %s version %s from %s on %s:%d (%d worker(s))", name, model.version, model_dir, host, port, workers)
    server = PredictorModelServer(
        host=host,
        max_body_bytes=max_body_bytes,
        http_port=port,
        grpc_port=grpc_port,
        workers=workers,
        enable_grpc=enable_grpc,
    )
    server.start([model])
