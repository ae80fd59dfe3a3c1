from kfp.dsl import Artifact, Dataset, Input, Output
from mlpipeline.components._base import component


@component()
def split_op(
    dataset: Input[Dataset],
    data: dict,
    split: dict,
    train: Output[Dataset],
    validation: Output[Dataset],
    test: Output[Dataset],
    info: Output[Artifact],
):
    """Seeded stratified (or time-ordered) train/validation/test split."""
    from mlpipeline.stages.split import split as run_split

    result = run_split(dataset.path, data, split, train.path, validation.path, test.path, info.path)
    for art, key in ((train, "train"), (validation, "validation"), (test, "test")):
        art.metadata.update({"rows": result["rows"][key], "sha256": result["sha256"][key]})
