"""Deploy stage: render the KServe InferenceService for a registered model version and apply it
with the kubernetes client when a kube context is configured; otherwise write it and print the
``kubectl apply`` line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlpipeline.artifacts import atomic_write_text
from mlpipeline.config import DeployConfig, RegistryConfig, parse_section, project_image
from mlpipeline.errors import DeploymentError


def storage_uri_for(dcfg: DeployConfig, rcfg: RegistryConfig, version: str) -> str:
    rel = f"{rcfg.model_name}/versions/{version}"
    if dcfg.storage_uri:
        return f"{dcfg.storage_uri.rstrip('/')}/{rel}"
    return f"pvc://{rcfg.pvc_name or 'mlpipeline-registry'}/{rel}"


def render(dcfg: DeployConfig, rcfg: RegistryConfig, version: str, gpu: int = 0) -> dict[str, Any]:
    from mlpipeline.serving.manifests import render_inference_service

    isvc = render_inference_service(
        rcfg.model_name,
        dcfg.namespace,
        storage_uri_for(dcfg, rcfg, version),
        dcfg.image or project_image(),
        min_replicas=dcfg.min_replicas,
        max_replicas=dcfg.max_replicas,
        scale_metric=dcfg.scale_metric,
        scale_target=dcfg.scale_target,
        cpu=dcfg.cpu,
        memory=dcfg.memory,
        service_account=dcfg.service_account,
        gpu=gpu,
    )
    isvc["metadata"].setdefault("annotations", {})["mlpipeline/model-version"] = version
    return isvc


def _kube_api() -> Any | None:
    """CustomObjectsApi for the in-cluster or kubeconfig context, or None when there is none."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        try:
            config.load_kube_config()
        except (config.ConfigException, FileNotFoundError, TypeError):
            return None
    return client.CustomObjectsApi()


def apply(isvc: dict[str, Any], api: Any) -> str:
    from kubernetes.client.exceptions import ApiException

    ns, name = isvc["metadata"]["namespace"], isvc["metadata"]["name"]
    args = ("serving.kserve.io", "v1beta1", ns, "inferenceservices")
    try:
        api.create_namespaced_custom_object(*args, body=isvc)
        return "created"
    except ApiException as e:
        if e.status != 409:
            raise DeploymentError(f"creating InferenceService {ns}/{name} failed: {e.status} {e.reason}") from e
    try:
        current = api.get_namespaced_custom_object(*args, name)
        isvc = {**isvc, "metadata": {**isvc["metadata"], "resourceVersion": current["metadata"]["resourceVersion"]}}
        api.replace_namespaced_custom_object(*args, name, body=isvc)
        return "updated"
    except ApiException as e:
        raise DeploymentError(f"updating InferenceService {ns}/{name} failed: {e.status} {e.reason}") from e


def deploy(
    version: str,
    deploy_cfg: dict[str, Any] | DeployConfig,
    registry_cfg: dict[str, Any] | RegistryConfig,
    out_manifest: str | Path,
) -> dict[str, Any]:
    import yaml

    dcfg = parse_section(DeployConfig, deploy_cfg, "deploy")
    rcfg = parse_section(RegistryConfig, registry_cfg, "registry")
    isvc = render(dcfg, rcfg, version)  # tabular predictors are CPU-bound; the GPU is for training
    text = yaml.safe_dump(isvc, sort_keys=False)
    atomic_write_text(out_manifest, text)
    result: dict[str, Any] = {"manifest": str(out_manifest), "name": isvc["metadata"]["name"], "namespace": dcfg.namespace}
    api = _kube_api() if dcfg.apply else None
    if api is not None:
        result["action"] = apply(isvc, api)
    else:
        result["action"] = "written"
        result["command"] = f"kubectl apply -f {out_manifest}"
        print(f"InferenceService written; apply with: {result['command']}")
    return result
