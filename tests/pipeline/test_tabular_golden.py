"""Golden tests: compiled IR equals pipelines/compiled/*.yaml, is byte-stable, loads back, and carries
the accelerator request when the config asks for one. Regenerate with ``make compile``."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from mlpipeline.pipelines.compile import COMPILED, CONFIGS, compile_config

from mlpipeline.config import load_config

CONFIG_PATHS = sorted(CONFIGS.glob("*.yaml"))


@pytest.mark.parametrize("config_path", CONFIG_PATHS, ids=[p.stem for p in CONFIG_PATHS])
def test_compiled_ir_matches_golden_file(config_path: Path, tmp_path):
    golden = COMPILED / f"{config_path.stem}.yaml"
    assert golden.is_file(), f"missing golden file {golden}; run `make compile`"
    out = compile_config(load_config(config_path), tmp_path / "a.yaml")
    again = compile_config(load_config(config_path), tmp_path / "b.yaml")
    assert out.read_bytes() == again.read_bytes(), "compiling twice must give identical bytes"
    assert out.read_text() == golden.read_text(), f"{golden.name} is stale; run `make compile`"


def test_golden_loads_back_with_kfp():
    from kfp import components

    for golden in sorted(COMPILED.glob("*.yaml")):
        comp = components.load_component_from_file(str(golden))
        assert comp.name.endswith("-tabular") or comp.name
        spec = yaml.safe_load(golden.read_text().split("\n---\n")[0])
        tasks = spec["root"]["dag"]["tasks"]
        assert {"ingest-op", "validate-op", "eda-op", "split-op", "preprocess-op", "features-op", "tune-op", "train-op", "evaluate-op", "gate-op", "condition-1"} <= set(tasks)
        cond = spec["components"]["comp-condition-1"]["dag"]["tasks"]
        assert {"package-op", "deploy-op"} == set(cond)
        assert "pipelinechannel--gate-op-Output" in tasks["condition-1"]["triggerPolicy"]["condition"]


def _executors(text: str) -> dict:
    docs = list(yaml.safe_load_all(text))
    return docs[0]["deploymentSpec"]["executors"], (docs[1] if len(docs) > 1 else {})


def test_accelerator_request_and_toleration_when_enabled(tmp_path, churn_config):
    from mlpipeline.config import AcceleratorConfig

    gpu_cfg = churn_config.model_copy(
        update={"train": churn_config.train.model_copy(update={"accelerator": AcceleratorConfig(type="nvidia.com/gpu", limit=2)})}
    )
    text = compile_config(gpu_cfg, tmp_path / "gpu.yaml").read_text()
    executors, platform = _executors(text)
    train = executors["exec-train-op"]["container"]["resources"]
    assert train["accelerator"]["resourceType"] == "nvidia.com/gpu" and train["accelerator"]["resourceCount"] == "2"
    others = [e for k, e in executors.items() if k != "exec-train-op"]
    assert all("accelerator" not in e["container"].get("resources", {}) for e in others)
    tol = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-train-op"]["tolerations"]
    assert tol == [{"effect": "NoSchedule", "key": "nvidia.com/gpu", "operator": "Exists"}]
    # and the CPU config has no accelerator anywhere
    cpu_exec, _ = _executors((COMPILED / "churn.yaml").read_text())
    assert all("accelerator" not in e["container"].get("resources", {}) for e in cpu_exec.values())


def test_retries_resources_and_caching(churn_config):
    spec = yaml.safe_load((COMPILED / "churn.yaml").read_text().split("\n---\n")[0])
    tasks = spec["root"]["dag"]["tasks"]
    assert tasks["ingest-op"]["retryPolicy"]["maxRetryCount"] == 3
    assert tasks["gate-op"]["cachingOptions"] == {}  # caching off: the registry changes between runs
    assert tasks["train-op"]["taskInfo"]["name"] == "train"
    res = spec["deploymentSpec"]["executors"]["exec-train-op"]["container"]["resources"]
    assert res["cpuRequest"] == 1 and res["memoryRequest"] == 2


def test_registry_pvc_is_mounted_on_gate_and_package(tmp_path, churn_config):
    reg = churn_config.registry.model_copy(update={"pvc_name": "models", "path": "/mnt/registry"})
    cfg = churn_config.model_copy(update={"registry": reg})
    _, platform = _executors(compile_config(cfg, tmp_path / "pvc.yaml").read_text())
    ex = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for name in ("exec-gate-op", "exec-package-op"):
        assert ex[name]["pvcMount"][0]["mountPath"] == "/mnt/registry"


def test_distributed_training_mounts_the_shared_volume_on_train(tmp_path, churn_config):
    from mlpipeline.config import DistributedConfig

    train = churn_config.train.model_copy(update={"distributed": DistributedConfig(pvc_name="ddp-shared", mount_path="/mnt/shared")})
    _, platform = _executors(compile_config(churn_config.model_copy(update={"train": train}), tmp_path / "ddp.yaml").read_text())
    ex = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert ex["exec-train-op"]["pvcMount"][0]["mountPath"] == "/mnt/shared"
    assert "exec-tune-op" not in ex
