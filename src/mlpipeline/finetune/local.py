"""Run the fine-tuning pipeline on this machine with ``kfp.local`` (each step a component in its own process)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from mlpipeline.artifacts import MANIFEST, read_json, sha256_file
from mlpipeline.errors import MLPipelineError
from mlpipeline.finetune.config import FinetuneConfig, load_finetune_config
from mlpipeline.llm.engine import PACKAGED_MODEL
from mlpipeline.pipelines.local import run_pipeline

log = logging.getLogger(__name__)

#: (task directory, output name) of the artifacts a local run reports, as kfp.local lays them out.
OUTPUTS = {
    "corpus": ("prepare-corpus-op", "blocks"),
    "perplexity_before": ("base-perplexity-op", "result"),
    "adapter": ("lora-train-op", "adapter"),
    "training": ("lora-train-op", "training"),
    "merged_model": ("merge-lora-op", "merged"),
    "perplexity_after": ("finetuned-perplexity-op", "result"),
    "packaged_model": ("package-llm-op", "packaged"),
}


def local_config(cfg: FinetuneConfig) -> FinetuneConfig:
    """Paths in the config made absolute: kfp.local runs each task in another working directory."""
    update: dict[str, Any] = {}
    if cfg.model.cache_dir is not None:
        update["cache_dir"] = str(Path(cfg.model.cache_dir).expanduser().resolve())
    if cfg.model.source != PACKAGED_MODEL and Path(cfg.model.source).expanduser().exists():
        update["source"] = str(Path(cfg.model.source).expanduser().resolve())
    if not update:
        return cfg
    return cfg.model_copy(update={"model": cfg.model.model_copy(update=update)})


def run_finetune(config_path: str, pipeline_root: str) -> dict[str, Any]:
    """Run the whole fine-tuning pipeline for ``config_path`` locally, artifacts under ``pipeline_root``.

    Returns ``{"name", "run_dir", "seconds", "perplexity_before", "perplexity_after", "improved",
    "manifest_sha256", "packaged_model", "training", "paths"}``: perplexities are floats, ``training``
    is the train step's summary (steps, tokens, seconds, losses, device), ``paths`` maps each artifact
    in :data:`OUTPUTS` to its directory or file. Raises ``MLPipelineError`` (with the run directory)
    when a step fails, including a packaging refusal because perplexity did not go down.
    """
    import kfp.local

    from mlpipeline.pipelines.finetune import build_finetune_pipeline

    cfg = local_config(load_finetune_config(config_path))
    root = Path(pipeline_root).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    kfp.local.init(runner=kfp.local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True)
    pipeline = build_finetune_pipeline(cfg)
    log.info("%s: running %s locally (pipeline_root %s)", cfg.name, pipeline.name, root)
    args = {**cfg.sections(), "name": cfg.name, "description": cfg.description}
    run_dir, seconds = run_pipeline(pipeline, args, root, "fine-tuning pipeline")
    paths = {key: run_dir / task / name for key, (task, name) in OUTPUTS.items()}
    missing = sorted(k for k, p in paths.items() if not p.exists())
    if missing:
        raise MLPipelineError(f"run {run_dir} finished without {missing}")
    lineage = read_json(paths["packaged_model"] / "finetune.json")
    ppl = lineage["perplexity"]
    return {
        "name": cfg.name,
        "run_dir": str(run_dir),
        "seconds": seconds,
        "perplexity_before": ppl["before"]["perplexity"],
        "perplexity_after": ppl["after"]["perplexity"],
        "improved": ppl["after"]["perplexity"] < ppl["before"]["perplexity"],
        "manifest_sha256": sha256_file(paths["packaged_model"] / MANIFEST),
        "packaged_model": str(paths["packaged_model"]),
        "training": lineage["training"],
        "paths": {k: str(p) for k, p in paths.items()},
    }
