"""kfp.local.DockerRunner through podman with the runner fix: a failing component fails the run.

Unpatched kfp 2.17 reports a failed task as SUCCESS under podman (kubeflow/pipelines#13332); these
tests run real components in the project image and check outcome, outputs and streamed logs.
"""

# no `from __future__ import annotations`: KFP reads the component annotations as types

from pathlib import Path

import pytest
from kfp import dsl

from mlpipeline.config import project_image
from mlpipeline.kfp_docker import CONTAINER_USER, make_writable_for, patched_docker_runner

pytestmark = pytest.mark.containers


@dsl.component(base_image=project_image(), install_kfp_package=False)
def whoami_op(text: str) -> str:
    import os

    print(f"hello from the container: uid={os.getuid()} text={text}", flush=True)
    return f"{text}:{os.getuid()}"


@dsl.component(base_image=project_image(), install_kfp_package=False)
def failing_op(text: str):
    print(f"about to fail on {text}", flush=True)
    raise ValueError(f"deliberate failure on {text}")


@dsl.pipeline(name="runner-fix-fails")
def ok_then_fail():
    first = whoami_op(text="one")
    failing_op(text=first.output)


@dsl.pipeline(name="runner-fix-ok")
def ok_only() -> str:
    return whoami_op(text="solo").output


def _init(root: Path) -> None:
    import kfp.local

    make_writable_for(root, CONTAINER_USER)
    kfp.local.init(runner=kfp.local.DockerRunner(user=CONTAINER_USER, network_mode="none"), pipeline_root=str(root), raise_on_error=True)


def test_failing_component_fails_the_run(docker_api, tmp_path: Path, capsys):
    _init(tmp_path)
    with patched_docker_runner(), pytest.raises(RuntimeError, match="failing-op"):
        ok_then_fail()
    out = capsys.readouterr().out
    # the logs of both tasks were streamed in full, including the short-lived failing one
    assert "hello from the container: uid=1000 text=one" in out
    assert "about to fail on one:1000" in out
    assert "ValueError: deliberate failure on one:1000" in out


def test_successful_component_returns_its_output(docker_api, tmp_path: Path):
    _init(tmp_path)
    with patched_docker_runner():
        task = ok_only()
    assert task.output == "solo:1000"
