from kfp.dsl import Artifact, Input, Model, Output
from mlpipeline.components._base import component


@component()
def package_op(
    model: Input[Model],
    evaluation: Input[Artifact],
    signature: Input[Artifact],
    schema: Input[Artifact],
    split_info: Input[Artifact],
    name: str,
    description: str,
    data: dict,
    validation: dict,
    eda: dict,
    preprocess: dict,
    features: dict,
    split: dict,
    tune: dict,
    train_config: dict,
    evaluate: dict,
    gate: dict,
    registry: dict,
    deploy: dict,
    packaged: Output[Model],
) -> str:
    """Model dir for KServe (model, signature, card, lineage, sha256 manifest), registered as production.

    Receives every config section so the lineage hashes exactly the config this run used.
    Returns the registered version (content address).
    """
    from mlpipeline.stages.package import package

    config = {
        "name": name, "description": description, "data": data, "validation": validation, "eda": eda,
        "preprocess": preprocess, "features": features, "split": split, "tune": tune, "train": train_config,
        "evaluate": evaluate, "gate": gate, "registry": registry, "deploy": deploy,
    }
    result = package(model.path, evaluation.path, signature.path, schema.path, split_info.path, config, packaged.path)
    packaged.metadata.update(result)
    return result["version"]
