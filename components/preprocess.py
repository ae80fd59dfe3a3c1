from kfp.dsl import Artifact, Dataset, Input, Model, Output
from mlpipeline.components._base import component


@component()
def preprocess_op(
    train: Input[Dataset], data: dict, preprocess: dict, features: dict, transform: Output[Model], report: Output[Artifact]
):
    """Fit derive → denoise → impute/clip/scale/encode on the train split (one sklearn transformer)."""
    from mlpipeline.stages.preprocess import preprocess as run_preprocess

    result = run_preprocess(train.path, data, preprocess, features, transform.path, report.path)
    transform.metadata.update({"sha256": result["sha256"], "n_output_features": result["n_output_features"]})
