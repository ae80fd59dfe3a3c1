"""Fixtures for the DDP trainer, launcher and Katib tests (inputs built by ddp_support)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
# schemas.py (tests/manifests): strict validation against the real CRDs in ../shared/schemas/crds
sys.path.insert(0, str(Path(__file__).parents[1] / "manifests"))

from ddp_support import build_ddp_inputs  # noqa: E402


@pytest.fixture(scope="session")
def ddp_inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_ddp_inputs(tmp_path_factory.mktemp("ddp-inputs"))
