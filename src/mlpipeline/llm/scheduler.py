"""Continuous batching: one background thread drives the engine; asyncio callers get tokens via queues.

Each loop iteration is one *step boundary*:

1. cancelled sequences leave (their KV rows are freed) and waiting requests join, FIFO, while there
   is a running slot and the step's prefill token budget lasts; the joiners' prompts are prefilled
   together in one forward pass and each one's first token emitted (its time to first token);
2. one decode forward pass runs for every running sequence together and each gets one token;
3. finished sequences (EOS, stop string, ``max_tokens``, context full) leave.

Submission is thread-safe and never blocks: over-limit requests raise
:class:`~mlpipeline.errors.InvalidInputError`, a full waiting queue raises
:class:`~mlpipeline.errors.ServerBusyError`. The scheduler knows nothing about HTTP or Prometheus:
it reports timings to a :class:`StatsObserver` (see :mod:`mlpipeline.llm.stats`).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from mlpipeline.errors import InvalidInputError, ServerBusyError
from mlpipeline.llm.engine import SamplingParams

log = logging.getLogger(__name__)

FinishReason = Literal["stop", "length", "abort", "error"]


class Engine(Protocol):
    """What the scheduler needs from a model engine (:class:`~mlpipeline.llm.engine.BatchEngine`)."""

    eos_token_ids: frozenset[int]
    max_context_tokens: int

    def prefill(self, seq_id: int, prompt_ids: Sequence[int], params: SamplingParams) -> int: ...

    def prefill_many(self, items: Sequence[tuple[int, Sequence[int], SamplingParams]]) -> dict[int, int]: ...

    def decode(self) -> dict[int, int]: ...

    def release(self, seq_id: int) -> None: ...

    def reset(self) -> None: ...

    def decode_text(self, token_ids: Sequence[int]) -> str: ...


class StatsObserver(Protocol):
    """Receives timings from the scheduler thread (vLLM's stat logger); implementations must be cheap."""

    def on_scheduled(self, queue_time_s: float, prompt_tokens: int) -> None: ...

    def on_first_token(self, ttft_s: float) -> None: ...

    def on_tokens(self, count: int, inter_token_latencies_s: Sequence[float]) -> None: ...

    def on_finished(self, reason: FinishReason, stats: RequestStats) -> None: ...

    def on_queue_sizes(self, running: int, waiting: int) -> None: ...


@dataclass(frozen=True)
class SchedulerLimits:
    """Admission limits. ``prefill_token_budget`` caps prompt tokens prefilled per step so running streams
    keep getting tokens while a burst of long prompts joins (a single longer prompt is still admitted alone)."""

    max_running: int = 32
    max_waiting: int = 128
    max_prompt_tokens: int = 1024
    max_new_tokens: int = 512
    prefill_token_budget: int = 2048
    #: When the batch is idle, a new request waits until no other request has arrived for
    #: ``admission_gap_s`` (at most ``admission_max_wait_s``), so a burst is prefilled in one pass
    #: instead of one request alone and the rest a step later. Costs a lone request ``admission_gap_s``.
    admission_gap_s: float = 0.004
    admission_max_wait_s: float = 0.025

    def __post_init__(self) -> None:
        for name in ("max_running", "max_prompt_tokens", "max_new_tokens", "prefill_token_budget"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.max_waiting < 0:
            raise ValueError("max_waiting must be >= 0")
        if self.admission_gap_s < 0 or self.admission_max_wait_s < self.admission_gap_s:
            raise ValueError("need 0 <= admission_gap_s <= admission_max_wait_s")


@dataclass(frozen=True)
class GenerationRequest:
    prompt_ids: tuple[int, ...]
    max_tokens: int
    params: SamplingParams = SamplingParams()
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class TextDelta:
    """New text for the client (may be empty when a token only completed a held-back prefix)."""

    text: str
    token_ids: tuple[int, ...]


@dataclass(frozen=True)
class Finished:
    reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    error: str | None = None


Event = TextDelta | Finished


@dataclass
class RequestStats:
    """Timestamps (``time.monotonic``) of one request's life."""

    arrival: float
    prompt_tokens: int
    scheduled: float | None = None
    first_token: float | None = None
    last_token: float | None = None
    finished: float | None = None
    completion_tokens: int = 0


class RequestHandle:
    """The asyncio side of one request: iterate its events; ``cancel()`` frees its slot at the next step."""

    def __init__(self, request_id: int, scheduler: Scheduler, loop: asyncio.AbstractEventLoop) -> None:
        self.request_id = request_id
        self._scheduler = scheduler
        self._loop = loop
        self._queue: asyncio.Queue[Event] = asyncio.Queue()
        self.finished: Finished | None = None

    def _deliver(self, event: Event) -> None:  # scheduler thread
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, event)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            pass

    async def events(self) -> AsyncIterator[Event]:
        """Yield events until (and including) the :class:`Finished` one."""
        while self.finished is None:
            event = await self._queue.get()
            if isinstance(event, Finished):
                self.finished = event
            yield event

    def cancel(self) -> None:
        if self.finished is None:
            self._scheduler.cancel(self.request_id)


@dataclass
class _Sequence:
    request_id: int
    request: GenerationRequest
    handle: RequestHandle
    stats: RequestStats
    generated: list[int] = field(default_factory=list)
    sent_chars: int = 0
    pending_ids: list[int] = field(default_factory=list)


class Scheduler:
    """Continuous-batching loop around one engine. ``start()`` it once; ``stop()`` ends the thread."""

    def __init__(
        self, engine: Engine, limits: SchedulerLimits | None = None, observer: StatsObserver | None = None
    ) -> None:
        self.engine = engine
        self.limits = limits or SchedulerLimits()
        self.observer = observer
        self._cond = threading.Condition()
        self._waiting: collections.deque[_Sequence] = collections.deque()
        self._running: dict[int, _Sequence] = {}
        self._cancelled: set[int] = set()
        self._ids = itertools.count(1)
        self._stop = False
        self._thread: threading.Thread | None = None
        #: step counter, for tests that check joins/leaves happen at step boundaries
        self.steps = 0

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="llm-scheduler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    @property
    def alive(self) -> bool:
        """The loop thread is running (False before start, after stop, or if it died)."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def num_running(self) -> int:
        return len(self._running)

    @property
    def num_waiting(self) -> int:
        return len(self._waiting)

    # ---------------------------------------------------------------- submission (any thread)
    def validate(self, prompt_tokens: int, max_tokens: int) -> None:
        """Raise InvalidInputError if a request can never run under the limits."""
        lim = self.limits
        if prompt_tokens < 1:
            raise InvalidInputError("prompt must contain at least one token")
        if prompt_tokens > lim.max_prompt_tokens:
            raise InvalidInputError(
                f"prompt has {prompt_tokens} tokens; the limit is {lim.max_prompt_tokens}"
            )
        if max_tokens < 1 or max_tokens > lim.max_new_tokens:
            raise InvalidInputError(
                f"max_tokens must be between 1 and {lim.max_new_tokens}, got {max_tokens}"
            )
        if prompt_tokens + max_tokens > self.engine.max_context_tokens:
            raise InvalidInputError(
                f"prompt ({prompt_tokens} tokens) + max_tokens ({max_tokens}) exceeds the model's "
                f"context of {self.engine.max_context_tokens} tokens"
            )

    def submit(
        self, request: GenerationRequest, loop: asyncio.AbstractEventLoop | None = None
    ) -> RequestHandle:
        """Queue a request; returns its handle. Raises InvalidInputError or ServerBusyError (queue full)."""
        self.validate(len(request.prompt_ids), request.max_tokens)
        loop = loop or asyncio.get_running_loop()
        now = time.monotonic()
        with self._cond:
            if self._stop:
                raise ServerBusyError("the generation scheduler is shutting down")
            free_slots = max(0, self.limits.max_running - len(self._running))
            if len(self._waiting) >= self.limits.max_waiting + free_slots:
                raise ServerBusyError(
                    f"waiting queue is full ({self.limits.max_waiting} requests); retry later"
                )
            rid = next(self._ids)
            handle = RequestHandle(rid, self, loop)
            self._waiting.append(
                _Sequence(
                    rid, request, handle, RequestStats(arrival=now, prompt_tokens=len(request.prompt_ids))
                )
            )
            self._report_sizes()
            self._cond.notify_all()
        return handle

    def cancel(self, request_id: int) -> None:
        """Abort a request (client gone); it leaves at the next step boundary. Unknown ids are ignored."""
        with self._cond:
            self._cancelled.add(request_id)
            self._cond.notify_all()

    # ---------------------------------------------------------------- loop (scheduler thread)
    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stop and not self._waiting and not self._running and not self._cancelled:
                    self._cond.wait()
                if not self._running and self._waiting:
                    self._gather_burst()
                if self._stop:
                    break
                cancelled, self._cancelled = self._cancelled, set()
                aborted = self._drop_cancelled(cancelled)
                joining = self._admit()
            for seq in aborted:
                self._finish(seq, "abort")
            try:
                self._step(joining)
            except Exception as e:  # an engine failure must not kill the loop; fail what was running
                log.exception("engine step failed")
                self._fail_all(e)
            self.steps += 1
            with self._cond:
                self._report_sizes()
        self._shutdown()

    def _gather_burst(self) -> None:
        """Idle batch: hold admission while requests keep arriving (lock held by the caller)."""
        gap, cap = self.limits.admission_gap_s, self.limits.admission_max_wait_s
        if gap <= 0:
            return
        deadline = time.monotonic() + cap
        while not self._stop and len(self._waiting) < self.limits.max_running:
            seen = len(self._waiting)
            remaining = min(gap, deadline - time.monotonic())
            if remaining <= 0:
                return
            self._cond.wait(remaining)
            if len(self._waiting) == seen:
                return  # nothing arrived within the gap: the burst is over

    def _drop_cancelled(self, cancelled: set[int]) -> list[_Sequence]:
        aborted = [self._running.pop(rid) for rid in cancelled if rid in self._running]
        if cancelled:
            kept = [s for s in self._waiting if s.request_id not in cancelled]
            aborted += [s for s in self._waiting if s.request_id in cancelled]
            self._waiting = collections.deque(kept)
        for seq in aborted:
            self.engine.release(seq.request_id)
        return aborted

    def _admit(self) -> list[_Sequence]:
        joining: list[_Sequence] = []
        budget = self.limits.prefill_token_budget
        while self._waiting and len(self._running) + len(joining) < self.limits.max_running:
            n = len(self._waiting[0].request.prompt_ids)
            if joining and n > budget:
                break
            joining.append(self._waiting.popleft())
            budget -= n
        return joining

    def _step(self, joining: list[_Sequence]) -> None:
        now = time.monotonic()
        for seq in joining:
            seq.stats.scheduled = now
            if self.observer:
                self.observer.on_scheduled(now - seq.stats.arrival, seq.stats.prompt_tokens)
            with self._cond:
                self._running[seq.request_id] = seq
        if len(joining) > 1:
            try:  # all joiners in one forward pass
                firsts = self.engine.prefill_many(
                    [(s.request_id, s.request.prompt_ids, s.request.params) for s in joining]
                )
            except Exception:  # retry one by one, so one bad prompt fails alone
                log.exception("batched prefill of %d requests failed; retrying one by one", len(joining))
                for seq in joining:
                    self.engine.release(seq.request_id)
            else:
                now = time.monotonic()
                for seq in joining:
                    self._on_token(seq, firsts[seq.request_id], now)
                joining = []
        for seq in joining:
            try:
                token = self.engine.prefill(seq.request_id, seq.request.prompt_ids, seq.request.params)
            except Exception as e:  # this prompt failed; the batch and the other joiners are unaffected
                log.exception("prefill of request %d failed", seq.request_id)
                self.engine.release(seq.request_id)
                self._finish(seq, "error", error=f"generation failed: {e}")
                continue
            self._on_token(seq, token, time.monotonic())
        if self._running:
            tokens = self.engine.decode()
            now = time.monotonic()
            for rid, token in tokens.items():
                seq = self._running.get(rid)
                if seq is not None:
                    self._on_token(seq, token, now)

    def _on_token(self, seq: _Sequence, token: int, now: float) -> None:
        st = seq.stats
        if st.first_token is None:
            st.first_token = now
            if self.observer:
                self.observer.on_first_token(now - st.arrival)
                self.observer.on_tokens(1, ())
        elif self.observer:
            self.observer.on_tokens(1, (now - (st.last_token or now),))
        st.last_token = now
        st.completion_tokens += 1
        if token in self.engine.eos_token_ids:
            self._flush(seq, final=True)
            self._finish(seq, "stop")
            return
        seq.generated.append(token)
        seq.pending_ids.append(token)
        if self._flush(seq, final=False):
            self._finish(seq, "stop")
            return
        if len(seq.generated) >= seq.request.max_tokens or (
            st.prompt_tokens + st.completion_tokens >= self.engine.max_context_tokens
        ):
            self._flush(seq, final=True)
            self._finish(seq, "length")

    def _flush(self, seq: _Sequence, final: bool) -> bool:
        """Send the text that is safe to send; returns True when a stop string was hit."""
        text = self.engine.decode_text(seq.generated)
        stops = seq.request.stop
        hit = False
        end = len(text)
        if stops:
            search_from = max(0, seq.sent_chars - max(len(s) for s in stops) + 1)
            found = [i for s in stops if (i := text.find(s, search_from)) != -1]
            if found:
                end, hit = min(found), True
        if not hit and not final:
            if text.endswith("\ufffd"):  # an incomplete multi-byte character: wait for the next token
                end = len(text.rstrip("\ufffd"))
            for s in stops:  # hold back a suffix that may be the start of a stop string
                for k in range(min(len(s) - 1, end), 0, -1):
                    if text[end - k : end] == s[:k]:
                        end -= k
                        break
        end = max(end, seq.sent_chars)
        if end > seq.sent_chars or seq.pending_ids:
            seq.handle._deliver(TextDelta(text[seq.sent_chars : end], tuple(seq.pending_ids)))
            seq.sent_chars = end
            seq.pending_ids = []
        return hit

    def _finish(self, seq: _Sequence, reason: FinishReason, error: str | None = None) -> None:
        with self._cond:
            self._running.pop(seq.request_id, None)
        self.engine.release(seq.request_id)
        st = seq.stats
        st.finished = time.monotonic()
        seq.handle._deliver(Finished(reason, st.prompt_tokens, st.completion_tokens, error))
        if self.observer:
            self.observer.on_finished(reason, st)

    def _fail_all(self, exc: Exception) -> None:
        with self._cond:
            failed = list(self._running.values())
        try:
            self.engine.reset()
        except Exception:
            log.exception("engine reset failed")
        for seq in failed:
            self._finish(seq, "error", error=f"generation failed: {exc}")

    def _shutdown(self) -> None:
        with self._cond:
            seqs = list(self._running.values()) + list(self._waiting)
            self._waiting.clear()
        for seq in seqs:
            self._finish(seq, "abort", error="server shutting down")

    def _report_sizes(self) -> None:
        if self.observer:
            self.observer.on_queue_sizes(len(self._running), len(self._waiting))
