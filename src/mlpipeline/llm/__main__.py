"""``python -m mlpipeline.llm``: serve a generative model with OpenAI-compatible routes on KServe.

Flags use hyphens and names no KServe flag starts with, because ``import kserve`` parses ``sys.argv``
itself (with abbreviations): ``--model X`` would become KServe's ``--model_name``, ``--grpc`` exits.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from mlpipeline.llm.engine import PACKAGED_MODEL


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m mlpipeline.llm",
        description="OpenAI-compatible generation server (continuous batching) on KServe's ModelServer.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        allow_abbrev=False,
    )
    p.add_argument(
        "--llm-model-dir",
        default=PACKAGED_MODEL,
        help=f"HF model directory, .gguf file, or {PACKAGED_MODEL!r} (the packaged SmolLM2-135M-Instruct)",
    )
    p.add_argument(
        "--served-model-name", default=None, help="model id in the API (default: smollm2-135m-instruct)"
    )
    p.add_argument("--http-port", type=int, default=8080)
    p.add_argument("--bind-host", default="0.0.0.0", help="address to listen on (tests use 127.0.0.1)")
    p.add_argument(
        "--server-workers", type=int, default=1, help="uvicorn worker processes (each loads the model)"
    )
    p.add_argument("--checkpoint-cache-dir", default=None, help="where converted GGUF checkpoints are kept")
    p.add_argument("--torch-device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument(
        "--torch-dtype", default="auto", help="auto (bf16 on GPU, fp32 on CPU) | float32 | bfloat16"
    )
    p.add_argument("--torch-threads", type=int, default=None, help="CPU intra-op threads")
    p.add_argument("--max-running-seqs", type=int, default=32, help="sequences decoded together")
    p.add_argument("--max-waiting-requests", type=int, default=128, help="queue bound; beyond it HTTP 429")
    p.add_argument("--max-prompt-tokens", type=int, default=1024)
    p.add_argument("--max-new-tokens", type=int, default=512, help="upper bound on a request's max_tokens")
    p.add_argument("--serve-grpc", action="store_true", help="also start KServe's gRPC server")
    p.add_argument("--serve-grpc-port", type=int, default=8081)
    return p


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from mlpipeline.llm.server import DEFAULT_SERVED_MODEL_NAME, serve_llm

    serve_llm(
        args.llm_model_dir,
        served_model_name=args.served_model_name or DEFAULT_SERVED_MODEL_NAME,
        http_port=args.http_port,
        host=args.bind_host,
        workers=args.server_workers,
        cache_dir=args.checkpoint_cache_dir,
        device=args.torch_device,
        dtype=args.torch_dtype,
        threads=args.torch_threads,
        max_running=args.max_running_seqs,
        max_waiting=args.max_waiting_requests,
        max_prompt_tokens=args.max_prompt_tokens,
        max_new_tokens=args.max_new_tokens,
        enable_grpc=args.serve_grpc,
        grpc_port=args.serve_grpc_port,
    )


if __name__ == "__main__":
    main()
