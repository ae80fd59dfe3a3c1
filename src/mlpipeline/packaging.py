"""The packaged model directory: what KServe's storage initializer copies to /mnt/models.

Layout (every file listed with its sha256 in MANIFEST.json)::

    MANIFEST.json      sha256 + size of every other file; its own digest is the model version id
    model.joblib       fitted sklearn Pipeline: [transform (derive → clean → select), estimator]
    signature.json     input columns + dtypes, task, classes, positive class, decision threshold
    metrics.json       validation and test metrics from the evaluate stage
    model_card.md      human-readable card; model_card.json the same facts as data
    lineage.json       git commit, config hash, data fingerprints, created_at, stage params

:class:`PackagedModel` verifies the manifest *before* unpickling, then scores raw rows exactly as
the evaluate stage did (same :func:`~mlpipeline.signature.conform`, same threshold).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlpipeline.artifacts import MANIFEST, load_joblib_verified, read_json, verify_manifest
from mlpipeline.errors import ArtifactError
from mlpipeline.signature import Signature, conform

MODEL_FILE = "model.joblib"
SIGNATURE_FILE = "signature.json"
METRICS_FILE = "metrics.json"
LINEAGE_FILE = "lineage.json"
CARD_MD = "model_card.md"
CARD_JSON = "model_card.json"


def predict_from_estimator(estimator: Any, X: Any, signature: Signature) -> dict[str, Any]:
    """Score a conformed frame; the one scoring rule shared by evaluate, predict and serving.

    Returns arrays: ``prediction`` always; ``probability`` (positive class) for binary tasks;
    ``probabilities`` (n × classes) for any classification.
    """
    import numpy as np

    if signature.task == "regression":
        return {"prediction": np.asarray(estimator.predict(X), dtype="float64")}
    proba = np.asarray(estimator.predict_proba(X), dtype="float64")
    classes = list(signature.classes)
    if len(classes) == 2 and signature.threshold is not None:
        pos = classes.index(signature.positive_class)
        p = proba[:, pos]
        neg = classes[1 - pos]
        pred = np.where(p >= signature.threshold, signature.positive_class, neg)
        return {"prediction": pred, "probability": p, "probabilities": proba}
    pred = np.asarray(classes, dtype=object)[proba.argmax(axis=1)]
    return {"prediction": pred, "probabilities": proba}


@dataclass
class PackagedModel:
    path: Path
    estimator: Any
    signature: Signature
    manifest_sha256: str
    metrics: dict[str, Any]
    lineage: dict[str, Any]

    @property
    def version(self) -> str:
        """Content address of the model directory (first 12 hex of the manifest sha256)."""
        return self.manifest_sha256[:12]

    @classmethod
    def load(cls, path: str | Path) -> PackagedModel:
        """Verify every file against MANIFEST.json, then unpickle the model (and nothing before)."""
        from mlpipeline.artifacts import sha256_file

        root = Path(path)
        manifest = verify_manifest(root)
        files = manifest["files"]
        for required in (MODEL_FILE, SIGNATURE_FILE):
            if required not in files:
                raise ArtifactError(f"{root}: {required} is not in the manifest; not a packaged model")
        signature = Signature.from_dict(read_json(root / SIGNATURE_FILE))
        estimator = load_joblib_verified(root / MODEL_FILE, files[MODEL_FILE]["sha256"])
        metrics = read_json(root / METRICS_FILE) if METRICS_FILE in files else {}
        lineage = read_json(root / LINEAGE_FILE) if LINEAGE_FILE in files else {}
        return cls(
            path=root,
            estimator=estimator,
            signature=signature,
            manifest_sha256=sha256_file(root / MANIFEST),
            metrics=metrics,
            lineage=lineage,
        )

    def predict_frame(self, df: Any, *, allow_extra: bool = False) -> Any:
        """Score raw rows (columns as at ingestion); returns a DataFrame of predictions.

        Columns: ``prediction``; for binary classification ``probability`` (positive class);
        for multi-class one ``proba_<class>`` column per class.
        """
        import pandas as pd

        X = conform(df, self.signature, allow_extra=allow_extra)
        out = predict_from_estimator(self.estimator, X, self.signature)
        frame = pd.DataFrame({"prediction": out["prediction"]})
        if "probability" in out:
            frame["probability"] = out["probability"]
        elif "probabilities" in out:
            for i, c in enumerate(self.signature.classes):
                frame[f"proba_{c}"] = out["probabilities"][:, i]
        return frame
