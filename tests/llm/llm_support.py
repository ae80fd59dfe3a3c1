"""Shared pieces of the LLM tests: server limits, the running-server handle, a free loopback port."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

import httpx

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
