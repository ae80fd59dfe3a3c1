from __future__ import annotations

import pytest

from mlpipeline.config import PipelineConfig, TrainConfig, load_config, parse_section
from mlpipeline.errors import ConfigError


def write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


BASE = """
name: demo
data: {source: churn, target: churn}
registry: {model_name: demo}
"""


def test_every_shipped_config_loads(repo_root):
    paths = sorted((repo_root / "configs").glob("*.yaml"))
    assert paths, "no configs shipped"
    for p in paths:
        assert isinstance(load_config(p), PipelineConfig)


def test_defaults_fill_missing_sections(tmp_path):
    cfg = load_config(write(tmp_path, BASE))
    assert cfg.split.test_size == 0.2 and cfg.tune.n_trials == 20 and cfg.train.accelerator is None


def test_unknown_field_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"train\.epochz: unknown field"):
        load_config(write(tmp_path, BASE + "train: {epochz: 3}\n"))


def test_bad_value_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"split\.test_size"):
        load_config(write(tmp_path, BASE + "split: {test_size: 1.5}\n"))


def test_cross_field_rule_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"split.*at least 10%"):
        load_config(write(tmp_path, BASE + "split: {test_size: 0.5, validation_size: 0.45}\n"))


def test_missing_required_section(tmp_path):
    with pytest.raises(ConfigError, match=r"registry: Field required"):
        load_config(write(tmp_path, "name: x\ndata: {source: churn, target: churn}\n"))


def test_not_yaml_and_not_mapping_and_missing(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "name: [unclosed\n"))
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "absent.yaml")


def test_section_roundtrip_through_kfp_json(churn_config):
    # KFP passes dict parameters as protobuf Structs: ints come back as floats, None is omitted.
    sections = churn_config.sections()
    assert all(v is not None for v in sections["train"].values())
    train = dict(sections["train"], seed=float(sections["train"]["seed"]))
    assert parse_section(TrainConfig, train, "train").seed == 42


def test_parse_section_names_section():
    with pytest.raises(ConfigError, match=r"invalid config: train\.torch\.max_epochs"):
        parse_section(TrainConfig, {"torch": {"max_epochs": 0}}, "train")


def test_derived_feature_arity(tmp_path):
    text = BASE + "features: {derived: [{name: r, kind: ratio, columns: [a]}]}\n"
    with pytest.raises(ConfigError, match="features.derived.0.*takes 2 column"):
        load_config(write(tmp_path, text))
