"""All Prometheus metrics of the project, in one module.

Names: ``mlpipeline_<subsystem>_<name>_<unit>``; counters are declared without ``_total`` and
prometheus_client's exposition adds it. Metrics are created once at import, on the default registry
(KServe's ``/metrics`` serves that registry), with label children pre-bound where labels are fixed.
Subsystems: ``inference`` (tabular predictor), ``llm`` (generative server), ``model`` (info),
``drift`` (monitoring).
"""

from __future__ import annotations

NAMESPACE = "mlpipeline"


def build_1_2_5_buckets(max_value: float, min_value: float = 1.0) -> list[float]:
    """1-2-5 series from ``min_value`` up to ``max_value`` inclusive (vLLM's token-count buckets).

    >>> build_1_2_5_buckets(100)
    [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0]
    """
    out: list[float] = []
    exponent = 0
    while True:
        for m in (1, 2, 5):
            v = m * min_value * 10**exponent
            if v > max_value:
                return out
            out.append(float(v))
        exponent += 1


# ---- inference
# Tabular predictor (mlpipeline.serving). Under ``--workers N`` these live in prometheus_client's
# multiprocess mode (PROMETHEUS_MULTIPROC_DIR is set before this module is first imported), so each
# Gauge names how worker values combine: in-flight requests add up over live workers; model info is
# the same 1 in every worker.
from prometheus_client import Counter, Gauge, Histogram  # noqa: E402

#: 0.5 ms .. 10 s: a small tabular model answers in about a millisecond, a 10k-row batch in seconds.
INFERENCE_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Regression outputs of unknown scale: signed powers of ten (±0.01 .. ±1e6) around zero.
_POW10 = [10.0**e for e in range(-2, 7)]
PREDICTION_VALUE_BUCKETS = tuple([-v for v in reversed(_POW10)] + [0.0] + _POW10)

INFERENCE_REQUESTS = Counter(
    "requests",
    "Inference requests answered, by model, protocol (v1|v2) and HTTP status code.",
    ["model", "protocol", "code"],
    namespace=NAMESPACE,
    subsystem="inference",
)
INFERENCE_DURATION = Histogram(
    "request_duration_seconds",
    "Wall time from request received to response sent, inference routes only.",
    ["model", "protocol"],
    namespace=NAMESPACE,
    subsystem="inference",
    buckets=INFERENCE_LATENCY_BUCKETS,
)
INFERENCE_ROWS = Counter(
    "rows",
    "Rows scored (successful requests only).",
    ["model"],
    namespace=NAMESPACE,
    subsystem="inference",
)
INFERENCE_PREDICTIONS = Counter(
    "predictions",
    "Predicted labels of a classification model.",
    ["model", "class"],
    namespace=NAMESPACE,
    subsystem="inference",
)
INFERENCE_PREDICTION_VALUE = Histogram(
    "prediction_value",
    "Predicted values of a regression model.",
    ["model"],
    namespace=NAMESPACE,
    subsystem="inference",
    buckets=PREDICTION_VALUE_BUCKETS,
)
INFERENCE_IN_FLIGHT = Gauge(
    "in_flight",
    "Inference requests being processed now.",
    ["model"],
    namespace=NAMESPACE,
    subsystem="inference",
    multiprocess_mode="livesum",
)
MODEL_INFO = Gauge(
    "info",
    "Served model: constant 1, labelled with its version (manifest sha256[:12]) and full manifest sha256.",
    ["model", "version", "sha256"],
    namespace=NAMESPACE,
    subsystem="model",
    multiprocess_mode="livemax",
)


# ---- llm
# Generative server (mlpipeline.llm), with vLLM's metric semantics and bucket ranges:
# TTFT = arrival -> first token; inter-token latency = each gap between consecutive tokens of a request;
# time per output token = a request's mean decode gap, (last - first token) / (tokens - 1), observed once
# per request with >= 2 tokens; e2e = arrival -> finish; queue time = arrival -> first scheduled.
# Tokens/s is rate() of the token counters. Label ``model`` = served model name.
from prometheus_client import Counter, Gauge, Histogram  # noqa: E402,F811

LLM_TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
LLM_TOKEN_LATENCY_BUCKETS = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
)  # fmt: skip
LLM_REQUEST_LATENCY_BUCKETS = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0,
    960.0, 1920.0, 7680.0,
)  # fmt: skip

LLM_TIME_TO_FIRST_TOKEN = Histogram(
    "time_to_first_token_seconds",
    "Time from request arrival to its first generated token.",
    ["model"],
    namespace=NAMESPACE,
    subsystem="llm",
    buckets=LLM_TTFT_BUCKETS,
)
LLM_TIME_PER_OUTPUT_TOKEN = Histogram(
    "time_per_output_token_seconds",
    "Mean time between output tokens of one request after the first (observed once per request).",
    ["model"],
    namespace=NAMESPACE,
    subsystem="llm",
    buckets=LLM_TOKEN_LATENCY_BUCKETS,
)
LLM_INTER_TOKEN_LATENCY = Histogram(
    "inter_token_latency_seconds",
    "Time between two consecutive output tokens of a request (observed per token).",
    ["model"],
    namespace=NAMESPACE,
    subsystem="llm",
    buckets=LLM_TOKEN_LATENCY_BUCKETS,
)
LLM_E2E_REQUEST_LATENCY = Histogram(
    "e2e_request_latency_seconds",
    "Time from request arrival to its last token (finished requests, aborts excluded).",
    ["model"],
    namespace=NAMESPACE,
    subsystem="llm",
    buckets=LLM_REQUEST_LATENCY_BUCKETS,
)
LLM_REQUEST_QUEUE_TIME = Histogram(
    "request_queue_time_seconds",
    "Time a request waited in the queue before its prefill started.",
    ["model"],
    namespace=NAMESPACE,
    subsystem="llm",
    buckets=LLM_REQUEST_LATENCY_BUCKETS,
)
LLM_PROMPT_TOKENS = Counter(
    "prompt_tokens",
    "Prompt tokens prefilled.",
    ["model"],
    namespace=NAMESPACE,
    subsystem="llm",
)
LLM_GENERATION_TOKENS = Counter(
    "generation_tokens",
    "Tokens generated (an end-of-sequence token counts).",
    ["model"],
    namespace=NAMESPACE,
    subsystem="llm",
)
LLM_REQUEST_SUCCESS = Counter(
    "request_success",
    "Requests finished, by finished_reason: stop (EOS or stop string), length, abort (client gone), error.",
    ["model", "finished_reason"],
    namespace=NAMESPACE,
    subsystem="llm",
)
LLM_REQUESTS_RUNNING = Gauge(
    "requests_running",
    "Sequences in the running batch.",
    ["model"],
    namespace=NAMESPACE,
    subsystem="llm",
    multiprocess_mode="livesum",
)
LLM_REQUESTS_WAITING = Gauge(
    "requests_waiting",
    "Requests in the waiting queue.",
    ["model"],
    namespace=NAMESPACE,
    subsystem="llm",
    multiprocess_mode="livesum",
)
# ---- end llm
