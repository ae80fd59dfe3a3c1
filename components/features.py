from kfp.dsl import Artifact, Dataset, Input, Model, Output
from mlpipeline.components._base import component


@component()
def features_op(
    train: Input[Dataset], transform: Input[Model], data: dict, features: dict, selected: Output[Model], report: Output[Artifact]
):
    """Feature selection (mutual information or model-based top-k) appended to the fitted transform."""
    from mlpipeline.stages.features import features as run_features

    result = run_features(train.path, transform.path, data, features, selected.path, report.path)
    selected.metadata.update({"sha256": result["sha256"], "n_selected": result["n_selected"]})
