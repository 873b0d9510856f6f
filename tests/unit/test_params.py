import copy

import pytest

from mlpipe.core.errors import PipelineError
from mlpipe.core.params import load_params, parse_params


def changed(params_dict: dict, section: str, **values) -> dict:
    data = copy.deepcopy(params_dict)
    data[section].update(values)
    return data


def test_project_params_load(params_dict):
    params = parse_params(params_dict)
    assert params.train.min_lr < params.train.learning_rate
    assert len(params.train.units) == len(params.train.dropout)


def test_unknown_key_is_named(params_dict):
    with pytest.raises(PipelineError, match=r"unknown key 'train\.learning_rat'"):
        parse_params(changed(params_dict, "train", learning_rat=0.1))


def test_unknown_section_is_named(params_dict):
    data = copy.deepcopy(params_dict) | {"trian": {}}
    with pytest.raises(PipelineError, match="unknown key 'trian'"):
        parse_params(data)


def test_missing_nested_key_is_named(params_dict):
    data = copy.deepcopy(params_dict)
    del data["evaluate"]["hgb"]["max_iter"]
    with pytest.raises(PipelineError, match=r"missing key 'evaluate\.hgb\.max_iter'"):
        parse_params(data)


def test_min_lr_must_be_below_learning_rate(params_dict):
    with pytest.raises(PipelineError, match="min_lr .* must be below learning_rate"):
        parse_params(changed(params_dict, "train", min_lr=0.01, learning_rate=0.001))


def test_dropout_must_match_units(params_dict):
    with pytest.raises(PipelineError, match="dropout has 1 entries but units has 4"):
        parse_params(changed(params_dict, "train", dropout=[0.1]))


def test_column_in_two_roles(params_dict):
    data = copy.deepcopy(params_dict)
    data["preprocess"]["categorical"].append("age")
    with pytest.raises(PipelineError, match="'age' is declared both numeric and categorical"):
        parse_params(data)


def test_wrong_type_is_named(params_dict):
    with pytest.raises(PipelineError, match=r"train\.batch_size"):
        parse_params(changed(params_dict, "train", batch_size="big"))


def test_allowed_only_for_strings(params_dict):
    data = copy.deepcopy(params_dict)
    data["validate"]["columns"]["age"]["allowed"] = ["1"]
    with pytest.raises(PipelineError, match=r"validate\.columns\.age.*allowed applies only"):
        parse_params(data)


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(PipelineError, match="params file not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "params.yaml"
    bad.write_text("base: [unclosed\n")
    with pytest.raises(PipelineError, match="not valid YAML"):
        load_params(bad)
