"""Shared fixtures. Tests never reach the network: data comes from installed packages or is made here."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.pop("MLPIPELINE_IMAGE", None)  # golden files are compiled with the default image

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def churn_full():
    from mlpipeline.datasets import load_dataset

    return load_dataset("churn")


@pytest.fixture()
def churn_df(churn_full):
    """A 1,500-row seeded sample of the churn data (a fresh copy per test)."""
    return churn_full.sample(1500, random_state=0).reset_index(drop=True)


@pytest.fixture(scope="session")
def churn_config():
    from mlpipeline.config import load_config

    return load_config(REPO / "configs" / "churn.yaml")
