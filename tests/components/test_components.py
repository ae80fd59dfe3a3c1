"""Each stage's KFP component: built on the project image without a runtime kfp install, typed
inputs/outputs, and runnable on its own under kfp.local."""

from __future__ import annotations

import json

import mlpipeline.components as comps
import pytest

from mlpipeline.config import DEFAULT_IMAGE

OPS = [getattr(comps, n) for n in comps.__all__]


@pytest.mark.parametrize("op", OPS, ids=[o.name for o in OPS])
def test_component_uses_project_image_and_no_runtime_pip(op):
    container = op.component_spec.implementation.container
    assert container.image == DEFAULT_IMAGE
    script = " ".join(container.command)
    assert "pip install" not in script, "install_kfp_package=False: the image already has kfp and mlpipeline"
    assert op.description, "every component documents itself"


def test_components_import_heavy_libraries_lazily():
    import subprocess
    import sys

    code = "import sys, mlpipeline.components; print(sorted(m for m in ('torch','sklearn','pandas','optuna') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_ingest_component_runs_alone_under_kfp_local(tmp_path, churn_df):
    from kfp import local

    churn_df.to_csv(tmp_path / "d.csv", index=False)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))
    task = comps.ingest_op(data={"source": str(tmp_path / "d.csv"), "target": "churn"})
    schema = json.loads(open(task.outputs["schema"].path).read())
    assert schema["rows"] == 1500 and task.outputs["Output"] == schema["sha256"]
    assert task.outputs["dataset"].metadata["rows"] == 1500


def test_failing_component_raises_with_the_stage_error(tmp_path):
    from kfp import local

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))
    with pytest.raises(RuntimeError, match="ingest-op"):
        comps.ingest_op(data={"source": "no-such-dataset", "target": "y"})
