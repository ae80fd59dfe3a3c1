"""The real server (subprocess, real SmolLM2) through the official ``openai`` client and raw HTTP."""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import httpx
import openai
import pytest
from llm_support import MAX_NEW_TOKENS, MAX_PROMPT_TOKENS, MAX_RUNNING, MAX_WAITING, MODEL_NAME, LLMServer
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.slow

#: A prompt SmolLM2 continues for well over MAX_NEW_TOKENS tokens under greedy decoding (no early EOS).
LONG_PROMPT = "Once upon a time, in a land far away, there lived a"


def sample(text: str, name: str, **labels: str) -> float:
    """Value of one sample in a scrape (0 when absent); labels must match exactly those given plus model."""
    want = {"model": MODEL_NAME, **labels}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in want.items()):
                return float(s.value)
    return 0.0


def wait_metric(server: LLMServer, name: str, value: float, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while (got := sample(server.metrics(), name)) != value:
        assert time.monotonic() < deadline, f"{name} stayed {got}, expected {value}"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def client(llm_server: LLMServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=llm_server.openai_base, api_key="x", max_retries=0, timeout=60)


def test_models_lists_the_served_model(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == [MODEL_NAME]


def test_streaming_completion_with_openai_client_records_ttft_and_itl(
    client: openai.OpenAI, llm_server: LLMServer
) -> None:
    before = llm_server.metrics()
    prompt = "The capital of France is"
    stream = client.completions.create(
        model=MODEL_NAME, prompt=prompt, max_tokens=8, temperature=0, stream=True
    )
    chunks = list(stream)
    texts = [c.choices[0].text for c in chunks if c.choices]
    assert len([t for t in texts if t]) >= 2, texts  # really streamed, token by token
    assert chunks[-1].choices[0].finish_reason == "length"
    assert all(c.model == MODEL_NAME and c.id == chunks[0].id for c in chunks)
    streamed = "".join(texts)
    # the same request without streaming gives the same greedy text
    full = client.completions.create(model=MODEL_NAME, prompt=prompt, max_tokens=8, temperature=0)
    assert full.choices[0].text == streamed and "Paris" in streamed
    after = llm_server.metrics()
    n = "mlpipeline_llm_"
    assert (
        sample(after, n + "time_to_first_token_seconds_count")
        - sample(before, n + "time_to_first_token_seconds_count")
        == 2
    )
    itl = sample(after, n + "inter_token_latency_seconds_count") - sample(
        before, n + "inter_token_latency_seconds_count"
    )
    assert itl == 2 * 7  # 8 tokens -> 7 gaps, per request
    assert sample(after, n + "generation_tokens_total") - sample(before, n + "generation_tokens_total") == 16
    assert (
        sample(after, n + "prompt_tokens_total") - sample(before, n + "prompt_tokens_total")
        == 2 * full.usage.prompt_tokens
    )
    assert sample(after, n + "time_per_output_token_seconds_count") > sample(
        before, n + "time_per_output_token_seconds_count"
    )
    assert (
        sample(after, n + "e2e_request_latency_seconds_count")
        - sample(before, n + "e2e_request_latency_seconds_count")
        == 2
    )
    ttft_sum = sample(after, n + "time_to_first_token_seconds_sum") - sample(
        before, n + "time_to_first_token_seconds_sum"
    )
    assert 0 < ttft_sum < 10
    assert sample(after, n + "request_success_total", finished_reason="length") >= 2


def test_non_streaming_completion_usage_and_stop(client: openai.OpenAI) -> None:
    r = client.completions.create(
        model=MODEL_NAME, prompt="The capital of France is", max_tokens=8, temperature=0
    )
    assert r.object == "text_completion" and r.usage is not None
    assert r.usage.completion_tokens == 8 and r.usage.total_tokens == r.usage.prompt_tokens + 8
    stopped = client.completions.create(
        model=MODEL_NAME, prompt="The capital of France is", max_tokens=8, temperature=0, stop=["."]
    )
    choice = stopped.choices[0]
    assert choice.finish_reason == "stop" and "." not in choice.text
    assert r.choices[0].text.startswith(choice.text + ".")


def test_seed_makes_sampling_reproducible(client: openai.OpenAI) -> None:
    def run(seed: int) -> str:
        r = client.completions.create(
            model=MODEL_NAME, prompt="Once upon a time", max_tokens=10, temperature=1.0, top_p=0.95, seed=seed
        )
        return r.choices[0].text

    assert run(7) == run(7)
    assert len({run(s) for s in (1, 2, 3)}) > 1


def test_chat_streaming_and_non_streaming(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    r = client.chat.completions.create(model=MODEL_NAME, messages=messages, max_tokens=12, temperature=0)
    assert r.object == "chat.completion" and r.choices[0].message.role == "assistant"
    assert "Paris" in (r.choices[0].message.content or "")
    assert r.usage is not None and r.usage.prompt_tokens > 10  # the chat template wraps the message
    stream = client.chat.completions.create(
        model=MODEL_NAME,
        messages=messages,
        max_tokens=12,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == r.choices[0].message.content
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == r.usage.completion_tokens


def test_sse_wire_format(llm_server: LLMServer) -> None:
    body = {"model": MODEL_NAME, "prompt": "Hi", "max_tokens": 3, "stream": True}
    with httpx.stream("POST", f"{llm_server.openai_base}/completions", json=body, timeout=30) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines() if line]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    payloads = [json.loads(e[6:]) for e in events[:-1]]
    assert payloads[-1]["choices"][0]["finish_reason"] in ("length", "stop")


def _long_prompt() -> str:
    return "word " * (MAX_PROMPT_TOKENS + 50)


BAD_INPUTS = [
    # (id, route, raw body, expected param or None)
    ("malformed-json", "completions", b'{"model": ', None),
    ("not-an-object", "completions", b"[1, 2]", None),
    ("empty-prompt", "completions", {"model": MODEL_NAME, "prompt": ""}, "prompt"),
    ("prompt-over-limit", "completions", {"model": MODEL_NAME, "prompt": _long_prompt()}, "prompt"),
    ("negative-temperature", "completions", {"model": MODEL_NAME, "prompt": "a", "temperature": -0.5}, "temperature"),
    ("temperature-string", "completions", {"model": MODEL_NAME, "prompt": "a", "temperature": "hot"}, "temperature"),
    ("max-tokens-string", "completions", {"model": MODEL_NAME, "prompt": "a", "max_tokens": "10"}, "max_tokens"),
    ("max-tokens-zero", "completions", {"model": MODEL_NAME, "prompt": "a", "max_tokens": 0}, "max_tokens"),
    ("max-tokens-over-limit", "completions", {"model": MODEL_NAME, "prompt": "a", "max_tokens": MAX_NEW_TOKENS + 1}, "max_tokens"),
    ("unknown-model", "completions", {"model": "gpt-17", "prompt": "a"}, "model"),
    ("missing-prompt", "completions", {"model": MODEL_NAME}, "prompt"),
    ("prompt-wrong-type", "completions", {"model": MODEL_NAME, "prompt": 42}, "prompt"),
    ("top-p-zero", "completions", {"model": MODEL_NAME, "prompt": "a", "top_p": 0}, "top_p"),
    ("stream-not-bool", "completions", {"model": MODEL_NAME, "prompt": "a", "stream": "yes"}, "stream"),
    ("too-many-stops", "completions", {"model": MODEL_NAME, "prompt": "a", "stop": list("abcde")}, "stop"),
    ("n-two", "completions", {"model": MODEL_NAME, "prompt": "a", "n": 2}, "n"),
    ("chat-no-messages", "chat/completions", {"model": MODEL_NAME, "messages": []}, "messages"),
    ("chat-bad-role", "chat/completions", {"model": MODEL_NAME, "messages": [{"role": "robot", "content": "x"}]}, None),
    ("chat-empty-content", "chat/completions", {"model": MODEL_NAME, "messages": [{"role": "user", "content": ""}]}, "messages"),
    ("chat-unknown-model", "chat/completions", {"model": "nope", "messages": [{"role": "user", "content": "x"}]}, "model"),
    ("chat-prompt-over-limit", "chat/completions", {"model": MODEL_NAME, "messages": [{"role": "user", "content": _long_prompt()}]}, "messages"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("route", "body", "param"), [b[1:] for b in BAD_INPUTS], ids=[b[0] for b in BAD_INPUTS]
)
def test_bad_inputs_are_400_with_openai_error_body(
    llm_server: LLMServer, route: str, body: bytes | dict, param: str | None
) -> None:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    # no Content-Type on purpose for raw bodies: the server must not depend on it
    headers = {} if isinstance(body, bytes) else {"Content-Type": "application/json"}
    r = httpx.post(f"{llm_server.openai_base}/{route}", content=raw, headers=headers, timeout=30)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["type"] == "invalid_request_error" and err["message"]
    if param is not None:
        assert err["param"] == param, err


def test_openai_client_raises_bad_request(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model=MODEL_NAME, prompt="a", temperature=-1)
    assert info.value.status_code == 400


def test_v1_predict_on_generative_model_is_a_client_error(llm_server: LLMServer) -> None:
    r = httpx.post(f"{llm_server.base}/v1/models/{MODEL_NAME}:predict", json={"instances": [1]}, timeout=10)
    assert 400 <= r.status_code < 500, r.text


def _open_stream(server: LLMServer, max_tokens: int) -> tuple[httpx.Client, httpx.Response]:
    c = httpx.Client(timeout=60)
    body = {"model": MODEL_NAME, "prompt": LONG_PROMPT, "max_tokens": max_tokens,
            "stream": True, "temperature": 0}  # fmt: skip
    req = c.build_request("POST", f"{server.openai_base}/completions", json=body)
    return c, c.send(req, stream=True)


def test_client_disconnect_mid_stream_frees_the_slot(llm_server: LLMServer) -> None:
    aborts = sample(llm_server.metrics(), "mlpipeline_llm_request_success_total", finished_reason="abort")
    c, r = _open_stream(llm_server, MAX_NEW_TOKENS)
    lines = r.iter_lines()
    got = [next(lines) for _ in range(4)]  # a few events (data lines and blank separators)
    assert any(g.startswith("data: ") for g in got)
    assert sample(llm_server.metrics(), "mlpipeline_llm_requests_running") == 1
    r.close()
    c.close()
    wait_metric(llm_server, "mlpipeline_llm_requests_running", 0)
    after = sample(llm_server.metrics(), "mlpipeline_llm_request_success_total", finished_reason="abort")
    assert after == aborts + 1
    # the server is still healthy
    ok = httpx.post(
        f"{llm_server.openai_base}/completions", json={"model": MODEL_NAME, "prompt": "Hi", "max_tokens": 2}
    )
    assert ok.status_code == 200


def test_non_streaming_client_timeout_frees_the_slot(llm_server: LLMServer) -> None:
    body = {"model": MODEL_NAME, "prompt": LONG_PROMPT, "max_tokens": MAX_NEW_TOKENS, "temperature": 0}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{llm_server.openai_base}/completions", json=body, timeout=httpx.Timeout(10, read=0.5))
    wait_metric(llm_server, "mlpipeline_llm_requests_running", 0)


def test_full_queue_answers_429_with_json(llm_server: LLMServer) -> None:
    """Open long streams one after another (without reading them) until the server refuses one.

    Capacity is MAX_RUNNING slots + MAX_WAITING queued, so the first 429 may come no earlier than that;
    a slow machine may let a stream finish meanwhile, hence a little slack before giving up.
    """
    capacity = MAX_RUNNING + MAX_WAITING
    opened: list[tuple[httpx.Client, httpx.Response]] = []
    try:
        busy = None
        for _ in range(capacity + 4):
            c, r = _open_stream(llm_server, MAX_NEW_TOKENS)
            opened.append((c, r))
            if r.status_code == 429:
                busy = r
                break
            assert r.status_code == 200
        assert busy is not None, "the server never answered 429"
        assert len(opened) > capacity
        busy.read()
        err = busy.json()["error"]
        assert err["type"] == "rate_limit_error" and err["code"] == "queue_full"
        assert busy.headers.get("retry-after") == "1"
    finally:
        for c, r in opened:
            r.close()
            c.close()
    wait_metric(llm_server, "mlpipeline_llm_requests_running", 0)
    wait_metric(llm_server, "mlpipeline_llm_requests_waiting", 0)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (make system-deps)")
def test_metrics_scrape_passes_promtool(llm_server: LLMServer) -> None:
    scrape = llm_server.metrics()
    for name in ("time_to_first_token_seconds", "inter_token_latency_seconds", "requests_running"):
        assert f"mlpipeline_llm_{name}" in scrape
    out = subprocess.run(
        ["promtool", "check", "metrics"], input=scrape, capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0 and not out.stdout.strip() and not out.stderr.strip(), out.stdout + out.stderr


def test_dashboard_and_rules_use_only_metrics_the_server_exports(llm_server: LLMServer) -> None:
    import re
    from pathlib import Path

    import yaml

    llm = Path(__file__).resolve().parents[2] / "manifests" / "llm"
    rules = yaml.safe_load((llm / "rules" / "llm.rules.yaml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    dash = json.loads((llm / "base" / "dashboards" / "mlpipeline-llm.json").read_text())
    exprs += [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    exprs += [v["query"] for v in dash["templating"]["list"] if v["type"] == "query"]
    used = {m for e in exprs for m in re.findall(r"(?<![:\w])(mlpipeline_[a-z0-9_]+)(?![:\w])", e)}
    assert len(used) >= 8
    exported = {s.name for fam in text_string_to_metric_families(llm_server.metrics()) for s in fam.samples}
    assert not used - exported, sorted(used - exported)
