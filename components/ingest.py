from kfp.dsl import Artifact, Dataset, Output
from mlpipeline.components._base import component


@component()
def ingest_op(data: dict, dataset: Output[Dataset], schema: Output[Artifact]) -> str:
    """Read the configured source (dataset name, CSV/Parquet path or URL) into Parquet + fingerprint.

    Returns the data's content sha256.
    """
    from mlpipeline.stages.ingest import ingest

    fp = ingest(data, dataset.path, schema.path)
    dataset.metadata.update({"rows": fp["rows"], "sha256": fp["sha256"], "columns": len(fp["columns"])})
    return fp["sha256"]
