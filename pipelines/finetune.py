"""The LoRA fine-tuning pipeline: prepare corpus → base perplexity ∥ LoRA train → merge → perplexity → package.

``build_finetune_pipeline(cfg)`` returns a ``@dsl.pipeline`` whose parameters are the config sections
(the config's values as defaults, so a run can override any section without recompiling); static
settings come from the config: ``train.accelerator`` puts a GPU request and a toleration of the GPU
taint on the train step and on both perplexity steps (a forward pass over the held-out works is GPU
work too), ``model.cache_pvc`` mounts a shared checkpoint cache in every step that reads the base
model. The base perplexity and the training run side by side; "after" is measured on the merged
weights exactly as packaged.

``python -m mlpipeline.pipelines.finetune`` rewrites the golden files ``pipelines/compiled/llm/*.yaml``
from ``configs/llm/*.yaml``.
"""

# no `from __future__ import annotations`: KFP reads the pipeline function's annotations as types
import sys
from pathlib import Path
from typing import Any

from kfp import dsl
from mlpipeline.components.finetune import (
    base_perplexity_op,
    finetuned_perplexity_op,
    lora_train_op,
    merge_lora_op,
    package_llm_op,
    prepare_corpus_op,
)
from mlpipeline.pipelines.tabular import set_resources

from mlpipeline.finetune.config import FinetuneConfig, load_finetune_config

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "configs" / "llm"
COMPILED = REPO / "pipelines" / "compiled" / "llm"

#: (cpu, memory) requests of the steps that load the model without training it.
MODEL_STEP = ("2", "4G")
LIGHT_STEP = ("1", "2G")


def build_finetune_pipeline(cfg: FinetuneConfig) -> Any:
    s = cfg.sections()
    tcfg = cfg.train
    acc = tcfg.accelerator
    mcfg = cfg.model

    def model_step(task: Any) -> Any:
        """A step that reads the base checkpoint: mount the shared conversion cache when there is one."""
        if mcfg.cache_pvc:
            from kfp import kubernetes

            kubernetes.mount_pvc(task, pvc_name=mcfg.cache_pvc, mount_path=mcfg.cache_dir)
        return task

    @dsl.pipeline(name=f"{cfg.name}-finetune", description=cfg.description or f"LoRA fine-tuning pipeline for {cfg.name}")
    def finetune_pipeline(
        name: str = cfg.name,
        description: str = cfg.description,
        model: dict = s["model"],
        corpus: dict = s["corpus"],
        lora: dict = s["lora"],
        train: dict = s["train"],
        evaluate: dict = s["evaluate"],
        package: dict = s["package"],
    ):
        corpus_t = model_step(set_resources(prepare_corpus_op(base_model=model, corpus=corpus), *MODEL_STEP))
        corpus_t.set_display_name("prepare corpus")
        blocks = corpus_t.outputs["blocks"]

        before_t = model_step(set_resources(base_perplexity_op(base_model=model, blocks=blocks, evaluate=evaluate), *MODEL_STEP))
        before_t.set_display_name("perplexity (base)")
        if acc is not None:  # a forward pass over the held-out works is GPU work too
            before_t.set_accelerator_type(acc.type).set_accelerator_limit(acc.limit)

        train_t = model_step(
            set_resources(
                lora_train_op(base_model=model, blocks=blocks, lora=lora, train=train), tcfg.cpu_request, tcfg.memory_request
            )
        )
        train_t.set_display_name("LoRA train").set_caching_options(False)
        if acc is not None:
            train_t.set_accelerator_type(acc.type).set_accelerator_limit(acc.limit)

        merge_t = model_step(
            set_resources(merge_lora_op(base_model=model, adapter=train_t.outputs["adapter"], package=package), *MODEL_STEP)
        )
        merge_t.set_display_name("merge adapter")

        after_t = set_resources(
            finetuned_perplexity_op(merged=merge_t.outputs["merged"], blocks=blocks, evaluate=evaluate), *MODEL_STEP
        )
        after_t.set_display_name("perplexity (fine-tuned)")
        if acc is not None:
            after_t.set_accelerator_type(acc.type).set_accelerator_limit(acc.limit)

        pkg_t = package_llm_op(
            merged=merge_t.outputs["merged"],
            before=before_t.outputs["result"],
            after=after_t.outputs["result"],
            training=train_t.outputs["training"],
            blocks=blocks,
            name=name,
            description=description,
            base_model=model,
            corpus=corpus,
            lora=lora,
            train=train,
            evaluate=evaluate,
            package=package,
        )
        set_resources(pkg_t, *LIGHT_STEP).set_display_name("package for serving").set_caching_options(False)

        if acc is not None:
            from kfp import kubernetes

            for task in (before_t, train_t, after_t):
                kubernetes.add_toleration(task, key=acc.type, operator="Exists", effect="NoSchedule")

    return finetune_pipeline


def compile_finetune(cfg: FinetuneConfig, out: str | Path) -> Path:
    """Compile to KFP IR YAML with stable bytes (same config → same file)."""
    from mlpipeline.pipelines.compile import compile_pipeline

    return compile_pipeline(build_finetune_pipeline(cfg), out)


def compile_all(configs_dir: Path = CONFIGS, out_dir: Path = COMPILED) -> list[Path]:
    return [compile_finetune(load_finetune_config(p), out_dir / f"{p.stem}.yaml") for p in sorted(configs_dir.glob("*.yaml"))]


if __name__ == "__main__":
    for p in compile_all():
        print(p.relative_to(REPO), file=sys.stdout)
