"""Fixtures for the fine-tuning tests: a tiny random Llama checkpoint that uses SmolLM2's real tokenizer.

The tiny model (2 layers, width 16, SmolLM2's 49,152-token vocabulary) runs every stage in seconds,
so the stage chain is tested without paying for the 135M-parameter model; the real model runs once,
in the kfp.local end-to-end test.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def smollm2_checkpoint() -> Path:
    pytest.importorskip("transformers")
    from mlpipeline.llm.engine import resolve_checkpoint

    return resolve_checkpoint(None)  # converts the packaged GGUF on first use; cached by sha256 afterwards


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory, smollm2_checkpoint) -> Path:
    """An HF directory: random 2-layer Llama (seeded) + SmolLM2's tokenizer files."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(smollm2_checkpoint)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    out = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out
