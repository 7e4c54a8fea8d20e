"""lrgym.spec: every env setting and its default live once, in the settings dataclasses."""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.envs.registration import EnvSpec

import lrgym
from lrgym.envs import StepSizeControlDynamicEnv, StepSizeControlEnv
from lrgym.errors import InvalidConfigError, LrgymError, UnknownSettingError
from lrgym.spec import BanditSettings, DynamicSettings, EnvSettings

IDS = sorted([*lrgym.ENV_KWARGS, *lrgym.DYNAMIC_ENV_KWARGS])
CHEAP = {"dataset": "toy", "architecture": "mlp", "widths": [[8, 32]]}
"""Overrides that let a bare env build without image data."""


def settings_type(env_id: str) -> type[EnvSettings]:
    return DynamicSettings if env_id in lrgym.DYNAMIC_ENV_KWARGS else BanditSettings


def test_the_env_signatures_list_no_setting() -> None:
    """The settings and their defaults are the dataclass's alone."""
    for env in (StepSizeControlEnv, StepSizeControlDynamicEnv):
        params = inspect.signature(env.__init__).parameters
        assert set(params) == {"self", "render_mode", "settings"}


@pytest.mark.parametrize("env", [StepSizeControlEnv, StepSizeControlDynamicEnv])
def test_a_bare_env_reports_the_dataclass_defaults(env: type[Any]) -> None:
    kind = BanditSettings if env is StepSizeControlEnv else DynamicSettings
    base = env(**CHEAP)
    assert base.settings == kind(**CHEAP)
    for field in dataclasses.fields(kind):
        if field.name not in CHEAP:
            assert getattr(base.settings, field.name) == field.default, field.name
            attribute = getattr(base, field.name)  # env.unwrapped.<setting> reads it too
            assert np.array_equal(np.asarray(attribute), np.asarray(field.default)), field.name
    assert base.eval_size == 1000 and base.lr_bounds == (1e-8, 10.0)


def test_the_two_envs_differ_in_the_divergence_penalty_only() -> None:
    shared = {f.name for f in dataclasses.fields(EnvSettings)}
    bandit, dynamic = BanditSettings(), DynamicSettings()
    differ = {n for n in shared if getattr(bandit, n) != getattr(dynamic, n)}
    assert differ == {"divergence_penalty"}
    assert (bandit.divergence_penalty, dynamic.divergence_penalty) == (-1.0, -9.0)


@pytest.mark.parametrize(
    ("key", "match"),
    [("eval_szie", "eval_size"), ("theta_centre", "theta_center"), ("stpes", "steps")],
)
def test_an_unknown_key_names_the_close_match(key: str, match: str) -> None:
    with pytest.raises(UnknownSettingError, match=f"did you mean '{match}'"):
        gym.make("StepSizeControl-Toy-v0", **{key: 1})
    with pytest.raises(TypeError, match=f"unknown env setting '{key}'"):  # as before: TypeError
        StepSizeControlEnv(**{key: 1})
    assert issubclass(UnknownSettingError, LrgymError)


def test_a_bandit_setting_is_unknown_to_the_dynamic_env() -> None:
    with pytest.raises(UnknownSettingError, match="unknown env setting 'theta_scale'"):
        DynamicSettings.from_kwargs({"theta_scale": [1, 1, 1, 1, 1]})
    with pytest.raises(UnknownSettingError, match="settings of BanditSettings are dataset"):
        BanditSettings.from_kwargs({"zzz": 1})


@pytest.mark.parametrize(
    ("kind", "kwargs", "message"),
    [
        (BanditSettings, {"eval_size": 0}, "eval_size=0"),
        (BanditSettings, {"test_size": 0}, "test_size=0"),
        (BanditSettings, {"eval_points": 2.5}, "eval_points=2.5"),
        (BanditSettings, {"theta_center": [0, 0, 0]}, "theta_center=[0, 0, 0]"),
        (BanditSettings, {"theta_scale": [1, 1, 1, 1, 0]}, "theta_scale=[1.0, 1.0, 1.0, 1.0, 0.0]"),
        (BanditSettings, {"divergence_penalty": -math.inf}, "divergence_penalty=-inf"),
        (BanditSettings, {"lr_bounds": [0.0, 1.0]}, "lr_bounds=[0.0, 1.0]"),
        (BanditSettings, {"dataset": "imagenet"}, "dataset='imagenet'"),
        (BanditSettings, {"gamma": 1.5}, "gamma"),
        (DynamicSettings, {"control_interval": 2.5}, "control_interval=2.5"),
        (DynamicSettings, {"action_mode": "log"}, "'absolute', 'multiplicative'"),
        (DynamicSettings, {"max_factor": math.inf}, "max_factor=inf"),
    ],
)
def test_a_bad_value_names_field_and_value(
    kind: type[EnvSettings], kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidConfigError, match=message.replace("[", r"\[")):
        kind.from_kwargs(kwargs)


def test_lists_and_tuples_make_the_same_settings() -> None:
    lists = BanditSettings(steps=[10, 20], theta_center=[0, 0, 0, 0, -4], widths=[[2, 9]] * 3)  # type: ignore[arg-type]
    tuples = BanditSettings(steps=(10, 20), theta_center=(0, 0, 0, 0, -4), widths=((2, 9),) * 3)
    assert lists == tuples and lists.steps == (10, 20) and lists.theta_center[4] == -4.0
    assert hash(lists) == hash(tuples)  # frozen


@pytest.mark.parametrize("env_id", IDS)
def test_the_registered_kwargs_round_trip_and_build_the_same_settings(env_id: str) -> None:
    spec = gym.spec(env_id)
    assert EnvSpec.from_json(spec.to_json()) == spec
    full = {**lrgym.ENV_KWARGS, **lrgym.DYNAMIC_ENV_KWARGS}[env_id]
    assert json.loads(json.dumps(full)) == full  # JSON-serialisable
    kind = settings_type(env_id)
    from_spec = kind.from_kwargs(spec.kwargs)
    assert kind.from_kwargs(json.loads(json.dumps(full))) == from_spec
    assert from_spec.to_kwargs() == full
    assert set(spec.kwargs) < set(full)  # the id states only what it changes (and its dataset)
    for key, value in spec.kwargs.items():
        default = next(f.default for f in dataclasses.fields(kind) if f.name == key)
        assert key == "dataset" or json.loads(json.dumps(default)) != value, key


@pytest.mark.parametrize("env_id", ["StepSizeControl-Toy-v0", "StepSizeControl-Dynamic-Toy-v0"])
def test_gym_make_with_the_public_kwargs_builds_the_same_env(env_id: str) -> None:
    full = {**lrgym.ENV_KWARGS, **lrgym.DYNAMIC_ENV_KWARGS}[env_id]
    assert gym.make(env_id, **full).unwrapped.settings == gym.make(env_id).unwrapped.settings
