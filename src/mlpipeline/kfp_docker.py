"""Containerized local runs: the pipeline under ``kfp.local.DockerRunner``, every task in the project image.

``python -m mlpipeline.kfp_docker CONFIG [--pipeline-root DIR]`` (``make run-containers``) runs one
use case with each component executing ``python -m kfp.dsl.executor_main`` inside
:func:`mlpipeline.config.project_image` (found locally, never pulled), through a Docker engine or
podman's Docker-compatible API (:func:`container_engine` starts ``podman system service`` when no
engine answers).

Runner fix (kfp 2.17, kubeflow/pipelines#13332): ``kfp.local.docker_task_handler.run_docker_container``
starts containers with ``auto_remove=True``. Under podman the container is often gone before its log
stream opens (a 500 "does not exist in database", so short logs are lost) and ``wait()`` on a removed
container raises NotFound, which kfp reads as exit code 0: every failed task is reported SUCCESS.
``DockerRunner(auto_remove=False)`` is refused (TypeError). :func:`run_docker_container` is the
replacement that :func:`patched_docker_runner` installs for the duration of a run: no auto-remove,
logs streamed to the end, the real exit code from ``wait()``, the container removed in ``finally``.

Paths: DockerRunner bind-mounts ``pipeline_root`` at the same absolute path. The registry and the
deploy output directory from the config are redirected under the pipeline root (or, for a registry
given explicitly, mounted as an extra volume at its own path), and all of them are made writable for
the image's non-root user (uid 1000) before the run.
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import functools
import inspect
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mlpipeline.errors import ConfigError, MLPipelineError

log = logging.getLogger("mlpipeline.kfp_docker")

#: The image's non-root user (docker/Dockerfile: USER 1000:1000).
CONTAINER_USER = "1000:1000"
#: Seconds to wait for ``podman system service`` to answer on its socket.
SERVICE_START_TIMEOUT_S = 30.0


class ContainerEngineError(MLPipelineError):
    """No Docker-compatible engine could be reached or started."""


# --------------------------------------------------------------------------- the runner fix
def run_docker_container(
    client: Any,
    image: str,
    command: list[str],
    volumes: dict[str, Any],
    *,
    extra_volumes: dict[str, Any] | None = None,
    pull: bool = False,
    **container_run_args: Any,
) -> int:
    """Run ``command`` in ``image`` to completion and return its real exit status.

    Same signature as ``kfp.local.docker_task_handler.run_docker_container`` (plus the keyword-only
    ``extra_volumes`` merged into kfp's ``volumes``, and ``pull``). The container is created without
    auto-remove, so its logs and exit status stay readable after it stops; it is removed in ``finally``
    whatever happens (including KeyboardInterrupt while streaming).
    """
    import docker

    image = image if ":" in image.rsplit("/", 1)[-1] or "@" in image else f"{image}:latest"
    try:
        client.images.get(image)
        print(f"Found image {image!r}\n", flush=True)
    except docker.errors.ImageNotFound:
        if not pull or image.startswith("localhost/"):
            raise ContainerEngineError(
                f"image {image!r} is not present locally (build it with `make image`; it is never pulled)"
            ) from None
        print(f"Pulling image {image!r}", flush=True)
        client.images.pull(image)
    container_run_args.pop("auto_remove", None)
    container_run_args.pop("remove", None)
    container = client.containers.run(
        image=image,
        command=command,
        detach=True,
        stdout=True,
        stderr=True,
        volumes={**volumes, **(extra_volumes or {})},
        auto_remove=False,
        **container_run_args,
    )
    try:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        for chunk in container.logs(stream=True, follow=True):
            sys.stdout.write(decoder.decode(chunk))
        sys.stdout.write(decoder.decode(b"", final=True))
        sys.stdout.flush()
        result = container.wait()
        if result.get("Error"):
            log.warning("container %s: engine reported %s", container.short_id, result["Error"])
        return int(result["StatusCode"])
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            try:
                container.remove(force=True)
            except docker.errors.APIError as e:  # never hide the task's own outcome behind cleanup
                log.warning("could not remove container %s: %s", container.short_id, e)


@contextlib.contextmanager
def patched_docker_runner(extra_volumes: dict[str, Any] | None = None) -> Iterator[None]:
    """Install :func:`run_docker_container` into kfp's docker task handler for the ``with`` block."""
    from kfp.local import docker_task_handler

    original = docker_task_handler.run_docker_container
    expected = ["client", "image", "command", "volumes"]
    params = list(inspect.signature(original).parameters)[: len(expected)]
    if params != expected:  # a kfp release changed the hook: fail loudly rather than patch blindly
        raise RuntimeError(f"kfp.local.docker_task_handler.run_docker_container takes {params}, expected {expected}")
    docker_task_handler.run_docker_container = functools.partial(run_docker_container, extra_volumes=extra_volumes)
    try:
        yield
    finally:
        docker_task_handler.run_docker_container = original


# --------------------------------------------------------------------------- the engine
def _ping(base_url: str) -> bool:
    import docker

    try:
        client = docker.DockerClient(base_url=base_url, timeout=5)
    except docker.errors.DockerException:
        return False
    try:
        return bool(client.ping())
    except Exception:  # connection refused, socket missing, engine error: all mean "not usable"
        return False
    finally:
        client.close()


@contextlib.contextmanager
def container_engine() -> Iterator[str]:
    """Yield the base URL of a Docker-compatible engine and set ``DOCKER_HOST`` to it meanwhile.

    ``DOCKER_HOST`` when it answers, else the default Docker socket, else a ``podman system service``
    started here on a private socket and stopped on exit.
    """
    candidates = [os.environ["DOCKER_HOST"]] if os.environ.get("DOCKER_HOST") else []
    candidates.append("unix:///var/run/docker.sock")
    for url in candidates:
        if _ping(url):
            with _env("DOCKER_HOST", url):
                yield url
            return
    podman = shutil.which("podman")
    if podman is None:
        raise ContainerEngineError("no Docker engine answers and podman is not installed (make container-deps)")
    with tempfile.TemporaryDirectory(prefix="mlpipeline-podman-") as tmp:
        url = f"unix://{tmp}/podman.sock"
        proc = subprocess.Popen(
            [podman, "system", "service", "--time=0", url],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + SERVICE_START_TIMEOUT_S
            while not _ping(url):
                if proc.poll() is not None:
                    err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
                    raise ContainerEngineError(f"podman system service exited with {proc.returncode}: {err}")
                if time.monotonic() > deadline:
                    raise ContainerEngineError(f"podman system service did not answer on {url} within {SERVICE_START_TIMEOUT_S:.0f} s")
                time.sleep(0.2)
            log.info("started podman system service on %s (pid %d)", url, proc.pid)
            with _env("DOCKER_HOST", url):
                yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextlib.contextmanager
def _env(key: str, value: str) -> Iterator[None]:
    old = os.environ.get(key)
    os.environ[key] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


# --------------------------------------------------------------------------- paths and ownership
def make_writable_for(path: Path, user: str) -> None:
    """Let the container user write ``path`` (a directory tree): chown when root, else require ownership.

    As root the tree is handed to ``uid:gid`` (root keeps access anyway). As another user the files
    are already that user's; the container then has to run as the same uid (``user=`` argument).
    """
    uid, _, gid = user.partition(":")
    if os.geteuid() != 0:
        return
    for root, dirs, files in os.walk(path):
        for name in [root, *(os.path.join(root, d) for d in dirs), *(os.path.join(root, f) for f in files)]:
            os.chown(name, int(uid), int(gid or uid), follow_symlinks=False)


def _is_under(child: Path, parent: Path) -> bool:
    try:
        child.relative_to(parent)
        return True
    except ValueError:
        return False


def container_config(config_path: str | os.PathLike[str], pipeline_root: Path, registry_dir: Path | None) -> Any:
    """The config with container-reachable paths: registry and deploy output under ``pipeline_root``
    unless ``registry_dir`` is given (then mounted as an extra volume at the same path)."""
    from mlpipeline.config import load_config

    cfg = load_config(config_path)
    registry = registry_dir if registry_dir is not None else pipeline_root / "registry"
    reg = cfg.registry.model_copy(update={"path": str(registry)})
    dep = cfg.deploy.model_copy(update={"output_dir": str(pipeline_root / "deploy")})
    return cfg.model_copy(update={"registry": reg, "deploy": dep})


# --------------------------------------------------------------------------- the run
def run_in_containers(
    config_path: str | os.PathLike[str],
    pipeline_root: str | os.PathLike[str],
    *,
    image: str | None = None,
    registry_dir: str | os.PathLike[str] | None = None,
    user: str | None = None,
    network_mode: str = "none",
) -> Path:
    """Run the use case in ``config_path`` with ``kfp.local.DockerRunner``; return the run directory.

    Every task runs in ``image`` (default :func:`~mlpipeline.config.project_image`) as ``user``
    (default: the image's uid 1000 when run as root, which hands the directories to it; otherwise the
    caller's own uid:gid, which already owns them) with ``network_mode`` (``none`` by default: shipped
    data sets need no network; use ``bridge`` for a URL source). Raises :class:`MLPipelineError` when
    the pipeline fails (a failing component fails the run) and :class:`ContainerEngineError` when no
    engine or image is available.
    """
    import kfp.local

    from mlpipeline.config import project_image

    if user is None:
        user = CONTAINER_USER if os.geteuid() == 0 else f"{os.getuid()}:{os.getgid()}"
    root = Path(pipeline_root).resolve()
    registry = Path(registry_dir).resolve() if registry_dir is not None else None
    if image is not None:
        os.environ["MLPIPELINE_IMAGE"] = image
    image = project_image()
    # Components take their base image when mlpipeline.components is first imported: check it.
    from mlpipeline.components._base import component

    if component.keywords["base_image"] != image:
        raise ConfigError(
            f"components were already created for image {component.keywords['base_image']!r}, not {image!r}: "
            "set MLPIPELINE_IMAGE before importing mlpipeline.components"
        )
    from mlpipeline.pipelines.local import run_pipeline
    from mlpipeline.pipelines.tabular import build_pipeline

    cfg = container_config(config_path, root, registry)
    for d in (root, Path(cfg.registry.path), Path(cfg.deploy.output_dir)):
        d.mkdir(parents=True, exist_ok=True)
    extra_volumes = {}
    if registry is not None and not _is_under(registry, root):
        extra_volumes[str(registry)] = {"bind": str(registry), "mode": "rw"}
        make_writable_for(registry, user)
    make_writable_for(root, user)

    with container_engine(), patched_docker_runner(extra_volumes):
        kfp.local.init(
            runner=kfp.local.DockerRunner(user=user, network_mode=network_mode),
            pipeline_root=str(root),
            raise_on_error=True,
        )
        args = {**cfg.sections(), "name": cfg.name, "description": cfg.description}
        run_dir, _ = run_pipeline(build_pipeline(cfg), args, root, "containerized pipeline")
    return run_dir

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m mlpipeline.kfp_docker", allow_abbrev=False,
        description="Run a use case with kfp.local.DockerRunner, every component in the project image.",
    )
    p.add_argument("config", help="use-case YAML, e.g. configs/churn.yaml")
    p.add_argument("--pipeline-root", default="runs/containers", help="artifact root (bind-mounted into every task)")
    p.add_argument("--image", default=None, help="project image (default: $MLPIPELINE_IMAGE or the configured default)")
    p.add_argument("--registry-dir", default=None, help="registry to mount (default: <pipeline-root>/registry)")
    p.add_argument("--network", default="none", help="container network mode (none, bridge, host)")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    t0 = time.perf_counter()
    try:
        run_dir = run_in_containers(
            a.config, a.pipeline_root, image=a.image, registry_dir=a.registry_dir, network_mode=a.network
        )
    except MLPipelineError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"pipeline finished in {time.perf_counter() - t0:.0f} s; run directory {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
