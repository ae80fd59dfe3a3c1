"""Model-side helpers shared by the fine-tuning stages: checkpoint resolution, device and precision
choice, the causal-LM token loss, and held-out perplexity.

Checkpoints are resolved with the LLM server's own loader
(:func:`mlpipeline.llm.engine.resolve_checkpoint`: the packaged SmolLM2 GGUF is dequantised once to an
HF checkpoint cached by its sha256), so training, evaluation and serving read the same weights.

Perplexity is ``exp(sum of token NLL / number of predicted tokens)`` over every held-out block: each
block of ``T`` tokens contributes ``T - 1`` next-token predictions (blocks are full, so no padding is
ever scored). Sums, not per-batch means, are accumulated, so the result does not depend on the batch size.
"""

from __future__ import annotations

import math
import os
import time
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from mlpipeline.errors import ArtifactError

if TYPE_CHECKING:
    import torch

    from mlpipeline.finetune.config import BaseModelConfig


def _offline() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"


def resolve_base(cfg: BaseModelConfig) -> Path:
    """Local HF checkpoint directory of the base model (converting a GGUF once, cached)."""
    from mlpipeline.llm.engine import resolve_checkpoint

    _offline()
    return resolve_checkpoint(cfg.source, cfg.cache_dir)


def load_tokenizer(checkpoint: str | Path) -> Any:
    _offline()
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(checkpoint)
    except Exception as e:  # transformers raises OSError, ValueError, ... for an unusable directory
        raise ArtifactError(f"cannot load a tokenizer from {checkpoint}: {e}") from e


def load_causal_lm(checkpoint: str | Path, device: torch.device) -> Any:
    """The model in fp32 on ``device`` (mixed precision is applied by autocast, not by the weights)."""
    _offline()
    import torch
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32, attn_implementation="sdpa")
    except Exception as e:
        raise ArtifactError(f"cannot load a causal LM from {checkpoint}: {e}") from e
    return model.to(device)


def select_device(preference: Literal["auto", "cpu", "cuda"], threads: int | None = None) -> torch.device:
    """CUDA when asked for or when ``auto`` finds one, else CPU; sets torch's CPU thread count if given."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    if preference == "cuda" and not torch.cuda.is_available():
        raise ArtifactError("device 'cuda' requested but torch sees no CUDA device")
    if preference == "auto":
        preference = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(preference)


def autocast_dtype(device: torch.device, precision: Literal["auto", "bf16", "fp32"]) -> torch.dtype | None:
    """bf16 when asked for, or on ``auto`` when the CUDA device supports it; None means plain fp32."""
    import torch

    if precision == "fp32":
        return None
    if precision == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ArtifactError(f"precision 'bf16' requested but {torch.cuda.get_device_name(device)} has no bf16")
        return torch.bfloat16
    return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else None


def autocast(device: torch.device, dtype: torch.dtype | None) -> AbstractContextManager[Any]:
    import torch

    return torch.autocast(device_type=device.type, dtype=dtype) if dtype is not None else nullcontext()


def token_nll(logits: torch.Tensor, input_ids: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Summed next-token negative log-likelihood of ``input_ids`` ``[B, T]`` under ``logits`` ``[B, T, V]``
    (fp32), and the number of predictions it sums (``B * (T - 1)``)."""
    import torch.nn.functional as F

    shifted = logits[:, :-1, :].float()
    targets = input_ids[:, 1:]
    nll = F.cross_entropy(shifted.reshape(-1, shifted.size(-1)), targets.reshape(-1), reduction="sum")
    return nll, targets.numel()


def perplexity(
    model: Any,
    blocks: np.ndarray,
    batch_size: int,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
) -> dict[str, float]:
    """Held-out perplexity of ``model`` over every row of ``blocks`` (batched, no grad, eval mode)."""
    import torch

    if blocks.ndim != 2 or blocks.shape[0] == 0 or blocks.shape[1] < 2:
        raise ArtifactError(f"perplexity needs [blocks >= 1, tokens >= 2], got shape {blocks.shape}")
    was_training = model.training
    model.eval()
    total_nll = 0.0
    total_tokens = 0
    t0 = time.perf_counter()
    try:
        with torch.inference_mode():
            for start in range(0, len(blocks), batch_size):
                ids = torch.from_numpy(np.ascontiguousarray(blocks[start : start + batch_size])).long().to(device)
                with autocast(device, amp_dtype):
                    logits = model(input_ids=ids).logits
                nll, n = token_nll(logits, ids)
                total_nll += float(nll)
                total_tokens += n
    finally:
        model.train(was_training)
    mean_nll = total_nll / total_tokens
    return {
        "perplexity": math.exp(mean_nll),
        "mean_nll": mean_nll,
        "tokens": total_tokens,
        "blocks": int(blocks.shape[0]),
        "seconds": time.perf_counter() - t0,
    }
