from kfp.dsl import Artifact, Output
from mlpipeline.components._base import component


@component()
def deploy_op(version: str, deploy: dict, registry: dict, manifest: Output[Artifact]) -> str:
    """Render the KServe InferenceService; apply it when a kube context is configured."""
    from mlpipeline.stages.deploy import deploy as run_deploy

    result = run_deploy(version, deploy, registry, manifest.path)
    manifest.metadata.update(result)
    return result["action"]
