"""Prometheus stat logger for the scheduler (vLLM's ``PrometheusStatLogger``): label children pre-bound."""

from __future__ import annotations

from collections.abc import Sequence

from mlpipeline import metrics
from mlpipeline.llm.scheduler import FinishReason, RequestStats

_REASONS: tuple[FinishReason, ...] = ("stop", "length", "abort", "error")


class PrometheusStats:
    """Implements :class:`~mlpipeline.llm.scheduler.StatsObserver` on the ``mlpipeline_llm_*`` metrics."""

    def __init__(self, model: str) -> None:
        self.model = model
        self._ttft = metrics.LLM_TIME_TO_FIRST_TOKEN.labels(model=model)
        self._tpot = metrics.LLM_TIME_PER_OUTPUT_TOKEN.labels(model=model)
        self._itl = metrics.LLM_INTER_TOKEN_LATENCY.labels(model=model)
        self._e2e = metrics.LLM_E2E_REQUEST_LATENCY.labels(model=model)
        self._queue = metrics.LLM_REQUEST_QUEUE_TIME.labels(model=model)
        self._prompt = metrics.LLM_PROMPT_TOKENS.labels(model=model)
        self._generated = metrics.LLM_GENERATION_TOKENS.labels(model=model)
        self._success = {
            r: metrics.LLM_REQUEST_SUCCESS.labels(model=model, finished_reason=r) for r in _REASONS
        }
        self._running = metrics.LLM_REQUESTS_RUNNING.labels(model=model)
        self._waiting = metrics.LLM_REQUESTS_WAITING.labels(model=model)
        self._running.set(0)
        self._waiting.set(0)

    def on_scheduled(self, queue_time_s: float, prompt_tokens: int) -> None:
        self._queue.observe(queue_time_s)
        self._prompt.inc(prompt_tokens)

    def on_first_token(self, ttft_s: float) -> None:
        self._ttft.observe(ttft_s)

    def on_tokens(self, count: int, inter_token_latencies_s: Sequence[float]) -> None:
        self._generated.inc(count)
        for gap in inter_token_latencies_s:
            self._itl.observe(gap)

    def on_finished(self, reason: FinishReason, stats: RequestStats) -> None:
        self._success[reason].inc()
        if reason == "abort" or stats.finished is None:
            return
        self._e2e.observe(stats.finished - stats.arrival)
        if stats.completion_tokens >= 2 and stats.first_token is not None and stats.last_token is not None:
            self._tpot.observe((stats.last_token - stats.first_token) / (stats.completion_tokens - 1))

    def on_queue_sizes(self, running: int, waiting: int) -> None:
        self._running.set(running)
        self._waiting.set(waiting)
