"""Generative (LLM) serving: an OpenAI-compatible server with continuous batching.

Layout (TGI's router / shard split, so each part is testable alone):

- :mod:`.engine` — the model side: checkpoint resolution (GGUF → cached HF checkpoint), batched
  prefill/decode over a left-padded KV cache, sampling. No HTTP, no queues, no metrics.
- :mod:`.scheduler` — the continuous-batching loop in a background thread: waiting queue, limits,
  step-boundary joins and leaves, stop strings, cancellation; tokens go to asyncio queues.
- :mod:`.stats` — the Prometheus stat logger the scheduler reports to (metrics live in
  :mod:`mlpipeline.metrics`).
- :mod:`.protocol` — OpenAI request/response models.
- :mod:`.server` — KServe model + FastAPI router + SSE; :func:`.server.serve_llm` is the entry.

Importing this package is cheap: torch, transformers and kserve are imported by the submodules that need them.
"""
