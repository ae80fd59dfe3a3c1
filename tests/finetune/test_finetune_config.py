"""Fine-tuning config: shipped YAMLs load, errors name the field, sections survive the KFP round trip."""

from __future__ import annotations

import types
import typing
from pathlib import Path

import pytest

from mlpipeline.config import parse_section
from mlpipeline.errors import ConfigError
from mlpipeline.finetune import config as fc
from mlpipeline.finetune.config import FinetuneConfig, load_finetune_config

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted((REPO / "configs" / "llm").glob("*.yaml"))
BASE = "name: demo\npackage: {model_name: demo}\n"


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "ft.yaml"
    p.write_text(text)
    return p


def test_shipped_configs_load_and_the_gpu_one_asks_for_a_gpu():
    assert {p.stem for p in SHIPPED} >= {"shakespeare-lora", "shakespeare-lora-tiny"}
    cfgs = {p.stem: load_finetune_config(p) for p in SHIPPED}
    gpu, tiny = cfgs["shakespeare-lora"], cfgs["shakespeare-lora-tiny"]
    assert gpu.train.accelerator is not None and gpu.train.accelerator.type == "nvidia.com/gpu"
    assert tiny.train.accelerator is None and tiny.train.device == "cpu" and tiny.corpus.block_size == 64


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_sections_round_trip_through_plain_dicts(path):
    """What a KFP component re-validates from its dict must equal the config's own section."""
    cfg = load_finetune_config(path)
    for name, section in cfg.sections().items():
        model = type(getattr(cfg, name))
        assert parse_section(model, section, name) == getattr(cfg, name), name


def _section_models() -> list[type]:
    return [v for v in vars(fc).values() if isinstance(v, type) and issubclass(v, fc._Section) and v is not fc._Section]


def test_every_nullable_field_defaults_to_none():
    """sections() drops None values, so a nullable field with another default would silently change."""
    offenders = []
    for model in _section_models():
        for field_name, field in model.model_fields.items():
            ann = field.annotation
            nullable = typing.get_origin(ann) in (typing.Union, types.UnionType) and type(None) in typing.get_args(ann)
            if nullable and field.default is not None:
                offenders.append(f"{model.__name__}.{field_name}")
    assert not offenders


def test_unknown_field_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"lora\.rank: unknown field"):
        load_finetune_config(write(tmp_path, BASE + "lora: {rank: 8}\n"))


def test_bad_value_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"train\.max_steps: Input should be greater than or equal to 1"):
        load_finetune_config(write(tmp_path, BASE + "train: {max_steps: 0}\n"))


def test_missing_section_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"package: Field required"):
        load_finetune_config(write(tmp_path, "name: demo\n"))


def test_unknown_lora_module_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"lora\.target_modules: .*unknown module\(s\) \['qkv'\]"):
        load_finetune_config(write(tmp_path, BASE + "lora: {target_modules: [q_proj, qkv]}\n"))


def test_cross_field_rules_are_named(tmp_path):
    with pytest.raises(ConfigError, match=r"corpus: .*heldout_works \(2\) must leave at least one"):
        load_finetune_config(write(tmp_path, BASE + "corpus: {works: [hamlet, lear], heldout_works: 2}\n"))
    with pytest.raises(ConfigError, match=r"train: .*warmup_steps \(10\) must be below max_steps \(10\)"):
        load_finetune_config(write(tmp_path, BASE + "train: {max_steps: 10, warmup_steps: 10}\n"))


def test_model_name_must_be_a_dns_label(tmp_path):
    with pytest.raises(ConfigError, match=r"package\.model_name"):
        load_finetune_config(write(tmp_path, "name: demo\npackage: {model_name: Bad_Name}\n"))


def test_config_is_frozen():
    cfg = FinetuneConfig.model_validate({"name": "demo", "package": {"model_name": "demo"}})
    with pytest.raises(Exception, match="frozen"):
        cfg.train.max_steps = 5  # type: ignore[misc]


def test_component_side_validation_names_the_section():
    from mlpipeline.finetune.config import FinetuneTrainConfig

    with pytest.raises(ConfigError, match=r"train\.learning_rate"):
        parse_section(FinetuneTrainConfig, {"learning_rate": -1}, "train")


def test_cache_pvc_needs_an_absolute_cache_dir(tmp_path):
    with pytest.raises(ConfigError, match=r"model: .*cache_pvc needs cache_dir"):
        load_finetune_config(write(tmp_path, BASE + "model: {cache_pvc: llm-cache}\n"))
    cfg = load_finetune_config(write(tmp_path, BASE + "model: {cache_pvc: llm-cache, cache_dir: /cache}\n"))
    assert cfg.model.cache_pvc == "llm-cache"
