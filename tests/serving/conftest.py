from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from serving_support import (  # noqa: E402
    MAX_BATCH_ROWS,
    MAX_BODY_BYTES,
    ServerProcess,
    build_churn_model,
    churn_frame,
)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_churn_model(tmp_path_factory.mktemp("model") / "churn")


@pytest.fixture(scope="session")
def packaged(model_dir: Path):
    from mlpipeline.packaging import PackagedModel

    return PackagedModel.load(model_dir)


@pytest.fixture(scope="session")
def rows():
    """Fresh rows (different sample from training), inputs only, with NaN in total_charges kept."""
    df = churn_frame(n_rows=200, seed=7).drop(columns=["churn"])
    nan_rows = churn_frame(n_rows=7043, seed=1)
    nan_rows = nan_rows[nan_rows["total_charges"].isna()].drop(columns=["churn"]).head(3)
    import pandas as pd

    return pd.concat([df, nan_rows], ignore_index=True)


@pytest.fixture(scope="session")
def server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    log = tmp_path_factory.mktemp("logs") / "server.log"
    with ServerProcess(
        model_dir, log, "--max-batch-rows", str(MAX_BATCH_ROWS), "--max-body-bytes", str(MAX_BODY_BYTES)
    ) as srv:
        srv.wait_ready()
        yield srv


@pytest.fixture()
def copy_model(model_dir: Path, tmp_path: Path):
    def _copy() -> Path:
        dst = tmp_path / "copy"
        shutil.copytree(model_dir, dst)
        return dst

    return _copy
