"""Controller files, one type per kind: what ``load_controller`` returns for each kind, the one
question every consumer asks (``controller_for``), the JSON each writes, and Stable-Baselines3
kept out of ``import lrgym`` (its module loads with a policy file, SB3 itself with the model)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import lrgym
from lrgym.controllers.files import (
    ContextualPolicyFile,
    ControllerFileError,
    ControllerKindError,
    LogLinearFile,
    PerStepPolicyFile,
    SavedController,
)
from lrgym.errors import InvalidConfigError
from lrgym.jsonfile import file_sha256

OLD = Path(__file__).resolve().parent / "data" / "v0.1.0"
KINDS = {"reps": LogLinearFile, "ppo": ContextualPolicyFile, "ppo-dyn": PerStepPolicyFile}


def never() -> np.ndarray:
    raise AssertionError("a log-linear file read the task's starting features")


@pytest.mark.slow
def test_importing_lrgym_leaves_stable_baselines3_out_until_a_policy_model_is_used() -> None:
    script = f"""
import sys
import lrgym
loaded = lambda: {{"sb3", "lrgym.controllers.sb3_policy"}} & {{
    "sb3" if m in ("stable_baselines3", "sb3_contrib") else m for m in sys.modules}}
assert not loaded(), loaded()
lrgym.load_controller({str(OLD / "reps" / "controller.json")!r})
assert not loaded(), loaded()
lrgym.load_controller({str(OLD / "ppo" / "controller.json")!r})
assert loaded() == {{"lrgym.controllers.sb3_policy"}}, loaded()
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("run", list(KINDS))
def test_a_file_of_0_1_0_loads_as_its_kind_and_saves_to_the_same_bytes(
    run: str, tmp_path: Path
) -> None:
    path = OLD / run / "controller.json"
    saved = lrgym.load_controller(path)
    assert type(saved) is KINDS[run] and isinstance(saved, SavedController)
    assert json.loads(path.read_text())["version"] == saved.format_version
    assert lrgym.save_controller(saved, tmp_path / "c.json").read_text() == path.read_text()
    assert lrgym.load_controller(tmp_path / "c.json") == saved


def test_a_log_linear_file_is_its_theta_on_every_task() -> None:
    saved = lrgym.load_controller(OLD / "reps" / "controller.json")
    assert isinstance(saved, LogLinearFile)
    for controller in (saved.controller(), saved.controller_for(never)):
        assert controller.theta.tolist() == list(saved.theta)
    assert saved.describe() == f"theta = {np.round(saved.theta, 4).tolist()}"


def test_a_contextual_policy_maps_the_starting_features_to_theta() -> None:
    saved = lrgym.load_controller(OLD / "ppo" / "controller.json")
    assert isinstance(saved, ContextualPolicyFile)
    start = np.array([-8.0, -3.0, 1.0, 0.5, 1.0], dtype=np.float32)
    action, _ = saved.model.predict(start, deterministic=True)
    expected = np.array([0, 0, 0, 0, -5.0]) + np.array([1, 1, 1, 1, 10.0]) * np.clip(action, -1, 1)
    np.testing.assert_allclose(saved.controller_for(start).theta, expected, rtol=1e-6)
    calls: list[int] = []

    def starting_features() -> np.ndarray:
        calls.append(1)
        return start

    lazily = saved.controller_for(starting_features)
    assert calls == [1] and lazily.theta.tolist() == saved.theta_for(start).tolist()
    with pytest.raises(ControllerKindError, match="contextual policy") as raised:
        saved.controller()  # ControlledLR's question: no task at hand
    assert isinstance(raised.value, ControllerFileError)
    assert isinstance(raised.value, InvalidConfigError)
    model = torch.nn.Linear(3, 2)
    with pytest.raises(InvalidConfigError, match="contextual policy"):
        lrgym.ControlledLR(model, torch.optim.SGD(model.parameters(), lr=0.1), saved)
    assert saved.describe() == "PPO contextual policy models/model-000016.zip"


def test_a_per_step_policy_acts_on_normalised_observations_and_is_no_controller() -> None:
    saved = lrgym.load_controller(OLD / "ppo-dyn" / "controller.json")
    assert isinstance(saved, PerStepPolicyFile)
    scaling = saved.policy["observation_normalization"]
    obs = np.linspace(-12.0, 3.0, 8).astype(np.float32)
    scaled = (obs - np.array(scaling["mean"])) / np.sqrt(np.array(scaling["var"]) + 1e-8)
    action, _ = saved.model.predict(np.clip(scaled, -10, 10).astype(np.float32), deterministic=True)
    assert saved.act(obs).tolist() == np.asarray(action, dtype=np.float32).tolist()
    for use in (saved.controller, lambda: saved.controller_for(np.zeros(5))):
        with pytest.raises(ControllerKindError, match="per-step policy"):
            use()


def test_a_policy_model_is_checked_before_it_is_unpickled(tmp_path: Path) -> None:
    shutil.copytree(OLD / "ppo", tmp_path / "ppo")
    model = tmp_path / "ppo" / "models" / "model-000016.zip"
    model.write_bytes(model.read_bytes() + b"x")
    saved: Any = lrgym.load_controller(tmp_path / "ppo" / "controller.json")
    with pytest.raises(ControllerFileError, match="does not match"):
        saved.model  # noqa: B018
    model.unlink()
    with pytest.raises(ControllerFileError, match="missing"):
        saved.model  # noqa: B018


@pytest.mark.parametrize(
    ("library", "algorithm", "module", "extra"),
    [("stable-baselines3", "PPO", "stable_baselines3", "sb3"),
     ("sb3-contrib", "ARS", "sb3_contrib", "sb3-contrib")],
)  # fmt: skip
def test_a_policy_without_its_library_names_the_extra_to_install(
    library: str,
    algorithm: str,
    module: str,
    extra: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "model.zip").write_bytes(b"not unpickled")
    policy = {"library": library, "algorithm": algorithm, "model": "model.zip"}
    policy["sha256"] = file_sha256(tmp_path / "model.zip")
    saved = PerStepPolicyFile(policy=policy, env_id="x", path=tmp_path / "controller.json")
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    with pytest.raises(ControllerFileError, match=rf'pip install "lrgym\[{extra}\]"'):
        saved.model  # noqa: B018


def test_each_kind_writes_its_format_version_and_policy_kind(tmp_path: Path) -> None:
    reference = {"library": "stable-baselines3", "algorithm": "SAC", "model": "m", "sha256": "0"}
    per_step = PerStepPolicyFile(policy=reference, env_id="StepSizeControl-Dynamic-Toy-v0")
    contextual = ContextualPolicyFile(
        policy={**reference, "theta_center": [0.0] * 5, "theta_scale": [1.0] * 5}, env_id="x"
    )
    log_linear = LogLinearFile(theta=[0.0] * 5, theta_cov=np.eye(5), env_id="x")
    for saved, version, kind in ((per_step, 3, "per-step"), (contextual, 2, None)):
        content = json.loads(lrgym.save_controller(saved, tmp_path / "c.json").read_text())
        assert content["version"] == version and content["policy"].get("kind") == kind
        assert content["theta"] is None and content["theta_cov"] is None
        assert lrgym.load_controller(tmp_path / "c.json") == saved
    content = json.loads(lrgym.save_controller(log_linear, tmp_path / "c.json").read_text())
    assert content["version"] == 1 and "policy" not in content
    assert content["theta_cov"] == np.eye(5).tolist()


def test_a_bounded_file_writes_version_4_and_every_consumer_gets_the_bound(
    tmp_path: Path,
) -> None:
    saved = LogLinearFile(theta=[0.0] * 5, env_id="x", max_change=1.2)
    content = json.loads(lrgym.save_controller(saved, tmp_path / "c.json").read_text())
    assert content["version"] == 4 and content["max_change"] == 1.2
    loaded = lrgym.load_controller(tmp_path / "c.json")
    assert loaded == saved
    for controller in (
        loaded.controller(),
        loaded.controller_for(never),
        loaded.with_theta([1.0] * 5),
    ):
        assert controller.max_change == 1.2
    # a file without the bound stays what older versions read (no new entry, its old version)
    plain = LogLinearFile(theta=[0.0] * 5, env_id="x")
    content = json.loads(lrgym.save_controller(plain, tmp_path / "c.json").read_text())
    assert content["version"] == 1 and "max_change" not in content
    content["max_change"] = 0.5
    (tmp_path / "c.json").write_text(json.dumps(content))
    with pytest.raises(ControllerFileError, match=r"malformed.*max_change=0\.5"):
        lrgym.load_controller(tmp_path / "c.json")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"library": "tianshou"}, "is not one of"),
        ({"algorithm": "DQN"}, "is not one of"),
        ({"sha256": None}, "sha256"),
        ({"kind": "per-episode"}, "policy kind"),
        ({"theta_scale": [1.0] * 4}, "theta_scale"),
        ({"observation_normalization": {"mean": [0.0], "var": [], "epsilon": 1, "clip": 1}}, "var"),
    ],
)
def test_a_malformed_policy_entry_is_refused(
    change: dict[str, Any], message: str, tmp_path: Path
) -> None:
    content = json.loads((OLD / "ppo" / "controller.json").read_text())
    content["policy"].update(change)
    (tmp_path / "c.json").write_text(json.dumps(content))
    with pytest.raises(ControllerFileError, match=f"malformed.*{message}"):
        lrgym.load_controller(tmp_path / "c.json")


def test_the_base_type_is_no_file_of_its_own() -> None:
    with pytest.raises(TypeError, match="abstract"):
        SavedController(env_id="x")  # type: ignore[abstract]
