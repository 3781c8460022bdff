"""The schema engine: every error at once by key path, defaults, moved keys, tables generated from
settings dataclasses, and the TOML writer."""

import copy
import dataclasses
import math
import tomllib

import pytest

from ndjax._settings import setting
from ndjax.cli import _common
from ndjax.cli._main import validate_config
from ndjax.cli._schema import (
    ConfigError,
    Key,
    Table,
    Tables,
    parse,
    settings_table,
    settings_value,
    validate,
)
from ndjax.cli._toml import dump_toml

SIMULATE = {
    "kind": "simulate",
    "models": [
        {"type": "hh", "t1": 5.0, "input": {"type": "constant", "amplitude": 10.0}},
        {"type": "neurodyn", "t1": 2e-3, "input": {"type": "constant", "amplitude": 0.0}},
    ],
}


def errors_of(schema, raw) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        validate(schema, raw)
    return dict(info.value.errors)


def test_config_error_is_value_error():
    assert issubclass(ConfigError, ValueError)


def test_invalid_toml_is_a_config_error():
    with pytest.raises(ConfigError, match="not valid TOML"):
        parse(Table({}), 'kind = "simulate"\n[[models]\n')


def test_the_input_is_not_modified():
    raw = copy.deepcopy(SIMULATE)
    validate_config(raw)
    assert raw == SIMULATE


def test_ints_become_floats_where_numbers_go():
    raw = copy.deepcopy(SIMULATE)
    raw["models"][0].update(t1=5, x0=[0, 0, 0, 0])
    cfg = validate_config(raw)
    assert type(cfg["models"][0]["t1"]) is float
    assert all(type(x) is float for x in cfg["models"][0]["x0"])


def test_a_new_schema_is_built_from_the_blocks_without_touching_the_validator():
    schema = Table(
        {
            **_common.COMMON,
            "solver": _common.SOLVER,
            "steps": Key("int", 100, "optimiser steps", ge=1),
            "models": Tables(_common.MODEL),
        }
    )
    cfg = validate(schema, {"models": [{"type": "hh", "t1": 1.0}]})
    assert cfg["steps"] == 100 and cfg["solver"]["name"] == "tsit5"
    errors = errors_of(schema, {"stesp": 5, "models": [{"type": "hh", "t1": 1.0}]})
    assert "did you mean 'steps'" in errors["stesp"]
    # Table.extend adds keys to an existing schema
    longer = _common.SOLVER.extend(chunks=Key("int", 1, "resume chunks", ge=1))
    assert list(longer.fields)[-1] == "chunks" and "chunks" not in _common.SOLVER.fields


def test_defaults_are_read_from_the_code():
    import inspect

    import ndjax
    from ndjax import _simulate

    hh = inspect.signature(ndjax.hh_params).parameters
    for key, field in _common.HH_PARAMS.fields.items():
        assert field.default == hh[key].default, key
    nd = inspect.signature(ndjax.nd_chip).parameters
    for key in ("v_ref", "i_voltage", "i_master", "i_ref", "capacitance_scaling", "digital"):
        assert _common.ND_PARAMS.fields[key].default == nd[key].default, key
    assert _common.SOLVER.fields["rtol"].default == _simulate.DEFAULT_RTOL
    assert _common.SOLVER.fields["max_steps"].default == _simulate.DEFAULT_MAX_STEPS


# ---- tables generated from settings dataclasses ----------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Inner:
    """An inner stage."""

    steps: int = setting(10, "steps (0: none)", ge=0, le=100)
    rate: float = setting(0.5, "a rate", gt=0)
    mode: str = setting("fast", "how", choices=("fast", "slow"))
    on: bool = setting(True, "run it")
    grid: tuple[float, ...] = setting((0.5, 1.5), "a grid", gt=0, le=10, elem="float", min_len=1)


@dataclasses.dataclass(frozen=True)
class Outer:
    """The whole thing."""

    n: int = setting(3, "how many", ge=1)
    inner: Inner = dataclasses.field(default_factory=Inner)


OUTER = settings_table(Outer, moved={"inner_steps": "outer.inner.steps", "flag": "outer.inner.on"})
SCHEMA = Table({"outer": OUTER})


def test_generated_table_types_docs_and_bounds():
    inner = OUTER.fields["inner"]
    assert isinstance(inner, Table) and inner.doc == "An inner stage." and OUTER.doc == "The whole thing."
    types = {k: f.type for k, f in inner.fields.items()}
    assert types == {"steps": "int", "rate": "float", "mode": "str", "on": "bool", "grid": "array"}
    steps, grid = inner.fields["steps"], inner.fields["grid"]
    assert (steps.default, steps.doc, steps.ge, steps.le) == (10, "steps (0: none)", 0, 100)
    assert inner.fields["mode"].choices == ("fast", "slow")
    assert (grid.default, grid.shape, grid.gt, grid.min_len) == ([0.5, 1.5], (None,), 0, 1)


def test_generated_table_round_trips_to_the_dataclass():
    cfg = validate(SCHEMA, {})
    assert settings_value(Outer, cfg["outer"]) == Outer()
    cfg = validate(SCHEMA, {"outer": {"n": 2, "inner": {"rate": 2, "grid": [1, 2, 3], "mode": "slow"}}})
    got = settings_value(Outer, cfg["outer"])
    assert got == Outer(n=2, inner=Inner(rate=2.0, grid=(1.0, 2.0, 3.0), mode="slow"))
    assert type(got.inner.rate) is float and type(got.inner.grid) is tuple


BAD_SETTINGS = {
    "bound from the dataclass": ({"inner": {"steps": 101}}, "outer.inner.steps", "in 0..100"),
    "exclusive bound": ({"inner": {"rate": 0.0}}, "outer.inner.rate", "> 0"),
    "bound on a list entry": ({"inner": {"grid": [1.0, 11.0]}}, "outer.inner.grid[1]", "<= 10"),
    "too short a list": ({"inner": {"grid": []}}, "outer.inner.grid", "at least 1"),
    "a choices field": ({"inner": {"mode": "fsat"}}, "outer.inner.mode", "did you mean 'fast'"),
    "wrong type: float for an int": ({"n": 2.0}, "outer.n", "integer"),
    "wrong type: string for a bool": ({"inner": {"on": "yes"}}, "outer.inner.on", "true or false"),
    "wrong type: value for a table": ({"inner": 3}, "outer.inner", "table"),
    "unknown key, suggested": ({"inner": {"step": 3}}, "outer.inner.step", "did you mean 'steps'"),
    "moved key": ({"inner_steps": 3}, "outer.inner_steps", "moved to outer.inner.steps"),
    "moved key, misspelt": ({"inner_stesp": 3}, "outer.inner_stesp", "(it moved to outer.inner.steps)"),
}


@pytest.mark.parametrize("case", list(BAD_SETTINGS), ids=list(BAD_SETTINGS))
def test_generated_table_errors_name_the_key(case):
    raw, path, words = BAD_SETTINGS[case]
    errors = errors_of(SCHEMA, {"outer": raw})
    assert path in errors, errors
    assert words in errors[path], errors[path]


def test_a_value_that_became_a_table_says_where_it_moved():
    moved = Table({"inner": settings_table(Inner)}, moved={"inner": "inner.on"})
    errors = errors_of(moved, {"inner": False})
    assert errors == {"inner": "moved to inner.on"}
    with pytest.raises(ConfigError, match="inner: moved to inner.on"):
        validate(moved, {"inner": False})


def test_moved_keys_are_reported_with_every_other_error():
    errors = errors_of(SCHEMA, {"outer": {"inner_steps": 3, "flag": True, "n": 0, "inner": {"rate": -1}}})
    assert set(errors) == {"outer.inner_steps", "outer.flag", "outer.n", "outer.inner.rate"}
    assert errors["outer.flag"] == "moved to outer.inner.on"


def test_a_settings_field_without_a_spec_is_a_schema_error():
    @dataclasses.dataclass(frozen=True)
    class Plain:
        x: int = 3

    with pytest.raises(TypeError, match="Plain.x is not declared"):
        settings_table(Plain)


# ---- the TOML writer -------------------------------------------------------------------------------


def test_round_trip_of_the_written_config():
    raw = copy.deepcopy(SIMULATE)
    raw.update(name='round trip "quoted" \\ name', description="line one\nline two\ttab",
               solver={"dt0": 1e-3, "name": "dopri8"})  # fmt: skip
    raw["models"][0]["input"] = {"type": "step", "amplitude": 10, "t_on": 1.0}  # t_off = inf by default
    raw["models"][1]["input"] = {"type": "pulses", "amplitude": 1e-9, "width": 1e-4, "period": 5e-4,
                                 "n_pulses": 3}  # fmt: skip
    raw["models"][1]["mismatch"] = {"sigma": 0.15, "seed": 3}
    raw["models"].append(
        {"type": "neurodyn", "t1": 1e-3, "params": {"digital": False, "dg": [1e-7, 0.0, 3e-10]}}
    )
    cfg = validate_config(raw)
    from ndjax.cli._main import ROOT, parse_config

    text = dump_toml(cfg, ROOT, header="a header")
    assert tomllib.loads(text) == cfg  # the writer is valid TOML and exact (floats, inf, strings)
    assert validate_config(tomllib.loads(text)) == cfg  # and re-validating changes nothing
    assert parse_config(dump_toml(cfg)) == cfg  # with or without doc comments
    assert "# sodium conductance" in text and math.isinf(cfg["models"][0]["input"]["t_off"])
    assert "[models.params]  # ndjax.hh_params(...)" in text  # table docs too


def test_writer_comments_come_from_the_field_docs():
    cfg = validate(SCHEMA, {})
    text = dump_toml(cfg, SCHEMA)
    assert "[outer.inner]  # An inner stage." in text
    assert "steps = 10  # steps (0: none); in 0..100" in text
    assert "mode = \"fast\"  # how; one of 'fast', 'slow'" in text
    assert tomllib.loads(text) == cfg
