"""params.yaml is validated against one schema; every mistake names the key and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tunepipe.config import load_params, load_schema, reference_markdown, sections, validate_params
from tunepipe.errors import ParamsError


def test_params_yaml_is_valid_and_equals_the_schema_defaults():
    # params.yaml shows every default explicitly; it must not drift from the schema's defaults.
    assert load_params(REPO / "params.yaml") == validate_params({})


def test_every_schema_key_has_a_description_and_default():
    def walk(node, prefix=""):
        for key, sub in node.get("properties", {}).items():
            assert sub.get("description"), f"{prefix}{key} has no description"
            assert "default" in sub, f"{prefix}{key} has no default"
            if sub.get("type") == "object" and key not in ("optimizer", "scheduler"):
                walk(sub, f"{prefix}{key}.")

    walk(load_schema())


def test_missing_keys_are_filled_from_defaults():
    params = validate_params({"train": {"max_epochs": 5}})
    assert params["train"]["max_epochs"] == 5
    assert params["train"]["batch_size"] == "auto"
    assert params["prune"]["sparsities"] == [0.2, 0.4, 0.6]


def test_unknown_key_names_the_key_suggests_a_fix_and_lists_allowed_keys():
    with pytest.raises(ParamsError) as info:
        validate_params({"train": {"max_epoch": 3}})
    message = str(info.value)
    assert "train.max_epoch: unknown key; did you mean 'max_epochs'?" in message
    assert "batch_size" in message  # the allowed keys are listed


def test_wrong_type_and_enum_are_explained():
    with pytest.raises(ParamsError) as info:
        validate_params({"train": {"batch_size": "big", "accelerator": "tpu"}})
    message = str(info.value)
    assert 'train.batch_size: expected an integer >= 1 or "auto", got "big".' in message
    assert 'train.accelerator: "tpu" is not allowed. Use one of: "auto", "cpu", "gpu"' in message


def test_out_of_range_value_is_reported():
    with pytest.raises(ParamsError, match=r"split.test_fraction: 0.7 is greater than or equal to the maximum of 0.5"):
        validate_params({"split": {"test_fraction": 0.7}})


def test_file_source_requires_a_path():
    with pytest.raises(ParamsError, match="data.path: required when data.source is 'file'"):
        validate_params({"data": {"source": "file"}})


def test_invalid_yaml_names_the_file(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ParamsError, match=str(bad)):
        load_params(bad)


def test_sections_passes_only_the_named_sections():
    params = validate_params({})
    assert set(yaml.safe_load(sections(params, "seed", "train"))) == {"seed", "train"}


def test_readme_parameter_reference_is_generated_from_the_schema():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert reference_markdown() in readme, "README's parameter table is stale: paste the output of `tunepipe params`"


def test_command_line_strings_are_read_as_the_types_the_schema_asks_for():
    # What Snakemake hands over for --config export='{latency_runs: 4, latency_batch_sizes: [1, 8]}' seed=7
    params = validate_params({"seed": 7, "export": {"latency_runs": "4", "latency_batch_sizes": ["1", "8"], "dynamo": "true"},
                              "train": {"devices": "2", "gradient_clip_val": "null"}, "data": {"labels": "null", "source": "file", "path": "x.csv"}})
    assert params["export"]["latency_runs"] == 4 and params["export"]["latency_batch_sizes"] == [1, 8]
    assert params["export"]["dynamo"] is True and params["train"]["devices"] == 2
    assert params["train"]["gradient_clip_val"] is None and params["data"]["labels"] is None
    assert validate_params({"train": {"devices": "auto"}})["train"]["devices"] == "auto"
    with pytest.raises(ParamsError, match='train.max_epochs: expected an integer >= 1 or "auto", got "three"'):
        validate_params({"train": {"max_epochs": "three"}})


def test_the_schema_ships_inside_the_package():
    # An installed tunepipe (a wheel, no checkout) must find its schema: it sits in the package and is package data.
    import tomllib

    import tunepipe.config

    assert tunepipe.config.SCHEMA_PATH.parent == Path(tunepipe.config.__file__).parent and tunepipe.config.SCHEMA_PATH.is_file()
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["tunepipe"]
    assert "config/params.schema.yaml" in package_data


def test_prune_scores_levels_with_its_own_batch_size():
    assert validate_params({})["prune"]["batch_size"] == 64
    assert validate_params({"evaluate": {"batch_size": 8}})["prune"]["batch_size"] == 64
    with pytest.raises(ParamsError, match="prune.batch_size: 0 is less than the minimum of 1"):
        validate_params({"prune": {"batch_size": 0}})
