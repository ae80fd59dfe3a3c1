"""`mlpipeline serve` and `mlpipeline serve-llm` (the CLI entry points, not just `python -m`) start
real servers that answer their ecosystem's clients."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow
CLI = str(Path(sys.executable).with_name("mlpipeline"))


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args: list[str], port: int, timeout: float = 180) -> subprocess.Popen:
    proc = subprocess.Popen([CLI, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited {proc.returncode}: {proc.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise AssertionError("server not ready in time")


@pytest.mark.skipif(shutil.which("mlpipeline", path=str(Path(sys.executable).parent)) is None, reason="console script not installed")
def test_serve_llm_cli_answers_the_openai_client():
    import openai

    port = _port()
    proc = _start(["serve-llm", "--port", str(port), "--max-running", "4"], port)
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/openai/v1", api_key="unused")
        (model,) = [m.id for m in client.models.list().data]
        out = client.completions.create(model=model, prompt="The capital of France is", max_tokens=4, temperature=0)
        assert out.usage.completion_tokens == 4 and out.choices[0].text
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_serve_cli_refuses_a_model_dir_without_manifest(tmp_path):
    res = subprocess.run([CLI, "serve", str(tmp_path), "--port", str(_port())], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "error:" in res.stderr and "MANIFEST.json" in res.stderr
