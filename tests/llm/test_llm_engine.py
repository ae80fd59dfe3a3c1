"""BatchEngine on the real SmolLM2: batching must not change what each sequence generates."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mlpipeline.errors import ArtifactError
from mlpipeline.llm.engine import BatchEngine, EngineConfig, SamplingParams, resolve_checkpoint, sample_next

pytestmark = pytest.mark.slow

PROMPTS = [
    "The capital of France is",
    "Once upon a time, in a land far away, there lived a",
    "def fibonacci(n):",
    "List three colours:",
    "Water boils at a temperature of",
]
GREEDY = SamplingParams(temperature=0.0)
STEPS = 10


@pytest.fixture(scope="module")
def engine(smollm2_checkpoint: Path) -> Iterator[BatchEngine]:
    import torch

    threads = torch.get_num_threads()  # one thread: robust when other test processes share the cores
    e = BatchEngine.load(EngineConfig(model_source=str(smollm2_checkpoint), threads=1))
    e.warmup()
    yield e
    torch.set_num_threads(threads)


def alone(engine: BatchEngine, prompt: str, params: SamplingParams = GREEDY, steps: int = STEPS) -> list[int]:
    out = [engine.prefill(0, engine.encode(prompt), params)]
    out += [engine.decode()[0] for _ in range(steps - 1)]
    engine.release(0)
    return out


def test_batched_greedy_equals_unbatched_with_staggered_joins_and_leaves(engine: BatchEngine) -> None:
    reference = [alone(engine, p) for p in PROMPTS]
    outputs: dict[int, list[int]] = {}
    # joins at different steps (different prompt lengths → real left padding), leaves as each finishes
    join_at = {0: 0, 1: 0, 2: 3, 3: 5, 4: 7}
    step = 0
    max_batch = 0
    while len(outputs) < len(PROMPTS) or engine.num_sequences:
        for i, at in join_at.items():
            if at == step:
                outputs[i] = [engine.prefill(i, engine.encode(PROMPTS[i]), GREEDY)]
        for sid, tok in engine.decode().items():
            outputs[sid].append(tok)
        for sid in [s for s, toks in outputs.items() if len(toks) >= STEPS and s in engine._seq_ids]:
            engine.release(sid)
        max_batch = max(max_batch, engine.num_sequences)
        step += 1
    assert max_batch >= 3
    for i, ref in enumerate(reference):
        got = outputs[i][:STEPS]
        assert got == ref, f"prompt {i}: {engine.decode_text(got)!r} != {engine.decode_text(ref)!r}"
    assert engine.num_sequences == 0 and engine.padded_length == 0


def test_release_trims_padding_columns(engine: BatchEngine) -> None:
    engine.prefill(1, engine.encode(PROMPTS[1]), GREEDY)  # long prompt
    engine.prefill(2, engine.encode(PROMPTS[0]), GREEDY)  # short prompt, left-padded
    long_len = len(engine.encode(PROMPTS[1]))
    assert engine.padded_length == long_len
    engine.decode()
    engine.release(1)
    assert engine.padded_length == len(engine.encode(PROMPTS[0])) + 1
    assert engine.context_length(2) == engine.padded_length + 1
    engine.reset()


def test_seeded_sampling_is_independent_of_batch_company(engine: BatchEngine) -> None:
    params = SamplingParams(temperature=0.8, top_p=0.9, seed=1234)
    ref = alone(engine, PROMPTS[1], params, steps=6)
    assert ref == alone(engine, PROMPTS[1], params, steps=6)
    engine.prefill(5, engine.encode(PROMPTS[2]), SamplingParams(temperature=1.0, seed=9))
    got = [engine.prefill(6, engine.encode(PROMPTS[1]), params)]
    got += [engine.decode()[6] for _ in range(5)]
    engine.reset()
    assert got == ref


def test_sample_next_greedy_and_top_p() -> None:
    import torch

    logits = torch.tensor([[0.0, 5.0, 1.0], [10.0, 0.0, 9.9]])
    gens = [None, torch.Generator().manual_seed(0)]
    # greedy row takes argmax; top_p=0.5 keeps only the single most likely token of row 2
    out = sample_next(logits, [GREEDY, SamplingParams(temperature=1.0, top_p=0.5)], gens)
    assert out.tolist() == [1, 0]


def test_resolve_checkpoint_sources(smollm2_checkpoint: Path, tmp_path: Path) -> None:
    assert resolve_checkpoint(smollm2_checkpoint) == smollm2_checkpoint  # HF dir: used as is
    assert resolve_checkpoint(None) == smollm2_checkpoint  # cached conversion: same dir, no work
    assert (smollm2_checkpoint / "mlpipeline-checkpoint.json").is_file()
    with pytest.raises(ArtifactError, match="no model at"):
        resolve_checkpoint(tmp_path)
    with pytest.raises(ArtifactError, match="GGUF file not found"):
        resolve_checkpoint(tmp_path / "missing.gguf")


def test_batched_prefill_equals_single_prefills(engine: BatchEngine) -> None:
    """Joiners prefilled together (right-padded, one forward pass) generate what they generate alone."""
    reference = [alone(engine, p) for p in PROMPTS]
    engine.prefill(9, engine.encode(PROMPTS[2]), GREEDY)  # an already running sequence, left-padded in
    engine.decode()
    firsts = engine.prefill_many([(i, engine.encode(p), GREEDY) for i, p in enumerate(PROMPTS)])
    outputs = {i: [firsts[i]] for i in range(len(PROMPTS))}
    for _ in range(STEPS - 1):
        for sid, tok in engine.decode().items():
            if sid != 9:
                outputs[sid].append(tok)
    engine.reset()
    for i, ref in enumerate(reference):
        assert outputs[i] == ref, (
            f"prompt {i}: {engine.decode_text(outputs[i])!r} != {engine.decode_text(ref)!r}"
        )
