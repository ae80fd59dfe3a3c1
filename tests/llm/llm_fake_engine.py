"""A scripted stand-in for BatchEngine: deterministic tokens, step gating, and a log of every batch."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from mlpipeline.llm.engine import SamplingParams

EOS = 0


class FakeEngine:
    """Token ``i`` decodes to ``chr(ord('a') + i - 1)`` (``1`` → ``a``); ``0`` is EOS.

    A sequence's tokens come from ``scripts[prompt_ids[0]]``; past the end of its script it repeats
    the last token. With ``gated=True`` each :meth:`decode` waits for :meth:`allow`, so a test decides
    when steps happen. ``log`` records ``("prefill", id)``, ``("decode", (ids...))``, ``("release", id)``.
    """

    max_context_tokens = 64

    def __init__(
        self, scripts: dict[int, list[int]] | None = None, gated: bool = False, step_delay: float = 0.0
    ) -> None:
        self.eos_token_ids = frozenset({EOS})
        self.scripts = scripts or {}
        self.gated = gated
        self.step_delay = step_delay  # seconds per decode step: long requests stay long on any machine
        self._gate = threading.Semaphore(0)
        self._busy = threading.Lock()
        self.running: dict[int, list[int]] = {}  # seq id -> remaining script
        self.log: list[tuple[str, object]] = []
        self.fail_next_decode = False
        self.fail_next_prefill_many = False
        self.chat_template = True

    def allow(self, steps: int = 1) -> None:
        for _ in range(steps):
            self._gate.release()

    def _next(self, seq_id: int) -> int:
        script = self.running[seq_id]
        return script.pop(0) if len(script) > 1 else script[0]

    def prefill(self, seq_id: int, prompt_ids: Sequence[int], params: SamplingParams) -> int:
        with self._busy:  # never re-entered: the scheduler drives the engine from one thread
            assert seq_id not in self.running
            self.running[seq_id] = list(self.scripts.get(prompt_ids[0], [1]))
            self.log.append(("prefill", seq_id))
            return self._next(seq_id)

    def prefill_many(self, items: Sequence[tuple[int, Sequence[int], SamplingParams]]) -> dict[int, int]:
        self.log.append(("prefill_many", tuple(sid for sid, _, _ in items)))
        if self.fail_next_prefill_many:
            self.fail_next_prefill_many = False
            raise RuntimeError("batched prefill failed")
        return {sid: self.prefill(sid, ids, p) for sid, ids, p in items}

    def decode(self) -> dict[int, int]:
        if self.gated:
            assert self._gate.acquire(timeout=10), "test never allowed the step"
        if self.step_delay:
            time.sleep(self.step_delay)
        with self._busy:
            ids = tuple(sorted(self.running))
            self.log.append(("decode", ids))
            if self.fail_next_decode:
                self.fail_next_decode = False
                raise RuntimeError("boom")
            return {sid: self._next(sid) for sid in ids}

    def release(self, seq_id: int) -> None:
        with self._busy:
            if self.running.pop(seq_id, None) is not None:
                self.log.append(("release", seq_id))

    def reset(self) -> None:
        with self._busy:
            self.running.clear()

    def encode(self, text: str) -> list[int]:
        return [ord(ch) - ord("a") + 1 for ch in text if "a" <= ch <= "z"]

    def apply_chat_template(self, messages: list[dict[str, str]]) -> list[int]:
        if not self.chat_template:
            from mlpipeline.errors import GenerationError

            raise GenerationError("model has no chat template")
        return self.encode("".join(m["content"] for m in messages))

    def decode_text(self, token_ids: Sequence[int]) -> str:
        return "".join(chr(ord("a") + t - 1) for t in token_ids)

    def batches(self) -> list[tuple[int, ...]]:
        return [entry for kind, entry in self.log if kind == "decode"]  # type: ignore[misc]
