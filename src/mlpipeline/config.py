"""Pipeline configuration: one frozen pydantic model per stage, the single source of defaults.

A use case is one YAML file (``configs/<name>.yaml``) that fills a :class:`PipelineConfig`.
Unknown or malformed fields raise :class:`~mlpipeline.errors.ConfigError` naming the field path,
e.g. ``train.torch.epochs: Input should be greater than 0``.

Each KFP component receives only its own section as a plain dict (``section.model_dump(mode="json")``)
and re-validates it with the same model, so a component run by hand gets the same checks and defaults.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mlpipeline.errors import ConfigError

#: The one project image: components (KFP base_image) and predictors run it. Override per cluster.
DEFAULT_IMAGE = "localhost/mlpipeline:0.1.0"


def project_image() -> str:
    """Image used by every component and manifest; ``MLPIPELINE_IMAGE`` overrides the default."""
    return os.environ.get("MLPIPELINE_IMAGE", DEFAULT_IMAGE)


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --------------------------------------------------------------------------- data / ingest
class DataConfig(_Section):
    """Where the data comes from and what the target is."""

    source: str = Field(description="shipped dataset name, CSV/Parquet path, or http(s) URL")
    target: str
    task: Literal["classification", "regression"] = "classification"
    positive_class: str | int | bool | None = Field(
        default=None, description="label treated as positive (binary classification); default: minority class"
    )
    time_column: str | None = Field(default=None, description="orders the split and date-part features")
    drop_columns: tuple[str, ...] = ()
    sample_rows: int | None = Field(default=None, gt=0, description="seeded row sample (tests, smoke runs)")
    seed: int = 42


# --------------------------------------------------------------------------- validate
class ColumnRule(_Section):
    dtype: Literal["int", "float", "str", "bool", "datetime"] | None = None
    nullable: bool = True
    min: float | None = None
    max: float | None = None
    allowed: tuple[str | int | float | bool, ...] | None = None
    unique: bool = False
    severity: Literal["hard", "soft"] = Field(default="hard", description="hard fails the run; soft only reports")


class ValidationConfig(_Section):
    """Hard rules fail the run (naming column and example rows); soft ones only go in the report."""

    columns: dict[str, ColumnRule] = Field(default_factory=dict)
    require_declared_columns: bool = True
    min_rows: int = Field(default=50, ge=1)
    max_missing_fraction: float = Field(default=0.5, ge=0, le=1, description="hard: above this a column fails")
    max_duplicate_fraction: float = Field(default=0.05, ge=0, le=1, description="soft")
    min_minority_fraction: float = Field(default=0.01, ge=0, le=0.5, description="soft (classification)")


# --------------------------------------------------------------------------- eda
class EdaConfig(_Section):
    max_plot_columns: int = Field(default=24, ge=1)
    sample_rows: int = Field(default=20_000, ge=100)


# --------------------------------------------------------------------------- preprocess
class OutlierConfig(_Section):
    method: Literal["none", "iqr_clip", "winsorize"] = "iqr_clip"
    iqr_factor: float = Field(default=1.5, gt=0)
    quantiles: tuple[float, float] = (0.01, 0.99)

    @model_validator(mode="after")
    def _check_quantiles(self) -> OutlierConfig:
        lo, hi = self.quantiles
        if not 0 <= lo < hi <= 1:
            raise ValueError("quantiles must satisfy 0 <= low < high <= 1")
        return self


class DenoiseConfig(_Section):
    """Rolling median over time-ordered numeric signals (e.g. sensors), per group when given."""

    columns: tuple[str, ...] = ()
    window: int = Field(default=5, ge=2)
    group_by: str | None = None
    order_by: str | None = None


class PreprocessConfig(_Section):
    numeric_imputer: Literal["median", "mean", "constant"] = "median"
    categorical_imputer: Literal["most_frequent", "constant"] = "most_frequent"
    add_missing_indicators: bool = True
    outliers: OutlierConfig = OutlierConfig()
    scaler: Literal["standard", "robust", "minmax", "none"] = "standard"
    encoder: Literal["onehot", "ordinal"] = "onehot"
    max_categories: int = Field(default=30, ge=2, description="rarer categories are grouped as infrequent")
    denoise: DenoiseConfig | None = None
    text_columns: tuple[str, ...] = Field(default=(), description="free-text columns: cleaned, then embedded")
    text_embedding: Literal["minilm", "tfidf"] = Field(
        default="minilm", description="minilm: all-MiniLM-L6-v2 sentence embeddings (384-d); tfidf: TF-IDF + SVD (fast)"
    )


# --------------------------------------------------------------------------- features
class DerivedFeature(_Section):
    name: str
    kind: Literal["ratio", "product", "difference", "log1p", "date_parts"]
    columns: tuple[str, ...] = Field(min_length=1)
    parts: tuple[Literal["year", "month", "day", "dayofweek", "hour", "dayofyear"], ...] = ()

    @model_validator(mode="after")
    def _check_arity(self) -> DerivedFeature:
        need = {"ratio": 2, "product": 2, "difference": 2, "log1p": 1, "date_parts": 1}[self.kind]
        if len(self.columns) != need:
            raise ValueError(f"kind {self.kind!r} takes {need} column(s), got {len(self.columns)}")
        if self.kind == "date_parts" and not self.parts:
            raise ValueError("date_parts needs at least one entry in parts")
        return self


class SelectionConfig(_Section):
    method: Literal["none", "mutual_info", "model"] = "mutual_info"
    k: int = Field(default=30, ge=1, description="top-k features kept (capped at what exists)")


class FeaturesConfig(_Section):
    derived: tuple[DerivedFeature, ...] = ()
    selection: SelectionConfig = SelectionConfig()


# --------------------------------------------------------------------------- split
class SplitConfig(_Section):
    test_size: float = Field(default=0.2, gt=0, lt=1)
    validation_size: float = Field(default=0.2, gt=0, lt=1)
    stratify: bool = True
    group_column: str | None = Field(
        default=None, description="keep all rows of a group (e.g. one machine or customer) in one split: no leakage"
    )
    seed: int = 42

    @model_validator(mode="after")
    def _check_sizes(self) -> SplitConfig:
        if self.test_size + self.validation_size >= 0.9:
            raise ValueError("test_size + validation_size must leave at least 10% for training")
        return self


# --------------------------------------------------------------------------- tune / train
Family = Literal["logistic_regression", "gradient_boosting", "random_forest", "torch_mlp", "ridge"]


class TuneConfig(_Section):
    families: tuple[Family, ...] = ("logistic_regression", "gradient_boosting")
    n_trials: int = Field(default=20, ge=1)
    timeout_s: float = Field(default=120, gt=0)
    metric: str | None = Field(default=None, description="validation metric to optimise; default by task")
    seed: int = 42


class TorchConfig(_Section):
    max_epochs: int = Field(default=40, ge=1)
    batch_size: int = Field(default=256, ge=1)
    patience: int = Field(default=5, ge=1, description="early stopping on validation loss")
    mixed_precision: bool = True


class AcceleratorConfig(_Section):
    type: str = Field(default="nvidia.com/gpu", description="KFP accelerator type (resource name)")
    limit: int = Field(default=1, ge=1)


class DistributedConfig(_Section):
    """Multi-node training on a cluster: the train step hands the torch MLP to a Kubeflow Trainer
    ``TrainJob`` (runtime ``torch-distributed``) or a Training Operator ``PyTorchJob`` and waits.

    Inputs and the trained model travel through ``pvc_name``, mounted at ``mount_path`` in the train
    step and in every job pod (see :mod:`mlpipeline.distributed.launcher`).
    """

    engine: Literal["trainjob", "pytorchjob"] = "trainjob"
    num_nodes: int = Field(default=2, ge=1)
    gpus_per_node: int = Field(default=1, ge=0, description="0: CPU nodes (gloo), else one process per GPU (nccl)")
    procs_per_node: int = Field(default=1, ge=1, description="processes per CPU node (gpus_per_node=0)")
    runtime: str = Field(default="torch-distributed", description="TrainJob runtimeRef (ClusterTrainingRuntime)")
    namespace: str = "mlpipeline"
    image: str | None = Field(default=None, description="training image; default: the project image")
    pvc_name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", description="RWX PVC shared by step and pods")
    mount_path: str = "/mnt/shared"
    cpu: str = "2"
    memory: str = "8Gi"
    service_account: str | None = None
    timeout_s: float = Field(default=6 * 3600, gt=0)
    poll_interval_s: float = Field(default=10, gt=0)


class TrainConfig(_Section):
    seed: int = 42
    torch: TorchConfig = TorchConfig()
    accelerator: AcceleratorConfig | None = None
    cpu_request: str = "1"
    memory_request: str = "2G"
    distributed: DistributedConfig | None = None


# --------------------------------------------------------------------------- evaluate / gate
class EvaluateConfig(_Section):
    threshold_strategy: Literal["f1", "youden", "fixed"] = "f1"
    fixed_threshold: float = Field(default=0.5, gt=0, lt=1)
    calibration_bins: int = Field(default=10, ge=2)


class GateConfig(_Section):
    min_metrics: dict[str, float] = Field(default_factory=dict, description="test metric >= value")
    max_metrics: dict[str, float] = Field(default_factory=dict, description="test metric <= value")
    compare_to_production: bool = True
    max_regression: float = Field(default=0.0, ge=0, description="allowed drop of the primary metric vs production")


# --------------------------------------------------------------------------- package / registry / deploy
class RegistryConfig(_Section):
    path: str = Field(default="registry", description="registry directory; relative paths resolve against the CWD")
    model_name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=45)
    pvc_name: str | None = Field(default=None, description="on a cluster: PVC holding the registry, mounted at path")


class DeployConfig(_Section):
    namespace: str = "mlpipeline"
    image: str | None = Field(default=None, description="predictor image; default: the project image")
    storage_uri: str | None = Field(
        default=None, description="storageUri base for the model; default pvc://<registry.pvc_name>/<model path>"
    )
    service_account: str = "mlpipeline-predictor"
    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(default=3, ge=1)
    scale_metric: Literal["concurrency", "rps", "cpu", "memory"] = "concurrency"
    scale_target: int = Field(default=8, ge=1)
    cpu: str = "1"
    memory: str = "1Gi"
    apply: bool = Field(default=False, description="apply with the kubernetes client when a kube context exists")
    output_dir: str = "runs/deploy"

    @model_validator(mode="after")
    def _check_replicas(self) -> DeployConfig:
        if self.max_replicas < self.min_replicas:
            raise ValueError("max_replicas must be >= min_replicas")
        return self


class _Document(_Section):
    """A whole config file: sections as plain JSON for KFP components, and a content hash."""

    def sections(self) -> dict[str, dict[str, Any]]:
        """Plain-JSON dict per section: what each KFP component receives (None = unset, omitted)."""
        return {k: v for k, v in self.model_dump(mode="json", exclude_none=True).items() if isinstance(v, dict)}

    def config_hash(self) -> str:
        return sha256_json(self.model_dump(mode="json"))


class PipelineConfig(_Document):
    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    description: str = ""
    data: DataConfig
    validation: ValidationConfig = ValidationConfig()
    eda: EdaConfig = EdaConfig()
    preprocess: PreprocessConfig = PreprocessConfig()
    features: FeaturesConfig = FeaturesConfig()
    split: SplitConfig = SplitConfig()
    tune: TuneConfig = TuneConfig()
    train: TrainConfig = TrainConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    gate: GateConfig = GateConfig()
    registry: RegistryConfig
    deploy: DeployConfig = DeployConfig()


S = TypeVar("S", bound=BaseModel)


def _format_validation_error(err: ValidationError, prefix: str = "") -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"] if p not in ("function-after",))
        where = f"{prefix}{loc}" if loc else (prefix.rstrip(".") or "<root>")
        msg = "unknown field" if e["type"] == "extra_forbidden" else e["msg"]
        lines.append(f"{where}: {msg}")
    return "; ".join(lines)


def parse_section(model: type[S], data: Any, name: str = "") -> S:
    """Validate a section dict into its model, raising ConfigError that names the field."""
    if isinstance(data, model):
        return data
    try:
        return model.model_validate(data or {})
    except ValidationError as e:
        raise ConfigError(f"invalid config: {_format_validation_error(e, f'{name}.' if name else '')}") from e


D = TypeVar("D", bound=BaseModel)


def load_config(path: str | os.PathLike[str]) -> PipelineConfig:
    """Read and validate a pipeline YAML config; every failure is a ConfigError naming the file and field."""
    return load_yaml_model(path, PipelineConfig)


def load_yaml_model(path: str | os.PathLike[str], model: type[D]) -> D:
    """Read a YAML file into ``model``; every failure is a ConfigError naming the file and field."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: top level must be a mapping, got {type(raw).__name__}")
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(f"{p}: {_format_validation_error(e)}") from e


def sha256_json(obj: Any) -> str:
    """Stable hash of a JSON-able object (sorted keys, no whitespace)."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()


