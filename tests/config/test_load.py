import json

import pytest

from hwsim.cli import main
from hwsim.config import Scenario, json_schema, load_scenario
from hwsim.config.load import resolve_raw
from hwsim.errors import ConfigError

MINIMAL = """
name: t
hardware: edge_npu
model: mlp_digits
system: {kind: single_device, steps: 2}
"""


def test_presets_and_models_resolve_by_name(write_yaml):
    s = load_scenario(write_yaml(MINIMAL))
    assert isinstance(s, Scenario)
    assert s.hardware.name == "edge_npu"
    assert s.hardware.systolic.clock == 1e9
    assert s.hardware.memory["params"].capacity == 256 * 1024
    assert s.model.hidden == (128, 64)


def test_base_mapping_merges_and_overrides(write_yaml):
    path = write_yaml(MINIMAL.replace("hardware: edge_npu", "hardware: {base: edge_npu, nic: {bandwidth: 25 Gb/s}}"))
    s = load_scenario(path)
    assert s.hardware.nic.bandwidth == 25e9 / 8
    assert s.hardware.nic.latency == 2e-6  # kept from the preset


def test_model_by_path_relative_to_the_scenario(write_yaml, root):
    text = (root / "models" / "mlp_digits.yaml").read_text().replace("[128, 64]", "[16]")
    write_yaml(text, "tiny.yaml")
    s = load_scenario(write_yaml(MINIMAL.replace("model: mlp_digits", "model: tiny.yaml")))
    assert s.model.hidden == (16,)


def test_dotted_overrides_parse_values_as_yaml(write_yaml):
    s = load_scenario(write_yaml(MINIMAL), ["system.steps=50", 'hardware.nic.bandwidth="25 Gb/s"', "model.hidden=[32, 16]"])
    assert s.system.steps == 50
    assert s.hardware.nic.bandwidth == 25e9 / 8
    assert s.model.hidden == (32, 16)


def test_seed_override(write_yaml):
    assert load_scenario(write_yaml(MINIMAL), seed=7).seed == 7


def test_the_schema_object_is_frozen(write_yaml):
    s = load_scenario(write_yaml(MINIMAL))
    with pytest.raises(AttributeError):
        s.seed = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "overrides", "where", "key", "expected"),
    [
        (MINIMAL + "bogus: 1\n", [], "scenario.yaml", "bogus", "known keys"),
        (
            MINIMAL.replace("hardware: edge_npu", "hardware: {base: edge_npu, nic: {bandwidth: 25 GB}}"),
            [],
            "scenario.yaml",
            "hardware.nic.bandwidth",
            "rate",
        ),
        (
            MINIMAL.replace("hardware: edge_npu", "hardware: {base: edge_npu, nic: {bandwidth: 25}}"),
            [],
            "scenario.yaml",
            "hardware.nic.bandwidth",
            "needs its unit",
        ),
        (
            MINIMAL.replace(
                "hardware: edge_npu",
                "hardware: {base: edge_npu, memory: {params: {precision: int8, capacity: -1 MiB, bandwidth: 1 GB/s}}}",
            ),
            [],
            "scenario.yaml",
            "hardware.memory.params.capacity",
            "greater than 0",
        ),
        (MINIMAL.replace("model: mlp_digits", "model: nothere.yaml"), [], "scenario.yaml", "model", "model file"),
        (MINIMAL, ["system.stepz=5"], "override system.stepz=5", "system.stepz", "known keys"),
        (MINIMAL, ["model.hidden=[0]"], "override model.hidden=[0]", "model.hidden[0]", "at least 1"),
        (MINIMAL, ["system.kind=nope"], "override system.kind=nope", "system.kind", "single_device"),
        (MINIMAL, ["hardware=nope"], "override hardware=nope", "hardware", "edge_npu"),
        (MINIMAL, ["system.steps"], "command line", "system.steps", "dotted.key=value"),
        (
            MINIMAL.replace("system: {kind: single_device, steps: 2}", "system: {kind: single_device, steps: 2.5}"),
            [],
            "scenario.yaml",
            "system.steps",
            "whole number",
        ),
    ],
)
def test_mistakes_name_file_key_and_expectation(write_yaml, text, overrides, where, key, expected):
    with pytest.raises(ConfigError) as caught:
        load_scenario(write_yaml(text), overrides)
    message = str(caught.value)
    assert where in message and key in message and expected in message


def test_errors_inside_a_model_file_name_that_file(write_yaml, root):
    write_yaml((root / "models" / "mlp_digits.yaml").read_text().replace("classes: 10", "classes: 1"), "bad_model.yaml")
    with pytest.raises(ConfigError, match=r"bad_model\.yaml: model\.classes"):
        load_scenario(write_yaml(MINIMAL.replace("model: mlp_digits", "model: bad_model.yaml")))


def test_yaml_syntax_error_names_the_line(write_yaml):
    with pytest.raises(ConfigError, match=r"scenario\.yaml:3:\d+; expected valid YAML"):
        load_scenario(write_yaml("name: t\nhardware: edge_npu\n  model: [\n"))


def test_missing_scenario_file(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_scenario(tmp_path / "absent.yaml")


def test_schema_command_prints_a_json_schema_that_accepts_shipped_scenarios(capsys, root):
    import jsonschema  # the test extra has it

    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["properties"]["hardware"]["properties"]["nic"]["properties"]["bandwidth"]["type"] == "string"
    validator = jsonschema.Draft202012Validator(schema)
    for path in sorted((root / "scenarios").glob("*.yaml")):
        if path.stem.startswith("sweep_"):  # sweep files name a scenario; they are not one
            continue
        raw = resolve_raw(path)
        raw["hardware"].pop("base", None)
        errors = list(validator.iter_errors(raw))
        assert not errors, f"{path.name}: {errors[0].message}"
    bad = resolve_raw(root / "scenarios" / "quickstart.yaml", ["system.bogus=1"])
    assert list(validator.iter_errors(bad)), "the schema must reject unknown keys too"


def test_json_schema_marks_required_keys():
    schema = json_schema(Scenario)
    assert {"name", "hardware", "model", "system"} <= set(schema["required"])
    assert schema["additionalProperties"] is False
