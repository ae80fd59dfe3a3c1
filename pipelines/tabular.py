"""The tabular pipeline: every stage a KFP component, wired from one config.

``build_pipeline(cfg)`` returns a ``@dsl.pipeline`` whose parameters are the config sections (with
the config's values as defaults, so a run can override any section without recompiling) and whose
static settings (GPU request, registry volume, resources) come from the config. The package and
deploy steps run only when the gate blesses the model (``dsl.If``).
"""


from typing import Any

from kfp import dsl
from mlpipeline.components import (
    deploy_op,
    eda_op,
    evaluate_op,
    features_op,
    gate_op,
    ingest_op,
    package_op,
    preprocess_op,
    split_op,
    train_op,
    tune_op,
    validate_op,
)

from mlpipeline.config import PipelineConfig

SMALL = ("500m", "1G")  # cpu, memory request for light steps
MEDIUM = ("1", "2G")


def set_resources(task: Any, cpu: str, memory: str) -> Any:
    """CPU and memory request, memory limit = request (a KFP step is OOM-killed, never evicted late)."""
    return task.set_cpu_request(cpu).set_memory_request(memory).set_memory_limit(memory)


def _io_retry(task: Any) -> Any:
    return task.set_retry(num_retries=3, backoff_duration="30s", backoff_factor=2.0, backoff_max_duration="600s")


def build_pipeline(cfg: PipelineConfig) -> Any:
    s = cfg.sections()
    rcfg = cfg.registry
    acc = cfg.train.accelerator

    def mount_registry(task: Any) -> Any:
        if rcfg.pvc_name:
            from kfp import kubernetes

            kubernetes.mount_pvc(task, pvc_name=rcfg.pvc_name, mount_path=rcfg.path)
        return task

    @dsl.pipeline(name=f"{cfg.name}-tabular", description=cfg.description or f"Tabular pipeline for {cfg.name}")
    def tabular_pipeline(
        name: str = cfg.name,
        description: str = cfg.description,
        data: dict = s["data"],
        validation: dict = s["validation"],
        eda: dict = s["eda"],
        preprocess: dict = s["preprocess"],
        features: dict = s["features"],
        split: dict = s["split"],
        tune: dict = s["tune"],
        train: dict = s["train"],
        evaluate: dict = s["evaluate"],
        gate: dict = s["gate"],
        registry: dict = s["registry"],
        deploy: dict = s["deploy"],
    ):
        ingest_t = _io_retry(set_resources(ingest_op(data=data), *SMALL)).set_display_name("ingest")
        validate_t = set_resources(
            validate_op(dataset=ingest_t.outputs["dataset"], data=data, validation=validation), *SMALL
        ).set_display_name("validate")
        set_resources(
            eda_op(dataset=ingest_t.outputs["dataset"], data=data, eda=eda), *SMALL
        ).set_display_name("eda report")
        split_t = set_resources(split_op(dataset=ingest_t.outputs["dataset"], data=data, split=split), *SMALL)
        split_t.set_display_name("split").after(validate_t)
        pre_t = set_resources(
            preprocess_op(train=split_t.outputs["train"], data=data, preprocess=preprocess, features=features), *MEDIUM
        ).set_display_name("preprocess")
        feat_t = set_resources(
            features_op(train=split_t.outputs["train"], transform=pre_t.outputs["transform"], data=data, features=features),
            *MEDIUM,
        ).set_display_name("feature selection")
        tune_t = set_resources(
            tune_op(
                train=split_t.outputs["train"],
                validation=split_t.outputs["validation"],
                transform=feat_t.outputs["selected"],
                data=data,
                tune=tune,
                train_config=train,
            ),
            cfg.train.cpu_request,
            cfg.train.memory_request,
        ).set_display_name("tune")
        train_t = set_resources(
            train_op(
                train=split_t.outputs["train"],
                transform=feat_t.outputs["selected"],
                best_params=tune_t.outputs["best_params"],
                data=data,
                train_config=train,
            ),
            cfg.train.cpu_request,
            cfg.train.memory_request,
        ).set_display_name("train")
        dist = cfg.train.distributed
        if dist is not None:
            # the step stages inputs on the shared RWX volume and launches a TrainJob/PyTorchJob on it
            from kfp import kubernetes

            kubernetes.mount_pvc(train_t, pvc_name=dist.pvc_name, mount_path=dist.mount_path)
        if acc is not None:
            from kfp import kubernetes

            train_t.set_accelerator_type(acc.type).set_accelerator_limit(acc.limit)
            kubernetes.add_toleration(train_t, key=acc.type, operator="Exists", effect="NoSchedule")
        eval_t = set_resources(
            evaluate_op(
                model=train_t.outputs["model"],
                validation=split_t.outputs["validation"],
                test=split_t.outputs["test"],
                data=data,
                evaluate=evaluate,
                validation_rules=validation,
            ),
            *MEDIUM,
        ).set_display_name("evaluate")
        gate_t = mount_registry(
            set_resources(gate_op(evaluation=eval_t.outputs["evaluation"], gate=gate, registry=registry), *SMALL)
        )
        gate_t.set_display_name("gate vs production").set_caching_options(False)
        with dsl.If(gate_t.outputs["Output"] == True, name="blessed"):  # noqa: E712 (KFP condition syntax)
            pkg_t = package_op(
                model=train_t.outputs["model"],
                evaluation=eval_t.outputs["evaluation"],
                signature=eval_t.outputs["signature"],
                schema=ingest_t.outputs["schema"],
                split_info=split_t.outputs["info"],
                name=name,
                description=description,
                data=data,
                validation=validation,
                eda=eda,
                preprocess=preprocess,
                features=features,
                split=split,
                tune=tune,
                train_config=train,
                evaluate=evaluate,
                gate=gate,
                registry=registry,
                deploy=deploy,
            )
            _io_retry(mount_registry(set_resources(pkg_t, *SMALL))).set_display_name("package + register").set_caching_options(False)
            dep_t = deploy_op(version=pkg_t.outputs["Output"], deploy=deploy, registry=registry)
            _io_retry(set_resources(dep_t, *SMALL)).set_display_name("deploy (KServe)").set_caching_options(False)

    return tabular_pipeline
