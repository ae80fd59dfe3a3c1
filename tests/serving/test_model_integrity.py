"""A tampered or incomplete model directory is refused: the server exits non-zero, says why, and
never listens."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from serving_support import REPO, free_port


def run_server(model_dir: Path) -> subprocess.CompletedProcess[str]:
    port = free_port()
    return subprocess.run(
        [sys.executable, "-m", "mlpipeline.serving", str(model_dir), "--host", "127.0.0.1", "--port", str(port)],
        capture_output=True, text=True, timeout=90, cwd=REPO,
    )


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("damage", "needle"),
    [
        (lambda d: flip_byte(d / "model.joblib"), "model.joblib"),
        (lambda d: (d / "signature.json").write_text((d / "signature.json").read_text().replace('"int"', '"float"', 1)), "signature.json"),
        (lambda d: (d / "signature.json").unlink(), "signature.json"),
        (lambda d: (d / "MANIFEST.json").unlink(), "MANIFEST.json"),
    ],
    ids=["model-bytes-changed", "signature-edited", "signature-missing", "manifest-missing"],
)
def test_damaged_model_dir_is_refused(copy_model, damage, needle):
    d = copy_model()
    damage(d)
    out = run_server(d)
    assert out.returncode == 2, out.stderr[-2000:]
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and needle in last, last
    assert "Uvicorn running" not in out.stderr


def test_bad_arguments_are_refused(model_dir):
    out = subprocess.run(
        [sys.executable, "-m", "mlpipeline.serving", str(model_dir), "--workers", "0"],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )
    assert out.returncode == 2 and "workers must be >= 1" in out.stderr


def test_manifest_is_what_the_server_checks(model_dir):
    """Guard for the tests above: the fixture dir lists every file the damage cases touch."""
    files = json.loads((model_dir / "MANIFEST.json").read_text())["files"]
    assert {"model.joblib", "signature.json"} <= set(files)


def test_predictor_load_refuses_tampered_dir_and_stays_unready(copy_model, monkeypatch):
    """The model's own load() (what KServe calls) checks again, right before unpickling."""
    from mlpipeline.errors import IntegrityError

    monkeypatch.setattr(sys, "argv", ["pytest"])  # `import kserve` parses sys.argv
    from mlpipeline.serving.predictor import TabularModel

    d = copy_model()
    flip_byte(d / "model.joblib")
    model = TabularModel("churn", str(d))
    with pytest.raises(IntegrityError, match="model.joblib"):
        model.load()
    assert model.ready is False and model.packaged is None
