"""Fixtures for the LLM tests: the SmolLM2 checkpoint (converted once, cached) and the real server.

The server runs as a subprocess of ``python -m mlpipeline.llm`` on a free loopback port, once per
session, with small limits so limit and queue tests stay fast. Nothing talks to anything but 127.0.0.1.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

MODEL_NAME = "smollm2-test"
#: Limits the server under test runs with (tests build over-limit requests from them).
MAX_RUNNING = 4
MAX_WAITING = 2
MAX_PROMPT_TOKENS = 256
MAX_NEW_TOKENS = 64


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def smollm2_checkpoint() -> Path:
    pytest.importorskip("transformers")
    from mlpipeline.llm.engine import resolve_checkpoint

    return resolve_checkpoint(None)  # converts the packaged GGUF on first use; cached by sha256 afterwards


@dataclass(frozen=True)
class LLMServer:
    port: int
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_base(self) -> str:
        return f"{self.base}/openai/v1"

    def metrics(self) -> str:
        r = httpx.get(f"{self.base}/metrics", timeout=10)
        r.raise_for_status()
        return r.text


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
