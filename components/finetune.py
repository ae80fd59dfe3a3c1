"""Thin KFP components of the LoRA fine-tuning pipeline; each calls a stage in ``mlpipeline.finetune``."""

from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Model, Output
from mlpipeline.components._base import component


@component()
def prepare_corpus_op(base_model: dict, corpus: dict, blocks: Output[Dataset]) -> int:
    """Clean the texts, hold out whole works, tokenise into fixed blocks. Returns the train block count."""
    from mlpipeline.finetune.corpus import prepare_corpus

    summary = prepare_corpus(base_model, corpus, blocks.path)
    for split in ("train", "heldout"):
        blocks.metadata[f"{split}_blocks"] = summary["splits"][split]["blocks"]
        blocks.metadata[f"{split}_works"] = ",".join(summary["splits"][split]["works"])
    blocks.metadata["block_size"] = summary["block_size"]
    blocks.metadata["manifest_sha256"] = summary["manifest_sha256"]
    return summary["splits"]["train"]["blocks"]


@component()
def base_perplexity_op(
    base_model: dict, blocks: Input[Dataset], evaluate: dict, result: Output[Artifact], metrics: Output[Metrics]
) -> float:
    """Held-out perplexity of the base model (before fine-tuning)."""
    from mlpipeline.finetune.evaluate import evaluate_base

    out = evaluate_base(base_model, blocks.path, evaluate, result.path)
    metrics.log_metric("heldout_perplexity", round(out["perplexity"], 6))
    metrics.log_metric("heldout_mean_nll", round(out["mean_nll"], 6))
    return out["perplexity"]


@component()
def lora_train_op(
    base_model: dict,
    blocks: Input[Dataset],
    lora: dict,
    train: dict,
    adapter: Output[Model],
    training: Output[Artifact],
    curve: Output[HTML],
) -> float:
    """LoRA next-token training (GPU when the task got one). Returns the last step's training loss."""
    import base64
    from pathlib import Path

    from mlpipeline.finetune.train import train_lora

    summary = train_lora(base_model, blocks.path, lora, train, adapter.path, training.path)
    png = base64.b64encode((Path(training.path) / "curve.png").read_bytes()).decode()
    Path(curve.path).write_text(f'<html><body><img alt="training curve" src="data:image/png;base64,{png}"></body></html>\n')
    adapter.metadata.update(
        {k: summary[k] for k in ("steps", "stopped_by", "final_loss", "device", "precision", "adapter_manifest_sha256")}
    )
    return summary["final_loss"]


@component()
def merge_lora_op(base_model: dict, adapter: Input[Model], package: dict, merged: Output[Model]) -> str:
    """Fold the adapter into the base weights (``merge_and_unload``). Returns the directory's manifest sha256."""
    from mlpipeline.finetune.package import merge_lora

    out = merge_lora(base_model, adapter.path, package, merged.path)
    merged.metadata.update(out)
    return out["manifest_sha256"]


@component()
def finetuned_perplexity_op(
    merged: Input[Model], blocks: Input[Dataset], evaluate: dict, result: Output[Artifact], metrics: Output[Metrics]
) -> float:
    """Held-out perplexity of the merged model, i.e. of exactly the weights that are packaged."""
    from mlpipeline.finetune.evaluate import evaluate_packaged

    out = evaluate_packaged(merged.path, blocks.path, evaluate, result.path)
    metrics.log_metric("heldout_perplexity", round(out["perplexity"], 6))
    metrics.log_metric("heldout_mean_nll", round(out["mean_nll"], 6))
    return out["perplexity"]


@component()
def package_llm_op(
    merged: Input[Model],
    before: Input[Artifact],
    after: Input[Artifact],
    training: Input[Artifact],
    blocks: Input[Dataset],
    name: str,
    description: str,
    base_model: dict,
    corpus: dict,
    lora: dict,
    train: dict,
    evaluate: dict,
    package: dict,
    packaged: Output[Model],
) -> str:
    """Servable model dir (merged weights, tokenizer, model card, lineage, sha256 manifest).

    Refuses (fails the run) when ``package.require_improvement`` and perplexity did not go down.
    Returns the manifest sha256 (the content address of the packaged model).
    """
    from mlpipeline.finetune.package import package_model

    config = {
        "name": name, "description": description, "model": base_model, "corpus": corpus, "lora": lora,
        "train": train, "evaluate": evaluate, "package": package,
    }
    out = package_model(merged.path, before.path, after.path, training.path, blocks.path, config, packaged.path)
    packaged.metadata.update(out)
    return out["manifest_sha256"]
