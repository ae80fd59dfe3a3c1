"""Fine-tuning configuration: one frozen pydantic model per stage, filled from ``configs/llm/<name>.yaml``.

Same conventions as :mod:`mlpipeline.config`: unknown or malformed fields raise
:class:`~mlpipeline.errors.ConfigError` naming the field path (``lora.r: Input should be greater
than 0``), and each KFP component receives only its own section as a plain dict and re-validates it.
"""

from __future__ import annotations

import os
from typing import Literal

from pydantic import Field, field_validator, model_validator

from mlpipeline.config import AcceleratorConfig, _Document, _Section, load_yaml_model

#: The Llama-architecture projections of SmolLM2 (attention, then MLP).
ATTENTION_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP_MODULES = ("gate_proj", "up_proj", "down_proj")


class BaseModelConfig(_Section):
    """The model being fine-tuned, resolved by :func:`mlpipeline.llm.engine.resolve_checkpoint`."""

    source: str = Field(
        default="smollm2", description="'smollm2' (the packaged GGUF), a .gguf file or a local HF model directory"
    )
    cache_dir: str | None = Field(
        default=None, description="where a GGUF is converted once to an HF checkpoint; default ~/.cache/mlpipeline"
    )
    cache_pvc: str | None = Field(
        default=None,
        description="on a cluster: PVC mounted at cache_dir in every model step, so the GGUF is converted once per "
        "cluster rather than once per pod",
    )

    @model_validator(mode="after")
    def _pvc_needs_a_mount_path(self) -> BaseModelConfig:
        if self.cache_pvc and not (self.cache_dir and self.cache_dir.startswith("/")):
            raise ValueError("cache_pvc needs cache_dir set to an absolute path (the mount path)")
        return self


class CorpusConfig(_Section):
    """Which texts, how they are split (whole works held out) and cut into token blocks."""

    dataset: Literal["shakespeare"] = "shakespeare"
    works: tuple[str, ...] | None = Field(
        default=None, description="work names (file stems without '_gut', e.g. 'hamlet'); default: all 42"
    )
    heldout_works: int = Field(default=4, ge=1, description="whole works held out for perplexity (seeded choice)")
    block_size: int = Field(default=512, ge=8, le=8192, description="tokens per training / evaluation block")
    max_train_blocks: int | None = Field(default=None, ge=1, description="seeded subset of the train blocks")
    max_eval_blocks: int | None = Field(default=None, ge=1, description="seeded subset of the held-out blocks")
    seed: int = 42

    @field_validator("works")
    @classmethod
    def _unique_works(cls, v: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if v is not None and len(set(v)) != len(v):
            raise ValueError("works must not repeat a name")
        return v

    @model_validator(mode="after")
    def _leaves_training_works(self) -> CorpusConfig:
        if self.works is not None and self.heldout_works >= len(self.works):
            raise ValueError(f"heldout_works ({self.heldout_works}) must leave at least one of the {len(self.works)} works for training")
        return self


class LoraParams(_Section):
    r: int = Field(default=16, ge=1, le=512, description="adapter rank")
    alpha: float = Field(default=32, gt=0, description="scaling numerator: updates are scaled by alpha / r")
    dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: tuple[str, ...] = Field(default=ATTENTION_MODULES, min_length=1)

    @field_validator("target_modules")
    @classmethod
    def _known_modules(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(v) - set(ATTENTION_MODULES) - set(MLP_MODULES))
        if unknown:
            raise ValueError(f"unknown module(s) {unknown}; Llama projections are {ATTENTION_MODULES + MLP_MODULES}")
        return v


class FinetuneTrainConfig(_Section):
    """The LoRA optimisation loop; it stops at ``max_steps`` optimizer steps or ``max_seconds``, first reached."""

    seed: int = 42
    max_steps: int = Field(default=1000, ge=1, description="optimizer steps (each = grad_accum_steps micro-batches)")
    max_seconds: float | None = Field(default=None, gt=0, description="wall-clock budget for the loop")
    batch_size: int = Field(default=8, ge=1, description="blocks per micro-batch")
    grad_accum_steps: int = Field(default=1, ge=1)
    learning_rate: float = Field(default=2e-4, gt=0, lt=1)
    warmup_steps: int = Field(default=0, ge=0)
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    weight_decay: float = Field(default=0.0, ge=0)
    max_grad_norm: float = Field(default=1.0, gt=0, description="gradient clipping (L2 norm of the adapter gradients)")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "bf16", "fp32"] = Field(
        default="auto", description="auto: bf16 autocast on CUDA (when supported), fp32 on CPU"
    )
    log_every: int = Field(default=10, ge=1, description="steps between log lines (every step is in the curve)")
    threads: int | None = Field(default=None, ge=1, description="torch CPU threads; default: torch's choice")
    accelerator: AcceleratorConfig | None = Field(default=None, description="KFP accelerator request for the train step")
    cpu_request: str = "2"
    memory_request: str = "8G"

    @model_validator(mode="after")
    def _warmup_fits(self) -> FinetuneTrainConfig:
        if self.warmup_steps >= self.max_steps:
            raise ValueError(f"warmup_steps ({self.warmup_steps}) must be below max_steps ({self.max_steps})")
        return self


class PerplexityConfig(_Section):
    batch_size: int = Field(default=8, ge=1, description="blocks per forward pass")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    threads: int | None = Field(default=None, ge=1)


class PackageConfig(_Section):
    model_name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        default="bfloat16", description="dtype of the merged weights written for serving"
    )
    require_improvement: bool = Field(
        default=True, description="refuse to package a model whose held-out perplexity did not go down"
    )


class FinetuneConfig(_Document):
    """One fine-tuning use case. Every optional field defaults to None, because :meth:`sections` omits
    None values (KFP struct parameters) and a component must re-validate to the same section."""

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    description: str = ""
    model: BaseModelConfig = BaseModelConfig()
    corpus: CorpusConfig = CorpusConfig()
    lora: LoraParams = LoraParams()
    train: FinetuneTrainConfig = FinetuneTrainConfig()
    evaluate: PerplexityConfig = PerplexityConfig()
    package: PackageConfig



def load_finetune_config(path: str | os.PathLike[str]) -> FinetuneConfig:
    """Read and validate a fine-tuning YAML; every failure is a ConfigError naming the file and field."""
    return load_yaml_model(path, FinetuneConfig)
