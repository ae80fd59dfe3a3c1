from kfp.dsl import Artifact, Dataset, Input, Model, Output
from mlpipeline.components._base import component


@component()
def train_op(
    train: Input[Dataset], transform: Input[Model], best_params: Input[Artifact], data: dict, train_config: dict, model: Output[Model]
) -> str:
    """Fit the tuned family behind the transform (GPU when the task got one). Returns the model sha256."""
    from mlpipeline.stages.train import train as run_train

    result = run_train(train.path, transform.path, best_params.path, data, train_config, model.path)
    model.metadata.update({k: result[k] for k in ("family", "estimator", "device", "fit_seconds", "sha256")})
    return result["sha256"]
