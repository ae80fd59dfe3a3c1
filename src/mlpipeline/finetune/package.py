"""Merge and package stages: fold the LoRA adapter into the base weights, then ship a servable model dir.

:func:`merge_lora` writes a plain HF model directory (``model.safetensors``, ``config.json``,
``generation_config.json``, tokenizer files incl. the chat template) in ``package.dtype``: any
transformers loader, and the project's LLM server (``--llm-model-dir <dir>``), reads it with no peft.

:func:`package_model` copies that directory, adds a model card (``README.md``) with the held-out
perplexity before/after and ``finetune.json`` (lineage: base checkpoint, corpus split, config hash,
training summary), and seals it with a sha256 ``MANIFEST.json``. With ``package.require_improvement``
a model whose held-out perplexity did not go down is refused rather than packaged.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from mlpipeline.artifacts import (
    MANIFEST,
    atomic_write_json,
    atomic_write_text,
    read_json,
    sha256_file,
    verify_manifest,
    write_manifest,
)
from mlpipeline.config import parse_section
from mlpipeline.errors import ArtifactError, TrainingError
from mlpipeline.finetune.config import BaseModelConfig, FinetuneConfig, PackageConfig
from mlpipeline.finetune.modeling import load_causal_lm, load_tokenizer, resolve_base

log = logging.getLogger(__name__)

CARD = "README.md"
LINEAGE = "finetune.json"


def merge_lora(
    model_cfg: dict[str, Any] | BaseModelConfig,
    adapter_dir: str | Path,
    package_cfg: dict[str, Any] | PackageConfig,
    out_dir: str | Path,
) -> dict[str, Any]:
    """Base + adapter → ``merge_and_unload()`` → HF model directory in ``package.dtype``, with a manifest."""
    import torch
    from peft import PeftModel

    mcfg = parse_section(BaseModelConfig, model_cfg, "model")
    pcfg = parse_section(PackageConfig, package_cfg, "package")
    verify_manifest(adapter_dir)
    base = resolve_base(mcfg)
    model = load_causal_lm(base, torch.device("cpu"))
    try:
        merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    except Exception as e:  # peft raises ValueError / KeyError / OSError for a mismatched adapter
        raise ArtifactError(f"cannot apply the adapter in {adapter_dir} to {base}: {e}") from e
    merged = merged.to(getattr(torch, pcfg.dtype))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out, safe_serialization=True)
    load_tokenizer(base).save_pretrained(out)
    _world_readable(out)
    digest = write_manifest(out)
    n_params = sum(p.numel() for p in merged.parameters())
    log.info("merged adapter into %s (%s, %d parameters)", out, pcfg.dtype, n_params)
    return {"dtype": pcfg.dtype, "parameters": n_params, "base_checkpoint": str(base), "manifest_sha256": digest}


def _world_readable(directory: Path) -> None:
    """0644 for every file: safetensors writes 0600, and a model is read by other uids (KServe, containers)."""
    for p in directory.iterdir():
        if p.is_file():
            p.chmod(0o644)


def _works(n: int) -> str:
    return f"{n} whole work{'s' if n != 1 else ''}"


def _fmt(x: float) -> str:
    return f"{x:.3f}"


def model_card(cfg: FinetuneConfig, before: dict[str, Any], after: dict[str, Any], training: dict[str, Any],
               corpus: dict[str, Any]) -> str:
    held = corpus["splits"]["heldout"]
    trained = corpus["splits"]["train"]
    change = (after["perplexity"] - before["perplexity"]) / before["perplexity"]
    lora = cfg.lora
    lines = [
        f"# {cfg.package.model_name}",
        "",
        cfg.description or f"{cfg.model.source} fine-tuned with LoRA on the {corpus['dataset']} corpus.",
        "",
        "Self-supervised (next-token) LoRA fine-tuning; the adapter is merged into the base weights, so this",
        "directory is a plain Hugging Face causal-LM checkpoint (no peft needed to load it).",
        "",
        "## Held-out perplexity",
        "",
        f"Measured on {held['blocks']} blocks of {corpus['block_size']} tokens ({after['tokens']:,} predicted tokens) "
        f"from works never trained on: {', '.join(held['works'])}.",
        "",
        "| model | perplexity | mean NLL (nats/token) |",
        "|---|---|---|",
        f"| base ({cfg.model.source}) | {_fmt(before['perplexity'])} | {before['mean_nll']:.4f} |",
        f"| fine-tuned (this directory, {cfg.package.dtype}) | {_fmt(after['perplexity'])} | {after['mean_nll']:.4f} |",
        "",
        f"Change: {change:+.1%}.",
        "",
        "## Training",
        "",
        f"- Base checkpoint: `{cfg.model.source}`",
        f"- Corpus: {len(trained['works'])} works, {trained['blocks']} blocks of {corpus['block_size']} tokens "
        f"(of {trained['blocks_available']} available); held out: {_works(len(held['works']))}",
        f"- LoRA: r={lora.r}, alpha={lora.alpha:g}, dropout={lora.dropout:g}, modules={', '.join(lora.target_modules)}; "
        f"{training['trainable_parameters']:,} trainable of {training['total_parameters']:,} parameters",
        f"- Optimisation: AdamW lr={cfg.train.learning_rate:g} ({cfg.train.schedule}, {cfg.train.warmup_steps} warmup steps), "
        f"batch {cfg.train.batch_size} x {cfg.train.grad_accum_steps} accumulation, "
        f"{training['steps']} steps (stopped by {training['stopped_by']}), {training['tokens']:,} tokens, "
        f"{training['epochs']:.2f} epochs",
        f"- Train loss: {training['first_loss']:.3f} (first step) -> {training['final_loss']:.3f} (last step)",
        f"- Device: {training['device']} ({training['precision']}), {training['seconds']:.1f} s",
        f"- Seeds: corpus {cfg.corpus.seed}, training {cfg.train.seed}; config sha256 `{cfg.config_hash()[:16]}`",
        "",
        "## Files",
        "",
        f"`{MANIFEST}` records the sha256 of every file; `{LINEAGE}` holds the full config, corpus split and",
        "training summary.",
        "",
    ]
    return "\n".join(lines)


def package_model(
    merged_dir: str | Path,
    before_json: str | Path,
    after_json: str | Path,
    training_dir: str | Path,
    corpus_dir: str | Path,
    config: dict[str, Any] | FinetuneConfig,
    out_dir: str | Path,
) -> dict[str, Any]:
    """Servable directory: the merged model + model card + lineage + manifest. Returns the summary."""
    cfg = parse_section(FinetuneConfig, config)
    verify_manifest(merged_dir)
    before, after = read_json(before_json), read_json(after_json)
    training = read_json(Path(training_dir) / "summary.json")
    corpus = read_json(Path(corpus_dir) / "corpus.json")
    if after["tokens"] != before["tokens"]:
        raise ArtifactError(f"before/after perplexities cover different data ({before['tokens']} vs {after['tokens']} tokens)")
    improved = after["perplexity"] < before["perplexity"]
    if cfg.package.require_improvement and not improved:
        raise TrainingError(
            f"held-out perplexity did not go down ({before['perplexity']:.3f} -> {after['perplexity']:.3f}); "
            "not packaging (set package.require_improvement: false to package anyway)"
        )

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for src in sorted(Path(merged_dir).iterdir()):
        if src.is_file() and src.name != MANIFEST:
            shutil.copyfile(src, out / src.name)
    _world_readable(out)
    atomic_write_text(out / CARD, model_card(cfg, before, after, training, corpus))
    lineage = {
        "model_name": cfg.package.model_name,
        "config": cfg.model_dump(mode="json"),
        "config_sha256": cfg.config_hash(),
        "base_checkpoint": training["base_checkpoint"],
        "corpus": corpus,
        "training": training,
        "perplexity": {"before": before, "after": after},
        "merged_manifest_sha256": sha256_file(Path(merged_dir) / MANIFEST),
    }
    atomic_write_json(out / LINEAGE, lineage)
    digest = write_manifest(out)
    log.info("packaged %s: perplexity %.3f -> %.3f (manifest %s)", out, before["perplexity"], after["perplexity"], digest[:12])
    return {
        "model_name": cfg.package.model_name,
        "manifest_sha256": digest,
        "perplexity_before": before["perplexity"],
        "perplexity_after": after["perplexity"],
        "improved": improved,
    }
