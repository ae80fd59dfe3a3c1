"""Golden tests for the fine-tuning pipeline IR: byte-stable, equal to pipelines/compiled/llm/*.yaml,
loadable, and the GPU request + toleration where (and only where) the config asks for one.
Regenerate with ``python -m mlpipeline.pipelines.finetune``."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from mlpipeline.pipelines.finetune import COMPILED, CONFIGS, compile_finetune

from mlpipeline.finetune.config import load_finetune_config

CONFIG_PATHS = sorted(CONFIGS.glob("*.yaml"))
TASKS = {"prepare-corpus-op", "base-perplexity-op", "lora-train-op", "merge-lora-op", "finetuned-perplexity-op", "package-llm-op"}
GPU_TASKS = {"base-perplexity-op", "lora-train-op", "finetuned-perplexity-op"}


def _docs(text: str) -> tuple[dict, dict]:
    docs = list(yaml.safe_load_all(text))
    return docs[0], (docs[1] if len(docs) > 1 else {})


@pytest.mark.parametrize("config_path", CONFIG_PATHS, ids=[p.stem for p in CONFIG_PATHS])
def test_compiled_ir_is_stable_and_matches_golden_file(config_path: Path, tmp_path):
    golden = COMPILED / f"{config_path.stem}.yaml"
    assert golden.is_file(), f"missing golden file {golden}; run python -m mlpipeline.pipelines.finetune"
    a = compile_finetune(load_finetune_config(config_path), tmp_path / "a.yaml")
    b = compile_finetune(load_finetune_config(config_path), tmp_path / "b.yaml")
    assert a.read_bytes() == b.read_bytes(), "compiling twice must give identical bytes"
    assert a.read_text() == golden.read_text(), f"{golden} is stale; run python -m mlpipeline.pipelines.finetune"


@pytest.mark.parametrize("config_path", CONFIG_PATHS, ids=[p.stem for p in CONFIG_PATHS])
def test_golden_loads_back_and_wires_the_stages(config_path: Path):
    from kfp import components

    golden = COMPILED / f"{config_path.stem}.yaml"
    comp = components.load_component_from_file(str(golden))
    cfg = load_finetune_config(config_path)
    assert comp.name == f"{cfg.name}-finetune"
    spec, _ = _docs(golden.read_text())
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == TASKS
    deps = {name: set(t.get("dependentTasks", [])) for name, t in tasks.items()}
    assert deps["lora-train-op"] == {"prepare-corpus-op"} and deps["base-perplexity-op"] == {"prepare-corpus-op"}
    assert deps["finetuned-perplexity-op"] == {"merge-lora-op", "prepare-corpus-op"}
    assert deps["package-llm-op"] == {"merge-lora-op", "base-perplexity-op", "finetuned-perplexity-op", "lora-train-op", "prepare-corpus-op"}
    defaults = spec["root"]["inputDefinitions"]["parameters"]
    assert defaults["package"]["defaultValue"]["model_name"] == cfg.package.model_name
    assert defaults["train"]["defaultValue"]["max_steps"] == cfg.train.max_steps


def test_gpu_config_requests_an_accelerator_and_tolerates_the_gpu_taint():
    cfg = load_finetune_config(CONFIGS / "shakespeare-lora.yaml")
    spec, platform = _docs((COMPILED / "shakespeare-lora.yaml").read_text())
    executors = spec["deploymentSpec"]["executors"]
    train = executors["exec-lora-train-op"]["container"]["resources"]
    assert train["accelerator"]["resourceType"] == cfg.train.accelerator.type == "nvidia.com/gpu"
    assert train["accelerator"]["resourceCount"] == str(cfg.train.accelerator.limit)
    assert train["cpuRequest"] == 4 and train["memoryRequest"] == 16
    with_gpu = {k.removeprefix("exec-") for k, e in executors.items() if "accelerator" in e["container"].get("resources", {})}
    assert with_gpu == GPU_TASKS
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for task in GPU_TASKS:
        assert k8s[f"exec-{task}"]["tolerations"] == [{"effect": "NoSchedule", "key": "nvidia.com/gpu", "operator": "Exists"}]


def test_cpu_config_has_no_accelerator_anywhere():
    spec, platform = _docs((COMPILED / "shakespeare-lora-tiny.yaml").read_text())
    assert all("accelerator" not in e["container"].get("resources", {}) for e in spec["deploymentSpec"]["executors"].values())
    assert "tolerations" not in str(platform)


def test_cache_pvc_is_mounted_in_every_step_that_reads_the_base_model(tmp_path):
    cfg = load_finetune_config(CONFIGS / "shakespeare-lora.yaml")
    cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"cache_dir": "/cache", "cache_pvc": "llm-cache"})})
    _, platform = _docs(compile_finetune(cfg, tmp_path / "pvc.yaml").read_text())
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    mounted = {k.removeprefix("exec-") for k, e in k8s.items() if e.get("pvcMount")}
    assert mounted == {"prepare-corpus-op", "base-perplexity-op", "lora-train-op", "merge-lora-op"}
    assert all(k8s[f"exec-{t}"]["pvcMount"][0]["mountPath"] == "/cache" for t in mounted)
