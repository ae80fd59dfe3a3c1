"""One thin KFP component per stage; each calls the pure stage function in mlpipeline.stages."""

from mlpipeline.components.deploy import deploy_op
from mlpipeline.components.eda import eda_op
from mlpipeline.components.evaluate import evaluate_op
from mlpipeline.components.features import features_op
from mlpipeline.components.gate import gate_op
from mlpipeline.components.ingest import ingest_op
from mlpipeline.components.package import package_op
from mlpipeline.components.preprocess import preprocess_op
from mlpipeline.components.split import split_op
from mlpipeline.components.train import train_op
from mlpipeline.components.tune import tune_op
from mlpipeline.components.validate import validate_op

__all__ = [
    "deploy_op", "eda_op", "evaluate_op", "features_op", "gate_op", "ingest_op", "package_op",
    "preprocess_op", "split_op", "train_op", "tune_op", "validate_op",
]
