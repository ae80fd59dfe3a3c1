"""Fixtures for the LLM tests: the SmolLM2 checkpoint (converted once, cached) and the real server.

The server runs as a subprocess of ``python -m mlpipeline.llm`` on a free loopback port, once per
session, with small limits so limit and queue tests stay fast. Nothing talks to anything but 127.0.0.1.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from llm_support import (
    MAX_NEW_TOKENS,
    MAX_PROMPT_TOKENS,
    MAX_RUNNING,
    MAX_WAITING,
    MODEL_NAME,
    LLMServer,
    free_port,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def smollm2_checkpoint() -> Path:
    pytest.importorskip("transformers")
    from mlpipeline.llm.engine import resolve_checkpoint

    return resolve_checkpoint(None)  # converts the packaged GGUF on first use; cached by sha256 afterwards


@pytest.fixture(scope="session")
def llm_server(smollm2_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LLMServer]:
    port = free_port()
    log = tmp_path_factory.mktemp("llm-server") / "server.log"
    cmd = [
        sys.executable, "-m", "mlpipeline.llm",
        "--llm-model-dir", str(smollm2_checkpoint),
        "--served-model-name", MODEL_NAME,
        "--http-port", str(port),
        "--bind-host", "127.0.0.1",
        "--max-running-seqs", str(MAX_RUNNING),
        "--max-waiting-requests", str(MAX_WAITING),
        "--max-prompt-tokens", str(MAX_PROMPT_TOKENS),
        "--max-new-tokens", str(MAX_NEW_TOKENS),
    ]  # fmt: skip
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "KSERVE_OPENAI_ROUTE_PREFIX": "openai",
    }
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    server = LLMServer(port, log)
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
            try:
                if httpx.get(f"{server.openai_base}/models", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not ready after 180 s:\n{log.read_text()[-4000:]}")
            time.sleep(0.3)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
