"""The predictor container: the project image's default command serves a packaged model.

Run the way a hardened pod runs it: uid 1000, read-only root filesystem, the model directory mounted
read-only at /mnt/models (KServe's mount point), the port published on 127.0.0.1 only.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from serving_support import MODEL_NAME, build_churn_model, churn_frame, expected, free_port, records

pytestmark = pytest.mark.containers

READY_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    d = build_churn_model(tmp_path_factory.mktemp("served") / "churn")
    # readable by the container's uid 1000 (the test runs as root with a private umask)
    for p in [d, *d.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    return d


@pytest.fixture(scope="module")
def predictor(podman: str, project_image: str, model_dir: Path):
    port = free_port()
    name = f"mlpipeline-serve-test-{port}"
    run = subprocess.run(
        [
            podman, "run", "-d", "--name", name, "--user", "1000:1000", "--read-only",
            "-v", f"{model_dir}:/mnt/models:ro", "-p", f"127.0.0.1:{port}:8080", project_image,
        ],
        capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stderr
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            try:
                if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            state = subprocess.run([podman, "inspect", "-f", "{{.State.Running}}", name], capture_output=True, text=True).stdout.strip()
            if state != "true" or time.monotonic() > deadline:
                logs = subprocess.run([podman, "logs", name], capture_output=True, text=True).stdout
                pytest.fail(f"predictor not ready (running={state}):\n{logs[-4000:]}")
            time.sleep(0.5)
        yield {"url": url, "name": name}
    finally:
        subprocess.run([podman, "rm", "-f", "-t", "5", name], capture_output=True, timeout=60)


def test_ready_and_predicts_like_the_packaged_model(predictor, model_dir):
    from mlpipeline.packaging import PackagedModel

    assert httpx.get(predictor["url"] + "/v2/health/ready").json() == {"ready": True}
    rows = churn_frame(n_rows=50, seed=11).drop(columns=["churn"])
    r = httpx.post(f"{predictor['url']}/v1/models/{MODEL_NAME}:predict", json={"instances": records(rows)}, timeout=30)
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    labels, proba = expected(PackagedModel.load(model_dir), rows)
    assert [p["label"] for p in preds] == labels
    np.testing.assert_allclose([p["probability"] for p in preds], proba, rtol=1e-12)


def test_runs_as_uid_1000_on_a_read_only_root(podman, predictor):
    def exec_(*cmd: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([podman, "exec", predictor["name"], *cmd], capture_output=True, text=True, timeout=60)

    assert exec_("id", "-u").stdout.strip() == "1000"
    assert exec_("python", "-c", "import os; print(os.getuid(), os.geteuid())").stdout.split() == ["1000", "1000"]
    for target in ("/opt/venv/evil", "/home/mlpipeline/x", "/mnt/models/x"):
        res = exec_("sh", "-c", f"echo x > {target}")
        assert res.returncode != 0 and "Read-only file system" in res.stderr, (target, res.stderr)
    assert exec_("sh", "-c", "echo x > /tmp/scratch").returncode == 0  # tmpfs, as on a pod with emptyDir /tmp
