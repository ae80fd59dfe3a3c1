"""LoRA stage: self-supervised next-token training of low-rank adapters on the train blocks.

Only the adapters train (peft ``LoraConfig`` on the Llama projections); the base weights stay frozen
in fp32 and CUDA steps run under bf16 autocast when the device supports it. One optimizer step is
``grad_accum_steps`` micro-batches of ``batch_size`` blocks; the loop stops at ``max_steps`` or when
``max_seconds`` is spent, whichever comes first. Seeded: adapter initialisation, dropout and the
block order come from ``train.seed``, so a CPU run repeats exactly.

Writes the adapter (peft ``save_pretrained``: ``adapter_config.json`` + ``adapter_model.safetensors``)
with a sha256 manifest, and separately the training record (``curve.json``, ``curve.png``, ``summary.json``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mlpipeline.artifacts import atomic_path, atomic_write_json, write_manifest
from mlpipeline.config import parse_section
from mlpipeline.errors import TrainingError
from mlpipeline.finetune.config import BaseModelConfig, FinetuneTrainConfig, LoraParams
from mlpipeline.finetune.corpus import load_corpus
from mlpipeline.finetune.modeling import (
    autocast,
    autocast_dtype,
    load_causal_lm,
    resolve_base,
    select_device,
    token_nll,
)

log = logging.getLogger(__name__)


def lr_factor(schedule: str, warmup_steps: int, max_steps: int) -> Callable[[int], float]:
    """Multiplier of the peak learning rate for optimizer step ``i`` (0-based): linear warmup, then
    constant, linear or cosine decay to 0 at ``max_steps``."""

    def factor(i: int) -> float:
        if i < warmup_steps:
            return (i + 1) / warmup_steps
        progress = (i - warmup_steps) / max(1, max_steps - warmup_steps)
        if schedule == "constant":
            return 1.0
        if schedule == "linear":
            return max(0.0, 1.0 - progress)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def batch_order(n_blocks: int, batch_size: int, seed: int) -> Iterator[np.ndarray]:
    """Endless seeded shuffles of ``range(n_blocks)`` in batches (the last batch of an epoch may be short)."""
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(n_blocks)
        for start in range(0, n_blocks, batch_size):
            yield order[start : start + batch_size]


def add_lora(model: Any, lcfg: LoraParams) -> Any:
    """Wrap ``model`` with fresh LoRA adapters on ``lcfg.target_modules`` (base weights frozen)."""
    from peft import LoraConfig, get_peft_model

    peft_cfg = LoraConfig(
        r=lcfg.r,
        lora_alpha=lcfg.alpha,
        lora_dropout=lcfg.dropout,
        target_modules=list(lcfg.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, peft_cfg)


def train_adapter(
    model: Any, blocks: np.ndarray, tcfg: FinetuneTrainConfig, device: Any, amp_dtype: Any = None
) -> tuple[list[dict[str, float]], dict[str, Any]]:
    """Run the optimisation loop on a peft-wrapped ``model``; returns (curve, summary).

    ``curve`` holds one row per optimizer step: mean training loss of its micro-batches, learning
    rate, gradient norm (before clipping) and elapsed seconds.
    """
    import torch

    if len(blocks) == 0:
        raise TrainingError("no training blocks")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise TrainingError("the model has no trainable parameters (no LoRA target module matched?)")
    optimizer = torch.optim.AdamW(params, lr=tcfg.learning_rate, weight_decay=tcfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(tcfg.schedule, tcfg.warmup_steps, tcfg.max_steps))
    batches = batch_order(len(blocks), tcfg.batch_size, tcfg.seed)
    data = torch.from_numpy(np.ascontiguousarray(blocks)).long()

    model.train()
    curve: list[dict[str, float]] = []
    tokens = 0
    stopped_by = "max_steps"
    t0 = time.perf_counter()
    for step in range(tcfg.max_steps):
        lr = scheduler.get_last_lr()[0]
        loss_sum = 0.0
        for _ in range(tcfg.grad_accum_steps):
            ids = data[next(batches)].to(device, non_blocking=True)
            with autocast(device, amp_dtype):
                logits = model(input_ids=ids).logits
            nll, n = token_nll(logits, ids)
            loss = nll / n
            (loss / tcfg.grad_accum_steps).backward()
            loss_sum += float(loss.detach())
            tokens += ids.numel()
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, tcfg.max_grad_norm))
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        elapsed = time.perf_counter() - t0
        row = {"step": step + 1, "loss": loss_sum / tcfg.grad_accum_steps, "lr": lr, "grad_norm": grad_norm, "seconds": elapsed}
        if not math.isfinite(row["loss"]):
            raise TrainingError(f"training loss became {row['loss']} at step {step + 1}; lower train.learning_rate")
        curve.append(row)
        if (step + 1) % tcfg.log_every == 0 or step == 0:
            log.info("step %d/%d loss %.4f lr %.2e (%.1f s)", step + 1, tcfg.max_steps, row["loss"], lr, elapsed)
        if tcfg.max_seconds is not None and elapsed >= tcfg.max_seconds and step + 1 < tcfg.max_steps:
            stopped_by = "max_seconds"
            break
    seconds = time.perf_counter() - t0
    trainable = sum(p.numel() for p in params)
    summary = {
        "steps": len(curve),
        "stopped_by": stopped_by,
        "tokens": tokens,
        "seconds": seconds,
        "tokens_per_second": tokens / seconds if seconds > 0 else None,
        "first_loss": curve[0]["loss"],
        "final_loss": curve[-1]["loss"],
        "trainable_parameters": trainable,
        "total_parameters": sum(p.numel() for p in model.parameters()),
        "train_blocks": int(len(blocks)),
        "epochs": tokens / data.numel(),
    }
    return curve, summary


def plot_curve(curve: list[dict[str, float]], path: str | Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([r["step"] for r in curve], [r["loss"] for r in curve], label="train loss (per step)")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("next-token NLL")
    ax.set_title(title)
    ax.legend()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)


def train_lora(
    model_cfg: dict[str, Any] | BaseModelConfig,
    corpus_dir: str | Path,
    lora_cfg: dict[str, Any] | LoraParams,
    train_cfg: dict[str, Any] | FinetuneTrainConfig,
    adapter_dir: str | Path,
    record_dir: str | Path,
) -> dict[str, Any]:
    """Train LoRA adapters on the corpus's train blocks; write the adapter and the training record."""
    import torch

    mcfg = parse_section(BaseModelConfig, model_cfg, "model")
    lcfg = parse_section(LoraParams, lora_cfg, "lora")
    tcfg = parse_section(FinetuneTrainConfig, train_cfg, "train")
    blocks, corpus = load_corpus(corpus_dir)
    device = select_device(tcfg.device, tcfg.threads)
    amp = autocast_dtype(device, tcfg.precision)
    torch.manual_seed(tcfg.seed)  # LoRA A init and dropout masks
    if device.type == "cuda":
        torch.cuda.manual_seed_all(tcfg.seed)
    base = resolve_base(mcfg)
    model = add_lora(load_causal_lm(base, device), lcfg)
    log.info("LoRA r=%d on %s: %d trainable parameters", lcfg.r, ",".join(lcfg.target_modules),
             sum(p.numel() for p in model.parameters() if p.requires_grad))
    curve, summary = train_adapter(model, blocks["train"], tcfg, device, amp)
    summary.update(
        device=str(device),
        precision=str(amp).removeprefix("torch.") if amp is not None else "float32",
        base_checkpoint=str(base),
        block_size=corpus["block_size"],
        train_works=corpus["splits"]["train"]["works"],
    )

    adapter = Path(adapter_dir)
    adapter.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(adapter, safe_serialization=True)
    summary["adapter_manifest_sha256"] = write_manifest(adapter)

    record = Path(record_dir)
    record.mkdir(parents=True, exist_ok=True)
    atomic_write_json(record / "curve.json", curve)
    atomic_write_json(record / "summary.json", summary)
    plot_curve(curve, record / "curve.png", f"LoRA r={lcfg.r}: {summary['steps']} steps, {summary['tokens']:,} tokens")
    log.info("trained %d steps in %.1f s: loss %.3f -> %.3f", summary["steps"], summary["seconds"],
             summary["first_loss"], summary["final_loss"])
    return summary
