"""The DockerRunner fix without an engine: a fake docker client records what the runner does."""

from __future__ import annotations

import docker
import pytest

from mlpipeline.kfp_docker import ContainerEngineError, patched_docker_runner, run_docker_container


class FakeContainer:
    short_id = "abc123"

    def __init__(self, logs: list[bytes], status: int, log_error: Exception | None = None):
        self._logs, self._status, self._log_error = logs, status, log_error
        self.removed = False

    def logs(self, stream: bool, follow: bool):
        assert stream and follow
        yield from self._logs
        if self._log_error:
            raise self._log_error

    def wait(self):
        return {"StatusCode": self._status, "Error": None}

    def remove(self, force: bool):
        self.removed = True


class FakeClient:
    def __init__(self, container: FakeContainer, images: set[str]):
        self.container, self._images, self.run_kwargs = container, images, None
        self.images = self

    def get(self, name: str):  # client.images.get
        if name not in self._images:
            raise docker.errors.ImageNotFound(name)
        return name

    @property
    def containers(self):
        return self

    def run(self, **kwargs):
        self.run_kwargs = kwargs
        return self.container


def test_exit_code_comes_from_wait_and_container_is_removed(capsys):
    # a multi-byte character split across two chunks must come out whole
    c = FakeContainer([b"step 1\n", "caf\u00e9".encode()[:4], "caf\u00e9".encode()[4:] + b"\n"], status=3)
    client = FakeClient(c, {"localhost/mlpipeline:0.1.0"})
    code = run_docker_container(
        client, "localhost/mlpipeline:0.1.0", ["python", "-c", "x"], {"/root": {"bind": "/root", "mode": "rw"}},
        extra_volumes={"/reg": {"bind": "/reg", "mode": "rw"}}, auto_remove=True, user="1000:1000",
    )
    assert code == 3
    assert c.removed
    kw = client.run_kwargs
    assert kw["auto_remove"] is False and kw["detach"] is True and kw["user"] == "1000:1000"
    assert set(kw["volumes"]) == {"/root", "/reg"}
    assert "step 1\ncaf\u00e9\n" in capsys.readouterr().out


def test_container_removed_even_when_log_streaming_fails():
    c = FakeContainer([b"partial\n"], status=0, log_error=docker.errors.APIError("stream broke"))
    with pytest.raises(docker.errors.APIError):
        run_docker_container(FakeClient(c, {"img:1"}), "img:1", ["true"], {})
    assert c.removed


def test_missing_local_image_is_never_pulled():
    client = FakeClient(FakeContainer([], status=0), set())
    with pytest.raises(ContainerEngineError, match="make image"):
        run_docker_container(client, "localhost/mlpipeline:9.9", ["true"], {})
    assert client.run_kwargs is None


def test_patch_is_installed_only_inside_the_block():
    from kfp.local import docker_task_handler

    original = docker_task_handler.run_docker_container
    with patched_docker_runner({"/x": {"bind": "/x", "mode": "rw"}}):
        patched = docker_task_handler.run_docker_container
        assert patched is not original
        assert patched.func is run_docker_container and patched.keywords["extra_volumes"] == {"/x": {"bind": "/x", "mode": "rw"}}
    assert docker_task_handler.run_docker_container is original
