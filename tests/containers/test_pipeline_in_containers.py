"""The churn pipeline under kfp.local.DockerRunner: every component inside the project image.

Slow (each of the ~12 tasks starts a container and imports its stack; several minutes on 2 cores).
The tuning budget is cut to keep it bounded; everything else is configs/churn.yaml.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from mlpipeline.artifacts import read_json
from mlpipeline.kfp_docker import run_in_containers

pytestmark = [pytest.mark.slow, pytest.mark.containers]

REPO = Path(__file__).resolve().parents[2]


def test_churn_pipeline_runs_in_the_project_image(docker_api, podman, project_image, tmp_path):
    cfg = yaml.safe_load((REPO / "configs" / "churn.yaml").read_text())
    cfg["tune"].update({"n_trials": 4, "timeout_s": 30, "families": ["logistic_regression", "gradient_boosting"]})
    config = tmp_path / "churn-small.yaml"
    config.write_text(yaml.safe_dump(cfg))
    root = tmp_path / "root"

    run_dir = run_in_containers(config, root)

    decision = read_json(run_dir / "gate-op" / "decision")
    assert decision["blessed"], decision
    packaged = run_dir / "package-op" / "packaged"
    from mlpipeline.packaging import PackagedModel

    model = PackagedModel.load(packaged)  # manifest verified
    # Executed inside the image: files belong to its uid 1000, and lineage carries the image's revision.
    assert packaged.stat().st_uid == 1000
    label = subprocess.run(
        [podman, "image", "inspect", "--format", '{{index .Labels "org.opencontainers.image.revision"}}', project_image],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    card = json.loads((packaged / "model_card.json").read_text())
    assert card["lineage"]["git_commit"] == label
    # the registry was redirected under the pipeline root, where the containers could write it
    registry = root / "registry"
    assert any(registry.rglob("MANIFEST.json")), f"nothing registered under {registry}"
    assert model.signature.target == "churn"
