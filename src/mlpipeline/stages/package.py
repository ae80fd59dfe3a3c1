"""Package stage: one self-describing, integrity-checked model directory, registered in the registry."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlpipeline.artifacts import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    dump_joblib,
    sha256_bytes,
    write_manifest,
)
from mlpipeline.errors import ArtifactError, IntegrityError
from mlpipeline.packaging import (
    CARD_JSON,
    CARD_MD,
    LINEAGE_FILE,
    METRICS_FILE,
    MODEL_FILE,
    SIGNATURE_FILE,
    PackagedModel,
)
from mlpipeline.signature import Signature


def git_commit(cwd: str | Path | None = None) -> str | None:
    """HEAD commit of the source tree, or MLPIPELINE_GIT_COMMIT (set in images), or None."""
    env = os.environ.get("MLPIPELINE_GIT_COMMIT")
    if env:
        return env
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5, check=True
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def render_model_card(card: dict[str, Any]) -> str:
    sig = card["signature"]
    lines = [
        f"# Model card: {card['name']}",
        "",
        f"- **Task**: {sig['task']} (target `{sig['target']}`)",
        f"- **Estimator**: {card['estimator']}",
        f"- **Created**: {card['created_at']}",
        f"- **Config hash**: `{card['lineage'].get('config_hash', '')}`",
        f"- **Data sha256**: `{card['lineage'].get('data_sha256', '')}`",
        f"- **Git commit**: `{card['lineage'].get('git_commit') or 'unknown'}`",
    ]
    if sig.get("threshold") is not None:
        lines.append(f"- **Decision threshold** (chosen on validation): {sig['threshold']:.4f}, positive class `{sig['positive_class']}`")
    lines += ["", "## Intended use", "", card.get("description") or "Scores rows with the input signature below.", ""]
    lines += ["## Metrics", "", "| split | metric | value |", "|---|---|---|"]
    for split in ("validation", "test"):
        for k, v in sorted((card["metrics"].get(split) or {}).items()):
            if isinstance(v, (int, float)):
                lines.append(f"| {split} | {k} | {_fmt(v)} |")
    lines += ["", "## Input signature", "", "| column | dtype | nullable |", "|---|---|---|"]
    for c in sig["inputs"]:
        lines.append(f"| {c['name']} | {c['dtype']} | {c['nullable']} |")
    lines += [
        "",
        "## Training data",
        "",
        f"- rows: train {card['data'].get('train_rows')}, validation {card['data'].get('validation_rows')}, test {card['data'].get('test_rows')}",
        "",
        "## Caveats",
        "",
        "- Metrics are from a single held-out test split of the training data's distribution; watch drift in production.",
        "- Unseen categories are mapped to an 'infrequent/unknown' bucket by the shipped preprocessing.",
        "",
    ]
    return "\n".join(lines)


def build_model_dir(
    out_dir: str | Path,
    *,
    name: str,
    estimator: Any = None,
    model_file: str | Path | None = None,
    model_sha256: str | None = None,
    estimator_name: str | None = None,
    signature: Signature,
    metrics: dict[str, Any],
    lineage: dict[str, Any],
    data_info: dict[str, Any] | None = None,
    description: str = "",
) -> str:
    """Write a complete model dir at ``out_dir`` (built in a temp sibling, renamed at the end).

    Give either ``estimator`` (pickled here) or ``model_file`` + ``model_sha256`` (an already
    pickled model, copied byte for byte after its sha256 is checked, so the packaged file is the
    trained file). Returns the manifest sha256 (the version's content address). ``out_dir`` may
    exist but must then be empty (KFP pre-creates output artifact directories).
    """
    if (estimator is None) == (model_file is None):
        raise ArtifactError("build_model_dir needs exactly one of estimator or model_file")
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise ArtifactError(f"refusing to package into non-empty directory {out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        if model_file is not None:
            data = Path(model_file).read_bytes()
            model_sha = sha256_bytes(data)
            if model_sha != model_sha256:
                raise IntegrityError(f"{model_file}: sha256 does not match the recorded {model_sha256}; refusing to package")
            atomic_write_bytes(tmp / MODEL_FILE, data)
        else:
            model_sha = dump_joblib(estimator, tmp / MODEL_FILE)
            estimator_name = estimator_name or type(getattr(estimator, "steps", [[None, estimator]])[-1][1]).__name__
        sig = signature.to_dict()
        atomic_write_json(tmp / SIGNATURE_FILE, sig)
        atomic_write_json(tmp / METRICS_FILE, metrics)
        lineage = {**lineage, "model_sha256": model_sha}
        atomic_write_json(tmp / LINEAGE_FILE, lineage)
        card = {
            "name": name,
            "description": description,
            "estimator": estimator_name or "unknown",
            "created_at": lineage.get("created_at") or datetime.now(UTC).isoformat(timespec="seconds"),
            "signature": sig,
            "metrics": metrics,
            "lineage": lineage,
            "data": data_info or {},
        }
        atomic_write_json(tmp / CARD_JSON, card)
        atomic_write_text(tmp / CARD_MD, render_model_card(card))
        digest = write_manifest(tmp)
        PackagedModel.load(tmp)  # prove it loads (manifest verifies, model unpickles) before publishing
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
        os.chmod(out, 0o755)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return digest


def package(
    model_dir: str | Path,
    metrics_path: str | Path,
    signature_path: str | Path,
    data_schema_path: str | Path,
    split_info_path: str | Path,
    config: dict[str, Any],
    out_model: str | Path,
) -> dict[str, Any]:
    """Build the model dir from the pipeline's artifacts and register it as the production version.

    ``config`` is the whole pipeline config (JSON); its hash goes into the lineage.
    """
    from mlpipeline.artifacts import read_json
    from mlpipeline.config import PipelineConfig, parse_section, sha256_json
    from mlpipeline.registry import ModelRegistry
    from mlpipeline.stages.train import MODEL_FILE as TRAIN_MODEL_FILE

    cfg = parse_section(PipelineConfig, config)
    model_file = Path(model_dir) / TRAIN_MODEL_FILE
    sha_file = Path(model_dir) / f"{TRAIN_MODEL_FILE}.sha256"
    if not sha_file.is_file():
        raise ArtifactError(f"{model_file}: no recorded sha256; refusing to package")
    metrics = read_json(metrics_path)
    signature = Signature.from_dict(read_json(signature_path))
    fingerprint = read_json(data_schema_path)
    split_info = read_json(split_info_path)
    train_info = read_json(Path(model_dir) / "train_info.json")
    lineage = {
        "git_commit": git_commit(Path(__file__).parent),
        "config_hash": sha256_json(config),
        "config_name": cfg.name,
        "data_sha256": fingerprint["sha256"],
        "data_source": fingerprint.get("source"),
        "data_fingerprint": fingerprint,
        "split_sha256": split_info.get("sha256"),
        "family": train_info["family"],
        "params": train_info["params"],
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    digest = build_model_dir(
        out_model,
        name=cfg.registry.model_name,
        model_file=model_file,
        model_sha256=sha_file.read_text().strip(),
        estimator_name=train_info["estimator"],
        signature=signature,
        metrics={k: metrics[k] for k in ("primary_metric", "threshold", "validation", "test") if k in metrics},
        lineage=lineage,
        data_info={f"{k}_rows": v for k, v in split_info["rows"].items()},
        description=cfg.description,
    )
    scalar_test = {k: v for k, v in metrics["test"].items() if isinstance(v, (int, float))}
    entry = ModelRegistry(cfg.registry.path, cfg.registry.model_name).register(
        out_model, metrics=scalar_test, blessed=True, reason="passed gate", promote=True
    )
    return {"version": entry["version"], "manifest_sha256": digest, "registry_path": entry["path"]}
