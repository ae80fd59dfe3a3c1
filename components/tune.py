from kfp.dsl import Artifact, Dataset, Input, Model, Output
from mlpipeline.components._base import component


@component()
def tune_op(
    train: Input[Dataset],
    validation: Input[Dataset],
    transform: Input[Model],
    data: dict,
    tune: dict,
    train_config: dict,
    best_params: Output[Artifact],
    trials: Output[Artifact],
) -> str:
    """Optuna study over model families on the validation split. Returns the winning family."""
    from mlpipeline.stages.tune import tune as run_tune

    result = run_tune(train.path, validation.path, transform.path, data, tune, train_config, best_params.path, trials.path)
    best_params.metadata.update({k: result[k] for k in ("family", "metric", "value", "n_trials")})
    return result["family"]
