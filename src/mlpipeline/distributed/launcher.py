"""Hand the train step to a cluster engine and wait: stage inputs, create the job, poll, collect.

:func:`train_distributed` is what :func:`mlpipeline.stages.train.train` calls when
``train.distributed`` is set. On the shared PVC (mounted at ``distributed.mount_path`` in the train
step and in every job pod) it lays out::

    <mount_path>/mlpipeline-ddp/<job>/inputs/{train.parquet, transform/, best_params.json, data.json, train.json}
    <mount_path>/mlpipeline-ddp/<job>/model/      written by rank 0 of the job

creates the TrainJob/PyTorchJob with the kubernetes client (``CustomObjectsApi``), polls its status
until Succeeded or Failed (deleting it when ``timeout_s`` passes), then copies the model into the
step's output and removes the staging directory. A failed or timed-out job raises
:class:`~mlpipeline.errors.TrainingError` and keeps the staging directory for inspection.

Only the torch MLP family trains with DDP; when the tuner picked another family the step trains
it in-process as usual and says so in ``train_info.json``.
"""

from __future__ import annotations

import logging
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlpipeline.config import DataConfig, DistributedConfig, TrainConfig, project_image
from mlpipeline.distributed.jobs import API_BY_ENGINE, failure_message, job_phase, render_job
from mlpipeline.errors import ConfigError, DeploymentError, TrainingError

log = logging.getLogger("mlpipeline.distributed.launcher")

STAGING_DIR = "mlpipeline-ddp"


def kube_custom_objects_api() -> Any:
    """``CustomObjectsApi`` from the in-cluster service account, else the local kube config."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        try:
            config.load_kube_config()
        except (config.ConfigException, OSError) as e:
            raise DeploymentError(f"no Kubernetes cluster configured (in-cluster or kube config): {e}") from e
    return client.CustomObjectsApi()


class JobLauncher:
    """Create a job object and wait for its outcome. ``api`` is a ``CustomObjectsApi`` (or a fake)."""

    def __init__(
        self,
        api: Any | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._api = api
        self._clock = clock
        self._sleep = sleep

    @property
    def api(self) -> Any:
        if self._api is None:
            self._api = kube_custom_objects_api()
        return self._api

    def create(self, obj: dict[str, Any], engine: str) -> dict[str, Any]:
        a = API_BY_ENGINE[engine]
        ns = obj["metadata"]["namespace"]
        log.info("creating %s %s/%s", a.kind, ns, obj["metadata"]["name"])
        return self.api.create_namespaced_custom_object(a.group, a.version, ns, a.plural, obj)

    def delete(self, name: str, namespace: str, engine: str) -> None:
        a = API_BY_ENGINE[engine]
        try:
            self.api.delete_namespaced_custom_object(
                a.group, a.version, namespace, a.plural, name, body={"propagationPolicy": "Foreground"}
            )
        except Exception as e:  # best effort: the caller is already reporting the real failure
            log.warning("could not delete %s %s/%s: %s", a.kind, namespace, name, e)

    def wait(self, name: str, namespace: str, engine: str, timeout_s: float, poll_interval_s: float) -> dict[str, Any]:
        """Poll until the job Succeeded (returns the object) or Failed / timed out (raises TrainingError)."""
        from kubernetes.client.exceptions import ApiException

        a = API_BY_ENGINE[engine]
        deadline = self._clock() + timeout_s
        last_error: Exception | None = None
        while True:
            try:
                obj = self.api.get_namespaced_custom_object(a.group, a.version, namespace, a.plural, name)
                last_error = None
            except ApiException as e:
                if e.status == 404:
                    raise TrainingError(f"{a.kind} {namespace}/{name} disappeared while training") from e
                last_error = e  # API server hiccup: keep polling until the deadline
                obj = {}
            phase = job_phase(obj)
            if phase == "Succeeded":
                log.info("%s %s/%s succeeded", a.kind, namespace, name)
                return obj
            if phase == "Failed":
                raise TrainingError(f"{a.kind} {namespace}/{name} failed: {failure_message(obj)}")
            if self._clock() >= deadline:
                self.delete(name, namespace, engine)
                why = f" (last API error: {last_error})" if last_error else ""
                raise TrainingError(f"{a.kind} {namespace}/{name} did not finish within {timeout_s:.0f} s; deleted{why}")
            self._sleep(poll_interval_s)


def _copy_input(src: str | Path, dst: Path) -> None:
    p = Path(src)
    if p.is_dir():
        shutil.copytree(p, dst)
    else:
        shutil.copy2(p, dst)


def ddp_args(job_dir: Path) -> list[str]:
    inputs = job_dir / "inputs"
    return [
        "--train", str(inputs / "train.parquet"),
        "--transform", str(inputs / "transform"),
        "--params", str(inputs / "best_params.json"),
        "--data-config", str(inputs / "data.json"),
        "--train-config", str(inputs / "train.json"),
        "--out", str(job_dir / "model"),
    ]


def stage_inputs(
    job_dir: Path, train_path: str | Path, transform_dir: str | Path, best_params_path: str | Path,
    dcfg: DataConfig, tcfg: TrainConfig,
) -> None:
    from mlpipeline.artifacts import atomic_write_json, read_parquet, write_parquet

    inputs = job_dir / "inputs"
    inputs.mkdir(parents=True)
    write_parquet(read_parquet(train_path), inputs / "train.parquet")  # file or KFP dataset dir -> one file
    _copy_input(transform_dir, inputs / "transform")
    _copy_input(best_params_path, inputs / "best_params.json")
    atomic_write_json(inputs / "data.json", dcfg.model_dump(mode="json"))
    atomic_write_json(inputs / "train.json", tcfg.model_copy(update={"distributed": None}).model_dump(mode="json"))


def job_name(dcfg: DataConfig) -> str:
    import re

    stem = re.sub(r"[^a-z0-9-]+", "-", dcfg.target.lower()).strip("-")[:20] or "model"
    return f"ddp-{stem}-{uuid.uuid4().hex[:8]}"


def train_distributed(
    train_path: str | Path,
    transform_dir: str | Path,
    best_params_path: str | Path,
    dcfg: DataConfig,
    tcfg: TrainConfig,
    out_model: str | Path,
    *,
    launcher: JobLauncher | None = None,
) -> dict[str, Any]:
    """The train step's multi-node path (see the module docstring); returns the train info."""
    from mlpipeline.artifacts import atomic_write_json, read_json
    from mlpipeline.distributed.ddp import FAMILY
    from mlpipeline.stages.train import MODEL_FILE

    d: DistributedConfig | None = tcfg.distributed
    if d is None:
        raise ConfigError("train.distributed is not set")
    best = read_json(best_params_path)
    if best.get("family") != FAMILY:
        from mlpipeline.stages.train import train

        log.warning("train.distributed is set but the tuner chose %s (not %s): training in-process", best.get("family"), FAMILY)
        info = train(train_path, transform_dir, best_params_path, dcfg, tcfg.model_copy(update={"distributed": None}), out_model)
        info["distributed"] = {"used": False, "reason": f"family {best.get('family')} has no distributed trainer"}
        atomic_write_json(Path(out_model) / "train_info.json", {k: v for k, v in info.items() if k != "sha256"})
        return info

    mount = Path(d.mount_path)
    if not mount.is_dir():
        raise ConfigError(
            f"train.distributed.mount_path {mount} does not exist in the train step: mount PVC {d.pvc_name!r} there"
        )
    name = job_name(dcfg)
    job_dir = mount / STAGING_DIR / name
    stage_inputs(job_dir, train_path, transform_dir, best_params_path, dcfg, tcfg)
    obj = render_job(name, d, ddp_args(job_dir), d.image or project_image())
    launcher = launcher or JobLauncher()
    t0 = time.monotonic()
    launcher.create(obj, d.engine)
    launcher.wait(name, d.namespace, d.engine, d.timeout_s, d.poll_interval_s)
    model_dir = job_dir / "model"
    if not (model_dir / "train_info.json").is_file():
        raise TrainingError(f"job {name} succeeded but wrote no model under {model_dir}")
    out = Path(out_model)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copytree(model_dir, out, dirs_exist_ok=True)
    info = read_json(out / "train_info.json")
    info["distributed"] = {
        "used": True, "engine": d.engine, "job": f"{d.namespace}/{name}", "num_nodes": d.num_nodes,
        "gpus_per_node": d.gpus_per_node, "wall_seconds": round(time.monotonic() - t0, 1),
    }
    atomic_write_json(out / "train_info.json", info)
    info["sha256"] = (out / f"{MODEL_FILE}.sha256").read_text().strip()
    shutil.rmtree(job_dir, ignore_errors=True)
    return info
