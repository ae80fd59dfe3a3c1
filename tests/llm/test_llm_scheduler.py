"""Continuous-batching scheduler against a scripted fake engine: no model, no server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest
from llm_fake_engine import EOS, FakeEngine

from mlpipeline.errors import InvalidInputError, ServerBusyError
from mlpipeline.llm.scheduler import (
    Finished,
    GenerationRequest,
    RequestHandle,
    RequestStats,
    Scheduler,
    SchedulerLimits,
    TextDelta,
)


def req(
    first: int, max_tokens: int = 5, stop: tuple[str, ...] = (), prompt_len: int = 3
) -> GenerationRequest:
    return GenerationRequest(prompt_ids=(first,) + (7,) * (prompt_len - 1), max_tokens=max_tokens, stop=stop)


async def collect(handle: RequestHandle) -> tuple[str, Finished]:
    text = ""
    async for ev in handle.events():
        if isinstance(ev, TextDelta):
            text += ev.text
    assert handle.finished is not None
    return text, handle.finished


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.002)


def run(scheduler: Scheduler, body: Callable[[], Awaitable[None]]) -> None:
    scheduler.start()
    try:
        asyncio.run(asyncio.wait_for(body(), 20))
    finally:
        scheduler.stop()


class Recorder:
    def __init__(self) -> None:
        self.ttft: list[float] = []
        self.itl: list[float] = []
        self.tokens = 0
        self.finished: list[tuple[str, RequestStats]] = []
        self.queue: list[float] = []
        self.sizes: list[tuple[int, int]] = []

    def on_scheduled(self, queue_time_s: float, prompt_tokens: int) -> None:
        self.queue.append(queue_time_s)

    def on_first_token(self, ttft_s: float) -> None:
        self.ttft.append(ttft_s)

    def on_tokens(self, count: int, inter_token_latencies_s) -> None:
        self.tokens += count
        self.itl.extend(inter_token_latencies_s)

    def on_finished(self, reason, stats: RequestStats) -> None:
        self.finished.append((reason, stats))

    def on_queue_sizes(self, running: int, waiting: int) -> None:
        self.sizes.append((running, waiting))


def test_sequences_join_and_leave_at_step_boundaries() -> None:
    engine = FakeEngine({1: [1, 2, 3, 4, 5], 2: [6, 7, 8, 9, 10, 11, 12, 13]}, gated=True)
    sched = Scheduler(engine, SchedulerLimits(max_running=4))

    async def body() -> None:
        a = sched.submit(req(1, max_tokens=5))
        ta = asyncio.create_task(collect(a))
        await until(lambda: ("prefill", a.request_id) in engine.log)
        engine.allow(2)  # two decode steps with A alone
        await until(lambda: len(engine.batches()) == 2)
        b = sched.submit(req(2, max_tokens=6))
        tb = asyncio.create_task(collect(b))
        engine.allow(20)
        (text_a, fin_a), (text_b, fin_b) = await ta, await tb
        assert (text_a, fin_a.reason, fin_a.completion_tokens) == ("abcde", "length", 5)
        assert (text_b, fin_b.reason, fin_b.completion_tokens) == ("fghijk", "length", 6)
        ida, idb = a.request_id, b.request_id
        batches = engine.batches()
        # B joined only between steps: after its prefill every batch holds both until A left
        joined = engine.log.index(("prefill", idb))
        assert all(kind != "decode" or ida in entry for kind, entry in engine.log[:joined])
        first_shared = engine.log[joined + 1]
        assert first_shared == ("decode", (ida, idb))
        # the step already blocked when B arrived ran with A alone: B waited for the boundary
        assert batches[:3] == [(ida,)] * 3
        # A leaves after its 5th token (prefill + 4 decodes), B after its 6th (prefill + 5); then no row is left
        assert sum(ida in b for b in batches) == 4 and sum(idb in b for b in batches) == 5
        assert batches[4:] == [(idb,)] * 4
        assert engine.log.index(("release", ida)) < engine.log.index(("decode", (idb,)))
        assert engine.running == {}

    run(sched, body)


def test_running_limit_queues_then_admits_fifo() -> None:
    engine = FakeEngine({1: [1], 2: [2], 3: [3]})
    rec = Recorder()
    sched = Scheduler(engine, SchedulerLimits(max_running=2, max_waiting=4), observer=rec)

    async def body() -> None:
        handles = [sched.submit(req(i, max_tokens=4)) for i in (1, 2, 3)]
        results = await asyncio.gather(*(collect(h) for h in handles))
        assert [t for t, _ in results] == ["aaaa", "bbbb", "cccc"]
        assert max(len(b) for b in engine.batches()) == 2
        prefills = [e for k, e in engine.log if k == "prefill"]
        assert prefills == [h.request_id for h in handles]
        # the third prefill comes only after a slot was released
        third = engine.log.index(("prefill", handles[2].request_id))
        assert any(k == "release" for k, _ in engine.log[:third])
        assert max(w for _, w in rec.sizes) >= 1
        await until(lambda: rec.sizes[-1] == (0, 0))  # reported after the step that finished them

    run(sched, body)


def test_queue_full_raises_server_busy() -> None:
    engine = FakeEngine({1: [1]}, gated=True)
    sched = Scheduler(engine, SchedulerLimits(max_running=1, max_waiting=1))

    async def body() -> None:
        first = sched.submit(req(1, max_tokens=3))
        await until(lambda: sched.num_running == 1)
        second = sched.submit(req(1, max_tokens=3))
        with pytest.raises(ServerBusyError):
            sched.submit(req(1, max_tokens=3))
        engine.allow(10)
        await collect(first)
        await collect(second)
        sched.submit(req(1, max_tokens=1))  # room again

    run(sched, body)


@pytest.mark.parametrize(
    ("prompt_len", "max_tokens", "message"),
    [
        (9, 2, "limit is 8"),
        (0, 2, "at least one token"),
        (3, 5, "between 1 and 4"),
        (3, 0, "between 1 and 4"),
    ],
)
def test_limits_reject_impossible_requests(prompt_len: int, max_tokens: int, message: str) -> None:
    sched = Scheduler(FakeEngine(), SchedulerLimits(max_prompt_tokens=8, max_new_tokens=4))
    request = GenerationRequest(prompt_ids=(1,) * prompt_len, max_tokens=max_tokens)
    with pytest.raises(InvalidInputError, match=message):
        sched.submit(request, loop=asyncio.new_event_loop())


def test_context_length_is_enforced() -> None:
    sched = Scheduler(FakeEngine(), SchedulerLimits(max_prompt_tokens=60, max_new_tokens=30))
    with pytest.raises(InvalidInputError, match="context of 64"):
        sched.validate(40, 30)


def test_cancel_frees_the_slot_for_a_waiting_request() -> None:
    engine = FakeEngine({1: [1], 2: [2]}, step_delay=0.002)
    sched = Scheduler(engine, SchedulerLimits(max_running=1, max_new_tokens=10_000))
    engine.max_context_tokens = 100_000

    async def body() -> None:
        long = sched.submit(req(1, max_tokens=10_000))
        waiting = sched.submit(req(2, max_tokens=3))
        await until(lambda: len(engine.batches()) >= 3)
        assert sched.num_waiting == 1 and sched.num_running == 1
        long.cancel()
        text, fin = await collect(long)
        assert fin.reason == "abort" and text.startswith("aaa")
        text2, fin2 = await collect(waiting)
        assert (text2, fin2.reason) == ("bbb", "length")
        assert ("release", long.request_id) in engine.log
        await until(lambda: sched.num_running == 0)

    run(sched, body)


def test_cancel_while_waiting_never_prefills() -> None:
    engine = FakeEngine({1: [1]}, gated=True)
    sched = Scheduler(engine, SchedulerLimits(max_running=1))

    async def body() -> None:
        running = sched.submit(req(1, max_tokens=2))
        queued = sched.submit(req(1, max_tokens=2))
        await until(lambda: sched.num_running == 1)
        queued.cancel()  # takes effect at the next step boundary, after the step now blocked
        engine.allow(5)
        _, fin = await collect(queued)
        assert fin.reason == "abort" and fin.completion_tokens == 0
        text, fin = await collect(running)
        assert (text, fin.reason) == ("aa", "length")
        assert ("prefill", queued.request_id) not in engine.log

    run(sched, body)


def test_stop_string_truncates_and_is_never_streamed() -> None:
    # tokens spell "abcdef"; stop "cd": the client must see "ab" only, "c" held back until it's decided
    engine = FakeEngine({1: [1, 2, 3, 4, 5, 6]})
    sched = Scheduler(engine)

    async def body() -> None:
        h = sched.submit(req(1, max_tokens=6, stop=("cd", "zz")))
        deltas = []
        async for ev in h.events():
            if isinstance(ev, TextDelta):
                deltas.append(ev.text)
        assert "".join(deltas) == "ab" and h.finished is not None and h.finished.reason == "stop"
        assert all("c" not in d for d in deltas)
        # a held-back prefix that does not complete the stop string is released
        h2 = sched.submit(req(1, max_tokens=6, stop=("cx",)))
        text, fin = await collect(h2)
        assert (text, fin.reason) == ("abcdef", "length")

    run(sched, body)


def test_eos_stops_without_text() -> None:
    engine = FakeEngine({1: [1, 2, EOS, 3]})
    sched = Scheduler(engine)

    async def body() -> None:
        text, fin = await collect(sched.submit(req(1, max_tokens=10)))
        assert (text, fin.reason, fin.completion_tokens) == ("ab", "stop", 3)

    run(sched, body)


def test_observer_gets_vllm_style_timings() -> None:
    engine = FakeEngine({1: [1, 2, 3, 4]})
    rec = Recorder()
    sched = Scheduler(engine, observer=rec)

    async def body() -> None:
        await asyncio.gather(
            collect(sched.submit(req(1, max_tokens=4))), collect(sched.submit(req(1, max_tokens=2)))
        )

    run(sched, body)
    assert len(rec.ttft) == 2 and len(rec.queue) == 2
    assert rec.tokens == 6 and len(rec.itl) == 6 - 2  # one gap per token after each first
    assert sorted(r for r, _ in rec.finished) == ["length", "length"]
    for _, st in rec.finished:
        assert st.arrival <= st.scheduled <= st.first_token <= st.last_token <= st.finished


def test_engine_failure_fails_running_requests_and_loop_survives() -> None:
    engine = FakeEngine({1: [1]})
    sched = Scheduler(engine)

    async def body() -> None:
        engine.fail_next_decode = True
        text, fin = await collect(sched.submit(req(1, max_tokens=5)))
        assert fin.reason == "error" and "boom" in (fin.error or "")
        text, fin = await collect(sched.submit(req(1, max_tokens=2)))
        assert (text, fin.reason) == ("aa", "length")

    run(sched, body)


def test_stop_aborts_everything_and_refuses_new_work() -> None:
    engine = FakeEngine({1: [1]}, step_delay=0.002)
    engine.max_context_tokens = 100_000
    sched = Scheduler(engine, SchedulerLimits(max_new_tokens=50_000))
    sched.start()

    async def body() -> None:
        h = sched.submit(req(1, max_tokens=50_000))
        await until(lambda: sched.num_running == 1)
        await asyncio.get_running_loop().run_in_executor(None, sched.stop)
        _, fin = await collect(h)
        assert fin.reason == "abort"
        with pytest.raises(ServerBusyError):
            sched.submit(req(1))

    asyncio.run(asyncio.wait_for(body(), 20))


@pytest.mark.parametrize("batched_fails", [False, True])
def test_simultaneous_joiners_share_one_prefill_or_fall_back_one_by_one(batched_fails: bool) -> None:
    engine = FakeEngine({1: [1], 2: [2], 3: [3]}, gated=True)
    engine.fail_next_prefill_many = batched_fails
    sched = Scheduler(engine, SchedulerLimits(max_running=4))

    async def body() -> None:
        blocker = sched.submit(req(1, max_tokens=3))
        await until(lambda: sched.num_running == 1)  # the loop is now blocked in a decode step
        handles = [sched.submit(req(i, max_tokens=2)) for i in (2, 3)]
        engine.allow(20)
        results = await asyncio.gather(collect(blocker), *(collect(h) for h in handles))
        assert [(t, f.reason) for t, f in results] == [("aaa", "length"), ("bb", "length"), ("cc", "length")]
        ids = tuple(h.request_id for h in handles)
        assert ("prefill_many", ids) in engine.log
        singles = [e for k, e in engine.log if k == "prefill"]
        assert singles == [blocker.request_id, *ids]  # prefill_many's own, or the one-by-one retry

    run(sched, body)


def test_a_burst_on_an_idle_batch_is_prefilled_together() -> None:
    """Requests arriving a few ms apart on an idle batch join one prefill (not the first alone)."""
    engine = FakeEngine()
    sched = Scheduler(engine, SchedulerLimits(max_running=8, admission_gap_s=0.05, admission_max_wait_s=0.5))

    async def body() -> None:
        handles = []
        for i in range(4):
            handles.append(sched.submit(req(i + 1, max_tokens=2)))
            await asyncio.sleep(0.01)  # well inside the gap
        await asyncio.gather(*(collect(h) for h in handles))
        prefills = [e for k, e in engine.log if k == "prefill_many"]
        assert prefills[0] == tuple(h.request_id for h in handles)

    run(sched, body)


def test_a_lone_request_waits_only_the_gap() -> None:
    engine = FakeEngine()
    sched = Scheduler(engine, SchedulerLimits(admission_gap_s=0.02, admission_max_wait_s=1.0))

    async def body() -> None:
        t0 = time.monotonic()
        await collect(sched.submit(req(1, max_tokens=1)))
        assert time.monotonic() - t0 < 0.5  # the gap (20 ms), not the 1 s cap

    run(sched, body)


def test_admission_window_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="admission_gap_s"):
        SchedulerLimits(admission_gap_s=0.1, admission_max_wait_s=0.01)
