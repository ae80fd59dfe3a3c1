"""``python -m mlpipeline.serving MODEL_DIR``: the predictor container's entry point.

Flags are parsed here, before kserve is imported (see :mod:`mlpipeline.serving.server`); a model
directory that fails verification exits with status 2 and the reason on stderr.
"""

from __future__ import annotations

import argparse
import sys

from mlpipeline.errors import MLPipelineError
from mlpipeline.serving.server import DEFAULT_MAX_BATCH_ROWS, DEFAULT_MAX_BODY_BYTES, DEFAULT_PORT, serve


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mlpipeline.serving", allow_abbrev=False, description=__doc__.splitlines()[0])
    p.add_argument("model_dir", help="packaged model directory (MANIFEST.json, model.joblib, signature.json)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="HTTP port")
    p.add_argument("--host", default="127.0.0.1", help="bind address (0.0.0.0 in a container)")
    p.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    p.add_argument("--model-name", default=None, help="name in /v1/models/<name> (default: the model card's name)")
    p.add_argument("--enable-grpc", action="store_true", help="also serve v2 gRPC")
    p.add_argument("--grpc-port", type=int, default=8081)
    p.add_argument("--max-batch-rows", type=int, default=DEFAULT_MAX_BATCH_ROWS, help="rows per request (413 above)")
    p.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES, help="request body bytes (413 above)")
    a = p.parse_args(argv)
    try:
        serve(
            a.model_dir,
            port=a.port,
            host=a.host,
            workers=a.workers,
            model_name=a.model_name,
            enable_grpc=a.enable_grpc,
            grpc_port=a.grpc_port,
            max_batch_rows=a.max_batch_rows,
            max_body_bytes=a.max_body_bytes,
        )
    except MLPipelineError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
