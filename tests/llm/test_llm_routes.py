"""The OpenAI routes over a fake engine: HTTP behaviour that needs no model (TGI's router/shard split)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from llm_fake_engine import FakeEngine

from mlpipeline.llm.scheduler import Scheduler, SchedulerLimits
from mlpipeline.llm.server import LLMRuntime, LLMServerSettings, OpenAIRoutes, openai_route_prefix

NAME = "fake"


@pytest.fixture
def engine() -> FakeEngine:
    # prompt "a..." streams "abcdef" then repeats "f"
    return FakeEngine({1: [1, 2, 3, 4, 5, 6]})


@pytest.fixture
def client(engine: FakeEngine) -> Iterator[TestClient]:
    runtime = LLMRuntime(LLMServerSettings(served_model_name=NAME, route_prefix="/openai"))
    runtime.engine = engine  # type: ignore[assignment]
    runtime.scheduler = Scheduler(engine, SchedulerLimits(max_new_tokens=16, max_prompt_tokens=32))
    runtime.scheduler.start()
    app = FastAPI()
    app.include_router(OpenAIRoutes(runtime).router())
    try:
        with TestClient(app) as c:
            yield c
    finally:
        runtime.stop()


def events(body: str) -> list[str]:
    return [line[6:] for line in body.splitlines() if line.startswith("data: ")]


def test_stream_ends_with_done(client: TestClient) -> None:
    r = client.post(
        "/openai/v1/completions", json={"model": NAME, "prompt": "abc", "max_tokens": 4, "stream": True}
    )
    assert r.status_code == 200
    ev = events(r.text)
    assert ev[-1] == "[DONE]"
    text = "".join(json.loads(e)["choices"][0]["text"] for e in ev[:-1])
    assert text == "abcd" and json.loads(ev[-2])["choices"][0]["finish_reason"] == "length"


def test_error_after_stream_started_is_an_sse_error_event_then_done(
    client: TestClient, engine: FakeEngine
) -> None:
    engine.fail_next_decode = True  # prefill gives the first token, the first decode step fails
    r = client.post(
        "/openai/v1/completions", json={"model": NAME, "prompt": "abc", "max_tokens": 8, "stream": True}
    )
    assert r.status_code == 200  # headers were already sent when the engine failed
    ev = events(r.text)
    assert json.loads(ev[0])["choices"][0]["text"] == "a"
    err = json.loads(ev[-2])["error"]
    assert err["type"] == "server_error" and "boom" in err["message"]
    assert ev[-1] == "[DONE]"
    assert r.text.endswith("data: [DONE]\n\n")


def test_engine_error_without_streaming_is_500_json(client: TestClient, engine: FakeEngine) -> None:
    engine.fail_next_decode = True
    r = client.post("/openai/v1/completions", json={"model": NAME, "prompt": "abc", "max_tokens": 8})
    assert r.status_code == 500 and r.json()["error"]["type"] == "server_error"


def test_chat_without_template_is_400(client: TestClient, engine: FakeEngine) -> None:
    engine.chat_template = False
    r = client.post(
        "/openai/v1/chat/completions", json={"model": NAME, "messages": [{"role": "user", "content": "hi"}]}
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages"


def test_not_ready_is_503() -> None:
    runtime = LLMRuntime(LLMServerSettings(served_model_name=NAME, route_prefix=""))
    app = FastAPI()
    app.include_router(OpenAIRoutes(runtime).router())
    with TestClient(app) as c:
        r = c.post("/v1/completions", json={"model": NAME, "prompt": "abc"})
    assert r.status_code == 503 and r.json()["error"]["code"] == "model_not_ready"


@pytest.mark.parametrize(
    ("env", "prefix"), [(None, "/openai"), ("openai", "/openai"), ("/x/y/", "/x/y"), ("", "")]
)
def test_route_prefix_follows_kserve_env(
    monkeypatch: pytest.MonkeyPatch, env: str | None, prefix: str
) -> None:
    if env is None:
        monkeypatch.delenv("KSERVE_OPENAI_ROUTE_PREFIX", raising=False)
    else:
        monkeypatch.setenv("KSERVE_OPENAI_ROUTE_PREFIX", env)
    assert openai_route_prefix() == prefix


def test_runtime_pickles_without_live_parts(engine: FakeEngine) -> None:
    import pickle

    runtime = LLMRuntime(LLMServerSettings(served_model_name=NAME))
    runtime.engine = engine  # type: ignore[assignment]
    clone = pickle.loads(pickle.dumps(runtime))
    assert clone.engine is None and clone.scheduler is None and clone.settings == runtime.settings


def test_cli_flags_do_not_collide_with_kserve_parser() -> None:
    """``import kserve`` parses sys.argv with abbreviations; none of our flags may mean anything to it."""
    from mlpipeline.llm.__main__ import build_parser
    from mlpipeline.llm.server import _argv_for_kserve_import

    with _argv_for_kserve_import():
        from kserve.model_server import parser as kserve_parser

    argv: list[str] = []
    for action in build_parser()._actions:
        for opt in action.option_strings:
            if opt.startswith("--") and opt != "--help":
                argv += [opt] if action.nargs == 0 else [opt, "1"]
    defaults, _ = kserve_parser.parse_known_args([])
    parsed, unknown = kserve_parser.parse_known_args(argv)
    assert vars(parsed) == vars(defaults)
    assert len([u for u in unknown if u.startswith("--")]) == len([a for a in argv if a.startswith("--")])


def test_oversized_and_absurdly_nested_bodies_are_client_errors(client: TestClient) -> None:
    from mlpipeline.llm.server import MAX_BODY_BYTES

    big = b'{"model": "fake", "prompt": "' + b"a" * MAX_BODY_BYTES + b'"}'
    r = client.post("/openai/v1/completions", content=big)
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
    nested = b"[" * 100_000 + b"]" * 100_000
    r = client.post("/openai/v1/completions", content=nested)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"


@pytest.mark.parametrize("size", [100, 20_000])  # tokenized on the event loop / in the executor
def test_prompt_over_the_token_limit_is_400_whichever_way_it_is_tokenized(
    client: TestClient, size: int
) -> None:
    r = client.post("/openai/v1/completions", json={"model": NAME, "prompt": "a" * size})
    assert r.status_code == 400
    err = r.json()["error"]
    assert (
        err["code"] == "context_length_exceeded" and err["param"] == "prompt" and str(size) in err["message"]
    )
