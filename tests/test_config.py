"""Config loading and option parsing: both ``--experts`` forms, strict keys, one-line errors."""

from __future__ import annotations

import pytest

from mmolre_cli.config import build_config, deep_merge, load_yaml, merged_values, parse_encoders, parse_experts
from mmolre_cli.errors import DataError, UsageError


def test_experts_accepts_the_comma_form_and_the_repeated_form():
    assert parse_experts(["shared=4,rank=32,type=lowrank"]) == {"shared": 4, "rank": 32, "type": "lowrank"}
    assert parse_experts(["shared=4", "rank=32", "type=dense"]) == {"shared": 4, "rank": 32, "type": "dense"}


@pytest.mark.parametrize(
    "value, fragment",
    [
        ("shraed=4", "unknown key 'shraed'"),
        ("shared=four", "expected int"),
        ("shared=0", "at least 1"),
        ("rank=-3", "at least 1"),
        ("shared", "expected KEY=VALUE"),
    ],
)
def test_experts_rejects_bad_values_in_one_line(value, fragment):
    with pytest.raises(UsageError) as error:
        parse_experts([value])
    message = str(error.value)
    assert fragment in message and "--experts" in message and "\n" not in message


def test_unknown_expert_key_suggests_the_closest():
    with pytest.raises(UsageError, match="did you mean 'shared'"):
        parse_experts(["shraed=4"])


def test_encoder_option_sets_all_or_one_modality():
    assert parse_encoders(["transformer"]) == {"encoder": "transformer"}
    assert parse_encoders(["text=lstm", "audio=linear"]) == {"encoders": {"text": "lstm", "audio": "linear"}}


def test_flags_override_the_file(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model:\n  topk: 1\n  experts:\n    shared: 2\n    rank: 8\ntrain:\n  epochs: 3\n")
    values = deep_merge(load_yaml(path), {"model": {"experts": {"shared": 6}}})
    config = build_config(values)
    assert (config.model.experts.shared, config.model.experts.rank, config.model.topk) == (6, 8, 1)
    assert config.train.epochs == 3


@pytest.mark.parametrize(
    "values, fragment",
    [
        ({"model": {"topk": 5}}, "topk (5) cannot exceed"),
        ({"model": {"expert": {}}}, "unknown key 'expert'"),
        ({"model": {"d_model": "wide"}}, "config: model.d_model: expected int"),
        ({"train": {"epochs": 0}}, "train.epochs must be at least 1"),
        ({"model": {"tasks": ["sa", "mer"]}}, "unknown task 'mer'"),
    ],
)
def test_bad_configs_name_the_key(values, fragment):
    with pytest.raises(UsageError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        build_config(values)


def test_yaml_that_is_not_a_mapping_is_refused(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(UsageError, match="bad.yaml: expected a mapping"):
        load_yaml(path)


def test_a_yaml_section_with_every_key_commented_out_is_empty(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("model:\n  # topk: 3\ntrain:\n  lr: 0.01\n")
    assert build_config(load_yaml(path)).model == build_config({}).model


def test_a_config_files_data_path_is_relative_to_the_file_not_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "configs").mkdir()
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "mosi.h5").write_bytes(b"")
    config = tmp_path / "configs" / "mosi.yaml"
    config.write_text("data: ../data/mosi.h5\n")
    monkeypatch.chdir(tmp_path / "data")  # where ../data/mosi.h5 names nothing
    assert merged_values(config, {})["data"] == str(tmp_path / "configs" / ".." / "data" / "mosi.h5")
    absolute = tmp_path / "data" / "mosi.h5"
    config.write_text(f"data: {absolute}\n")
    assert load_yaml(config)["data"] == str(absolute)
    config.write_text("data: data/mosi.h5\n")  # right from the working directory's parent, wrong from the file's
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=r"mosi.yaml: data: data/mosi.h5: file not found \(relative to the config"):
        merged_values(config, {})
    assert merged_values(config, {"data": str(absolute)})["data"] == str(absolute)  # --data overrides it
