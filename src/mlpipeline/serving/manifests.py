"""The predictor's InferenceService as data: one shape for the kustomize base and the deploy stage.

:func:`render_inference_service` is pure (no cluster, no I/O). ``manifests/base/inferenceservice.yaml``
is this function's output for the base values (a test keeps the two identical), so what the pipeline
deploys and what ``kubectl apply -k manifests/overlays/...`` deploys differ only in the values.
"""

from __future__ import annotations

import re
from typing import Any

from mlpipeline.errors import DeploymentError

API_VERSION = "serving.kserve.io/v1beta1"
CONTAINER_NAME = "kserve-container"  # the name KServe expects for the predictor container
MODEL_MOUNT = "/mnt/models"  # where KServe's storage initializer puts STORAGE_URI's content
HTTP_PORT = 8080
MULTIPROC_DIR = "/var/run/mlpipeline/metrics"
SCALE_METRICS = ("concurrency", "rps", "cpu", "memory")
_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_QUANTITY = re.compile(r"^(\d+(\.\d+)?|\.\d+)([KMGTPE]i|[mkMGTPE])?$")


def _check(name: str, namespace: str, storage_uri: str, image: str, min_r: int, max_r: int, metric: str, target: int, cpu: str, memory: str, gpu: int) -> None:
    problems = []
    if not _DNS1035.match(name) or len(name) > 45:
        problems.append(f"name {name!r} must be a DNS-1035 label of at most 45 characters")
    if not _DNS1123.match(namespace) or len(namespace) > 63:
        problems.append(f"namespace {namespace!r} is not a DNS-1123 label")
    if "://" not in storage_uri:
        problems.append(f"storage_uri {storage_uri!r} needs a scheme (pvc://, s3://, gs://, ...)")
    if not image:
        problems.append("image is empty")
    if min_r < 0 or max_r < 1 or max_r < min_r:
        problems.append(f"replicas: need 0 <= min_replicas <= max_replicas, max >= 1 (got {min_r}..{max_r})")
    if metric not in SCALE_METRICS:
        problems.append(f"scale_metric {metric!r} is not one of {', '.join(SCALE_METRICS)}")
    if target < 1:
        problems.append(f"scale_target must be >= 1, got {target}")
    for field, q in (("cpu", cpu), ("memory", memory)):
        if not _QUANTITY.match(str(q)):
            problems.append(f"{field} {q!r} is not a Kubernetes quantity")
    if gpu < 0:
        problems.append(f"gpu must be >= 0, got {gpu}")
    if problems:
        raise DeploymentError("cannot render InferenceService: " + "; ".join(problems))


def render_inference_service(
    name: str,
    namespace: str,
    storage_uri: str,
    image: str,
    *,
    min_replicas: int,
    max_replicas: int,
    scale_metric: str,
    scale_target: int,
    cpu: str,
    memory: str,
    service_account: str,
    gpu: int = 0,
) -> dict[str, Any]:
    """A KServe v1beta1 InferenceService running ``python -m mlpipeline.serving`` on the model dir.

    KServe's storage initializer copies ``storage_uri`` to /mnt/models (STORAGE_URI on the
    ``kserve-container``); the server verifies its manifest before listening. Pod security: non-root
    uid 1000, read-only root filesystem, no capabilities, RuntimeDefault seccomp; writable emptyDirs
    for /tmp and the Prometheus multiprocess directory. ``gpu > 0`` adds an ``nvidia.com/gpu`` limit
    and the matching toleration. Raises DeploymentError naming every invalid argument.
    """
    _check(name, namespace, storage_uri, image, min_replicas, max_replicas, scale_metric, scale_target, cpu, memory, gpu)
    resources: dict[str, Any] = {
        "requests": {"cpu": str(cpu), "memory": str(memory)},
        "limits": {"cpu": str(cpu), "memory": str(memory)},
    }
    if gpu:
        resources["limits"]["nvidia.com/gpu"] = str(gpu)
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": image,
        "command": ["python", "-m", "mlpipeline.serving"],
        "args": [MODEL_MOUNT, "--host", "0.0.0.0", "--port", str(HTTP_PORT), "--model-name", name],
        "env": [
            {"name": "STORAGE_URI", "value": storage_uri},
            {"name": "PROMETHEUS_MULTIPROC_DIR", "value": MULTIPROC_DIR},
            {"name": "HOME", "value": "/tmp"},
            {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
            {"name": "HF_HUB_OFFLINE", "value": "1"},
        ],
        "ports": [{"name": "http1", "containerPort": HTTP_PORT, "protocol": "TCP"}],
        "resources": resources,
        "readinessProbe": {
            "httpGet": {"path": "/v2/health/ready", "port": HTTP_PORT},
            "initialDelaySeconds": 5,
            "periodSeconds": 10,
            "timeoutSeconds": 3,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            "httpGet": {"path": "/v2/health/live", "port": HTTP_PORT},
            "initialDelaySeconds": 30,
            "periodSeconds": 20,
            "timeoutSeconds": 5,
            "failureThreshold": 3,
        },
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "runAsGroup": 1000,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "prometheus-multiproc", "mountPath": MULTIPROC_DIR},
        ],
    }
    predictor: dict[str, Any] = {
        "serviceAccountName": service_account,
        "automountServiceAccountToken": False,
        "minReplicas": min_replicas,
        "maxReplicas": max_replicas,
        "scaleMetric": scale_metric,
        "scaleTarget": scale_target,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "runAsGroup": 1000,
            "fsGroup": 1000,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [
            {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
            {"name": "prometheus-multiproc", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
        ],
    }
    if gpu:
        predictor["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    return {
        "apiVersion": API_VERSION,
        "kind": "InferenceService",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/name": name,
                "app.kubernetes.io/component": "predictor",
                "app.kubernetes.io/part-of": "mlpipeline",
            },
        },
        "spec": {"predictor": predictor},
    }
