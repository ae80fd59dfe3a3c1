"""Job objects that run the DDP entry point on a cluster: Kubeflow Trainer ``TrainJob`` or Training
Operator ``PyTorchJob`` (``DistributedConfig.engine``).

Both run ``torchrun -m mlpipeline.distributed.ddp ARGS`` in the project image. The engines give
torchrun its topology through ``PET_*`` environment variables (``PET_NNODES``, ``PET_NPROC_PER_NODE``,
``PET_NODE_RANK``, ``PET_MASTER_ADDR``, ``PET_MASTER_PORT``), so the command carries none.
Inputs and the model go through the shared PVC, mounted at the same path in every pod, which run as
the image's non-root user with ``fsGroup`` 1000 so the volume is writable for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlpipeline.config import DistributedConfig
from mlpipeline.errors import ConfigError


@dataclass(frozen=True)
class Api:
    group: str
    version: str
    plural: str
    kind: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"


TRAINJOB = Api("trainer.kubeflow.org", "v1alpha1", "trainjobs", "TrainJob")
PYTORCHJOB = Api("kubeflow.org", "v1", "pytorchjobs", "PyTorchJob")
API_BY_ENGINE = {"trainjob": TRAINJOB, "pytorchjob": PYTORCHJOB}

#: torchrun turns PET_* variables set by the engine into --nnodes/--nproc-per-node/--node-rank/...
COMMAND = ["torchrun", "-m", "mlpipeline.distributed.ddp"]
#: The ``torch-distributed`` ClusterTrainingRuntime names its replicated job and container ``node``.
TRAINJOB_NODE = "node"
#: The Training Operator requires the PyTorch container to be named ``pytorch``.
PYTORCH_CONTAINER = "pytorch"
VOLUME = "shared"
RUN_AS = 1000
PATCH_MANAGER = "mlpipeline.io/launcher"
GPU_RESOURCE = "nvidia.com/gpu"
ENV = [
    {"name": "PYTHONUNBUFFERED", "value": "1"},
    {"name": "HF_HUB_OFFLINE", "value": "1"},
]


def procs_per_node(d: DistributedConfig) -> int:
    return d.gpus_per_node if d.gpus_per_node > 0 else d.procs_per_node


def _resources(d: DistributedConfig) -> dict[str, Any]:
    limits: dict[str, str] = {"memory": d.memory}
    if d.gpus_per_node:
        limits[GPU_RESOURCE] = str(d.gpus_per_node)
    return {"requests": {"cpu": d.cpu, "memory": d.memory}, "limits": limits}


def _pod_security() -> dict[str, Any]:
    return {"runAsNonRoot": True, "runAsUser": RUN_AS, "runAsGroup": RUN_AS, "fsGroup": RUN_AS}


def _container_security() -> dict[str, Any]:
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def _volumes(d: DistributedConfig) -> list[dict[str, Any]]:
    return [{"name": VOLUME, "persistentVolumeClaim": {"claimName": d.pvc_name}}]


def _mounts(d: DistributedConfig) -> list[dict[str, Any]]:
    return [{"name": VOLUME, "mountPath": d.mount_path}]


def _metadata(name: str, d: DistributedConfig, labels: dict[str, str] | None) -> dict[str, Any]:
    if not name or len(name) > 40:
        raise ConfigError(f"job name {name!r} must be 1..40 characters (JobSet/pod names derive from it)")
    meta: dict[str, Any] = {"name": name, "namespace": d.namespace}
    all_labels = {"app.kubernetes.io/part-of": "mlpipeline", "app.kubernetes.io/component": "ddp-train", **(labels or {})}
    meta["labels"] = {k: str(v) for k, v in all_labels.items()}
    return meta


def render_trainjob(
    name: str, d: DistributedConfig, args: list[str], image: str, labels: dict[str, str] | None = None
) -> dict[str, Any]:
    """A ``trainer.kubeflow.org/v1alpha1`` TrainJob on the ``d.runtime`` ClusterTrainingRuntime."""
    pod_patch: dict[str, Any] = {
        "securityContext": _pod_security(),
        "volumes": _volumes(d),
        "containers": [{"name": TRAINJOB_NODE, "volumeMounts": _mounts(d), "securityContext": _container_security()}],
    }
    if d.service_account:
        pod_patch["serviceAccountName"] = d.service_account
    return {
        "apiVersion": TRAINJOB.api_version,
        "kind": TRAINJOB.kind,
        "metadata": _metadata(name, d, labels),
        "spec": {
            "runtimeRef": {"apiGroup": TRAINJOB.group, "kind": "ClusterTrainingRuntime", "name": d.runtime},
            "activeDeadlineSeconds": int(d.timeout_s),
            "trainer": {
                "image": image,
                "command": list(COMMAND),
                "args": list(args),
                "numNodes": d.num_nodes,
                "numProcPerNode": procs_per_node(d),
                "resourcesPerNode": _resources(d),
                "env": [dict(e) for e in ENV],
            },
            "runtimePatches": [
                {
                    "manager": PATCH_MANAGER,
                    "trainingRuntimeSpec": {
                        "template": {
                            "spec": {
                                "replicatedJobs": [
                                    {"name": TRAINJOB_NODE, "template": {"spec": {"template": {"spec": pod_patch}}}}
                                ]
                            }
                        }
                    },
                }
            ],
        },
    }


def render_pytorchjob(
    name: str, d: DistributedConfig, args: list[str], image: str, labels: dict[str, str] | None = None
) -> dict[str, Any]:
    """A ``kubeflow.org/v1`` PyTorchJob: one Master and ``num_nodes - 1`` Workers."""

    def replica(replicas: int) -> dict[str, Any]:
        pod: dict[str, Any] = {
            "securityContext": _pod_security(),
            "containers": [
                {
                    "name": PYTORCH_CONTAINER,
                    "image": image,
                    "command": list(COMMAND),
                    "args": list(args),
                    "env": [dict(e) for e in ENV],
                    "resources": _resources(d),
                    "volumeMounts": _mounts(d),
                    "securityContext": _container_security(),
                }
            ],
            "volumes": _volumes(d),
        }
        if d.service_account:
            pod["serviceAccountName"] = d.service_account
        return {"replicas": replicas, "restartPolicy": "Never", "template": {"spec": pod}}

    specs = {"Master": replica(1)}
    if d.num_nodes > 1:
        specs["Worker"] = replica(d.num_nodes - 1)
    return {
        "apiVersion": PYTORCHJOB.api_version,
        "kind": PYTORCHJOB.kind,
        "metadata": _metadata(name, d, labels),
        "spec": {
            "nprocPerNode": str(procs_per_node(d)),
            "runPolicy": {
                "activeDeadlineSeconds": int(d.timeout_s),
                "backoffLimit": 0,  # a failed DDP run fails the step; the pipeline's retry policy decides
                "cleanPodPolicy": "Running",
                "ttlSecondsAfterFinished": 7 * 24 * 3600,
            },
            "pytorchReplicaSpecs": specs,
        },
    }


def render_job(
    name: str, d: DistributedConfig, args: list[str], image: str, labels: dict[str, str] | None = None
) -> dict[str, Any]:
    render = render_trainjob if d.engine == "trainjob" else render_pytorchjob
    return render(name, d, args, image, labels)


def job_phase(obj: dict[str, Any]) -> str | None:
    """``Succeeded``/``Failed`` from a TrainJob's or PyTorchJob's conditions, else None (still going).

    TrainJob reports ``Complete``/``Failed``; PyTorchJob ``Succeeded``/``Failed`` (both with status "True").
    """
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if str(cond.get("status")) != "True":
            continue
        if cond.get("type") in ("Complete", "Succeeded"):
            return "Succeeded"
        if cond.get("type") == "Failed":
            return "Failed"
    return None


def failure_message(obj: dict[str, Any]) -> str:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Failed":
            return f"{cond.get('reason') or 'Failed'}: {cond.get('message') or 'no message'}"
    return "no Failed condition"


def render_launcher_rbac(namespace: str, service_account: str) -> list[dict[str, Any]]:
    """Role + RoleBinding letting the train step's service account run and watch its jobs."""
    name = "mlpipeline-ddp-launcher"
    verbs = ["create", "get", "list", "watch", "delete"]
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app.kubernetes.io/part-of": "mlpipeline"}},
        "rules": [
            {"apiGroups": [TRAINJOB.group], "resources": [TRAINJOB.plural], "verbs": verbs},
            {"apiGroups": [PYTORCHJOB.group], "resources": [PYTORCHJOB.plural], "verbs": verbs},
        ],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app.kubernetes.io/part-of": "mlpipeline"}},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": service_account, "namespace": namespace}],
    }
    return [role, binding]
