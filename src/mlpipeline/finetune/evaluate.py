"""Perplexity stage: a checkpoint's held-out perplexity on the prepared corpus.

Run twice in the pipeline with the same blocks: on the base model (before) and on the merged
fine-tuned model as packaged (after), so "after" measures exactly the weights that are served.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from mlpipeline.artifacts import atomic_write_json, verify_manifest
from mlpipeline.config import parse_section
from mlpipeline.finetune.config import BaseModelConfig, PerplexityConfig
from mlpipeline.finetune.corpus import load_corpus
from mlpipeline.finetune.modeling import (
    autocast_dtype,
    load_causal_lm,
    perplexity,
    resolve_base,
    select_device,
)

log = logging.getLogger(__name__)


def evaluate_perplexity(
    checkpoint: str | Path, corpus_dir: str | Path, eval_cfg: dict[str, Any] | PerplexityConfig, out_json: str | Path
) -> dict[str, Any]:
    """Held-out perplexity of the HF checkpoint at ``checkpoint``; written to ``out_json`` and returned."""
    ecfg = parse_section(PerplexityConfig, eval_cfg, "evaluate")
    blocks, summary = load_corpus(corpus_dir)
    device = select_device(ecfg.device, ecfg.threads)
    amp = autocast_dtype(device, ecfg.precision)
    model = load_causal_lm(checkpoint, device)
    result = perplexity(model, blocks["heldout"], ecfg.batch_size, device, amp)
    result.update(
        checkpoint=str(checkpoint),
        device=str(device),
        precision=str(amp).removeprefix("torch.") if amp is not None else "float32",
        heldout_works=summary["splits"]["heldout"]["works"],
        block_size=summary["block_size"],
    )
    log.info("held-out perplexity of %s: %.3f over %d tokens", checkpoint, result["perplexity"], result["tokens"])
    atomic_write_json(out_json, result)
    return result


def evaluate_base(
    model_cfg: dict[str, Any] | BaseModelConfig,
    corpus_dir: str | Path,
    eval_cfg: dict[str, Any] | PerplexityConfig,
    out_json: str | Path,
) -> dict[str, Any]:
    """Perplexity before fine-tuning: the base model named by the ``model`` section."""
    return evaluate_perplexity(resolve_base(parse_section(BaseModelConfig, model_cfg, "model")), corpus_dir, eval_cfg, out_json)


def evaluate_packaged(
    model_dir: str | Path, corpus_dir: str | Path, eval_cfg: dict[str, Any] | PerplexityConfig, out_json: str | Path
) -> dict[str, Any]:
    """Perplexity after fine-tuning: a merged model directory, checked against its manifest first."""
    verify_manifest(model_dir)
    return evaluate_perplexity(model_dir, corpus_dir, eval_cfg, out_json)
