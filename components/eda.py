from kfp.dsl import HTML, Dataset, Input, Markdown, Output
from mlpipeline.components._base import component


@component()
def eda_op(dataset: Input[Dataset], data: dict, eda: dict, report: Output[HTML], summary: Output[Markdown]):
    """Exploratory report: distributions, correlations, target rate by feature (HTML + Markdown)."""
    from mlpipeline.stages.eda import eda as run_eda

    run_eda(dataset.path, data, eda, report.path, summary.path)
