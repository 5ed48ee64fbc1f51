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


@pytest.mark.parametrize("tile", ["[128]", "[]", "[128, 128, 128]"])
def test_a_systolic_tile_is_two_values(write_yaml, tile):
    with pytest.raises(ConfigError) as caught:
        load_scenario(write_yaml(MINIMAL), [f"hardware.systolic.tile={tile}"])
    message = str(caught.value)
    assert "hardware.systolic.tile:" in message and "a list of 2 items" in message
    with pytest.raises(ConfigError, match=r"hardware\.systolic\.tile\[1\]: got 0; expected a value of at least 1"):
        load_scenario(write_yaml(MINIMAL), ["hardware.systolic.tile=[128, 0]"])
    tile_schema = json_schema(Scenario)["properties"]["hardware"]["properties"]["systolic"]["properties"]["tile"]
    assert tile_schema["minItems"] == tile_schema["maxItems"] == 2


def test_a_yaml_alias_bomb_is_refused_before_it_is_expanded(write_yaml):
    # ten levels of nine aliases expand to over 9^10 nodes: walking them (to check or describe the value)
    # would take minutes and gigabytes; the loader counts them on the 42-node graph instead
    path = write_yaml(MINIMAL + "".join(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}' if i else '0'] * 9)}]\n" for i in range(10)))
    with pytest.raises(ConfigError) as caught:
        load_scenario(path)
    message = str(caught.value)
    assert message.startswith(str(path)) and "aliases expand to at most 100,000 nodes" in message
    expanded = int(message.rsplit("expand to ", 1)[1].rstrip(")").replace(",", ""))
    assert expanded > 9**10  # counted on the graph, not expanded
    with pytest.raises(ConfigError, match="an alias refers to a list or mapping it is inside"):
        load_scenario(write_yaml(MINIMAL + "description: &a [*a]\n"))


def test_a_few_aliases_still_load(write_yaml):
    text = MINIMAL.replace("system: {kind: single_device, steps: 2}", "system: &s {kind: single_device, steps: 2}")
    assert load_scenario(write_yaml(text + "run: {mode: full, eval_every: 1}\n")).system.steps == 2
    shared = "hardware: {base: edge_npu, nic: &nic {bandwidth: 25 Gb/s, latency: 2 us}}\n"
    assert load_scenario(write_yaml(MINIMAL.replace("hardware: edge_npu\n", shared))).hardware.nic.bandwidth == 25e9 / 8


def test_describing_a_huge_shared_value_stops_early():
    value: list = ["lol"]
    for _ in range(40):  # 9^40 strings once expanded: repr() would never end
        value = [value] * 9
    message = str(ConfigError("f.yaml", "description", value, "a string"))
    assert message.startswith("f.yaml: description: got [[[[") and "... (cut)" in message and len(message) < 250
    looped: list = [1]
    looped.append(looped)
    assert "got [1, [...]]" in str(ConfigError("f.yaml", "k", looped, "x"))


def test_a_document_nested_too_deep_is_a_clear_error(write_yaml):
    with pytest.raises(ConfigError, match=r"scenario\.yaml:1; expected a YAML document nested at most 100 levels deep"):
        load_scenario(write_yaml("[" * 1000 + "]" * 1000))
    # on the command line the value is taken as text, as any value YAML does not read
    assert load_scenario(write_yaml(MINIMAL), ["description=" + "[" * 1000]).description == "[" * 1000


def test_an_error_in_the_scenarios_own_network_names_the_scenario(write_yaml):
    network = "{dims: [{kind: switch, size: 2, bandwidth: 450 GB/s, latency: 0.5 us, efficiency: 2}]}"
    path = write_yaml(MINIMAL.replace("hardware: edge_npu", f"hardware: {{base: datacenter_npu, network: {network}}}"))
    with pytest.raises(ConfigError) as caught:
        load_scenario(path)
    assert str(caught.value).startswith(f"{path}: hardware.network.dims[0].efficiency: got 2")
    # a mistake in what the preset gave is still named against the preset
    write_yaml("name: p\nsystolic: {rows: 0, cols: 4, clock: 1 GHz}\n", "bad_preset.yaml")
    with pytest.raises(ConfigError, match=r"bad_preset\.yaml: hardware\.systolic\.rows"):
        load_scenario(write_yaml(MINIMAL.replace("hardware: edge_npu", "hardware: {base: bad_preset.yaml, nic: {}}")))


def test_a_network_of_another_topology_replaces_the_bases(write_yaml):
    switch = "{kind: switch, npus: 64, bandwidth: 100 Gb/s, latency: 1 us}"
    s = load_scenario(write_yaml(MINIMAL.replace("hardware: edge_npu", f"hardware: {{base: cluster_8x16, network: {switch}}}")))
    assert s.hardware.network.kind == "switch" and s.hardware.network.npus == 64
    assert s.hardware.network.model == "flow"  # the schema's default, not a key kept from the preset
    # without kind or dims it merges: the preset's dimensions stay, its model changes
    s = load_scenario(
        write_yaml(MINIMAL.replace("hardware: edge_npu", "hardware: {base: cluster_8x16, network: {model: ideal}}"))
    )
    assert s.hardware.network.kind == "dims" and [d.size for d in s.hardware.network.dims] == [8, 16]
    assert s.hardware.network.model == "ideal"


def test_base_is_not_followed_inside_a_model_or_preset_file(write_yaml):
    write_yaml("base: self.yaml\nhidden: [8]\n", "self.yaml")
    with pytest.raises(ConfigError) as caught:
        load_scenario(write_yaml(MINIMAL.replace("model: mlp_digits", "model: self.yaml")))
    message = str(caught.value)
    assert "self.yaml: model.base: got 'self.yaml'" in message and "no base in a model file" in message
    assert "model: {base: NAME, ...}" in message
    write_yaml("base: edge_npu\nname: mine\n", "mine.yaml")
    with pytest.raises(
        ConfigError, match=r"mine\.yaml: hardware\.base: got 'edge_npu'; expected no base in a hardware preset file"
    ):
        load_scenario(write_yaml(MINIMAL.replace("hardware: edge_npu", "hardware: {base: mine.yaml}")))


def test_an_override_steps_into_a_list_item(write_yaml):
    """`system.jobs[1].start=...` sets a key of the second job; an index past the list is a clear error."""
    path = write_yaml(
        "name: j\nhardware: datacenter_npu\nmodel: {kind: layers, layers: [{name: l, forward: 1 us, backward: 1 us, params: 1 KiB}]}\n"
        "system: {kind: jobs, jobs: [{name: a, system: {kind: data_parallel, replicas: 2}}, "
        "{name: b, system: {kind: data_parallel, replicas: 2}}]}\nrun: {mode: timing-only}\n"
    )
    scenario = load_scenario(path, ["system.jobs[1].start=3 ms", "system.jobs[0].system.replicas=4"])
    assert scenario.system.jobs[1].start == pytest.approx(3e-3) and scenario.system.jobs[0].system.replicas == 4
    with pytest.raises(ConfigError, match=r"an item of a list, but system.jobs is a list of 2 items"):
        load_scenario(path, ["system.jobs[2].start=1 ms"])
