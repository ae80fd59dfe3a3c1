from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Input, Metrics, Model, Output
from mlpipeline.components._base import component


@component()
def evaluate_op(
    model: Input[Model],
    validation: Input[Dataset],
    test: Input[Dataset],
    data: dict,
    evaluate: dict,
    validation_rules: dict,
    metrics: Output[Metrics],
    classification: Output[ClassificationMetrics],
    report: Output[HTML],
    evaluation: Output[Artifact],
    signature: Output[Artifact],
):
    """Validation + test metrics, threshold chosen on validation, ROC/PR/calibration/confusion plots."""
    from mlpipeline.stages.evaluate import evaluate as run_evaluate

    result = run_evaluate(
        model.path, validation.path, test.path, data, evaluate, validation_rules, evaluation.path, signature.path, report.path
    )
    for split in ("validation", "test"):
        for k, v in result[split].items():
            if isinstance(v, float) and v == v:
                metrics.log_metric(f"{split}_{k}", round(v, 6))
    cm = result["test"].get("confusion_matrix")
    if cm:
        classification.log_confusion_matrix(cm["labels"], cm["matrix"])
    roc = result.get("curves", {}).get("test", {}).get("roc")
    if roc:
        classification.log_roc_curve(roc["fpr"], roc["tpr"], roc["thresholds"])
