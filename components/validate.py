from kfp.dsl import Artifact, Dataset, Input, Output
from mlpipeline.components._base import component


@component()
def validate_op(dataset: Input[Dataset], data: dict, validation: dict, report: Output[Artifact]) -> int:
    """Check the declared schema and data quality; fails on hard rules, reports soft ones.

    Returns the number of soft warnings.
    """
    from mlpipeline.stages.validate import validate

    result = validate(dataset.path, data, validation, report.path)
    report.metadata.update({"passed": result["passed"], "warnings": len(result["warnings"])})
    for w in result["warnings"]:
        print(f"warning: {w}")
    return len(result["warnings"])
