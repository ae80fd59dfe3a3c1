"""Fixtures for tests that run the project image with podman (or a Docker engine).

Podman tests skip, saying why, when podman is not installed (``make container-deps``) or the project
image has not been built (``make image``; about 12 minutes, so tests never build it themselves).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "serving"))  # serving_support: packaged churn model, HTTP helpers
sys.path.insert(0, str(REPO / "tests" / "distributed"))  # ddp_support: small DDP inputs


def _podman() -> str:
    exe = shutil.which("podman")
    if exe is None:
        pytest.skip("podman is not installed (make container-deps)")
    return exe


@pytest.fixture(scope="session")
def podman() -> str:
    return _podman()


@pytest.fixture(scope="session")
def project_image(podman: str) -> str:
    from mlpipeline.config import project_image as configured

    image = configured()
    found = subprocess.run([podman, "image", "exists", image], capture_output=True, timeout=60)
    if found.returncode != 0:
        pytest.skip(f"project image {image} is not built (make image)")
    return image


@pytest.fixture(scope="session")
def docker_api(project_image: str):
    """DOCKER_HOST pointing at a Docker-compatible API (podman's service, started for the session)."""
    from mlpipeline.kfp_docker import container_engine

    with container_engine() as url:
        yield url
