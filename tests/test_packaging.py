"""The distribution: the package list in pyproject.toml, and the built wheel installed the way a
user of a release installs it (outside the repository, into a fresh virtual environment)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"lrgym": "lrgym", "agents": "lrgym_agents"}  # repository folder -> installed name
OWN_NAMES = {"lrgym", "lrgym_agents"}


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_package_folder_is_listed_in_pyproject_under_its_installed_name() -> None:
    setuptools = _pyproject()["tool"]["setuptools"]
    assert setuptools["package-dir"] == {"lrgym_agents": "agents"}
    found = {"lrgym.pretrained"}  # controller files, no code: package data
    for folder, name in FOLDERS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((name, *parts)))
    assert set(setuptools["packages"]) == found


def test_the_learners_entry_point_names_the_installed_package() -> None:
    entry = _pyproject()["project"]["entry-points"]["lrgym.commands"]["learners"]
    module = entry.split(":")[0]
    assert module.split(".")[0] == "lrgym_agents"
    assert (ROOT / "agents" / (module.split(".", 1)[1].replace(".", "/") + ".py")).is_file()


# --------------------------------------------------------------------------------------------
# the wheel


def _run(command: list[str | Path], cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def _build(tmp_path: Path) -> tuple[Path, Path]:
    """An sdist and a wheel built from a copy of the tracked sources (the wheel from the sdist,
    as ``python -m build`` does), so that the build writes nothing into the repository."""
    source = tmp_path / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in FOLDERS:
        shutil.copytree(ROOT / folder, source / folder, ignore=ignore)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    dist = tmp_path / "dist"
    # --no-isolation: the build backend of this environment, nothing downloaded
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", dist, source], tmp_path)
    _run([sys.executable, "-m", "twine", "check", "--strict", *dist.iterdir()], tmp_path)
    (wheel,) = dist.glob("*.whl")
    (sdist,) = dist.glob("*.tar.gz")
    return wheel, sdist


def _venv(tmp_path: Path) -> Path:
    """A fresh virtual environment that reuses this environment's installed dependencies (torch
    and the rest) through a path file, so that nothing large is installed; lrgym itself is not
    visible there until its wheel is installed (this environment's editable install is a
    finder that a path file does not run)."""
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], tmp_path)
    python = venv / "bin" / "python"
    purelib = _run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path
    )
    here = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(purelib.strip()) / "lrgym_test_reuse.pth").write_text("\n".join(sorted(here)) + "\n")
    return venv


@pytest.mark.slow
def test_the_wheel_installs_and_runs_outside_the_repository(tmp_path: Path) -> None:
    wheel, _ = _build(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        top = {name.split("/")[0] for name in archive.namelist()}
        packaged = set(archive.namelist())
    assert top - OWN_NAMES == {f"{wheel.name.split('-py3')[0]}.dist-info"}
    assert "lrgym/pretrained/mnist-sgd.json" in packaged

    venv = _venv(tmp_path)
    # this environment's pip installs into the new one; --no-index: from the wheel file alone
    pip = [sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install"]
    _run([*pip, "--no-index", "--no-deps", wheel], tmp_path)
    work = tmp_path / "work"  # outside the repository: nothing is imported from a source folder
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["OMP_NUM_THREADS"] = "1"
    lrgym, python = venv / "bin" / "lrgym", venv / "bin" / "python"

    short = json.dumps({"steps": [20, 30]})
    train = ["train", "reps", "--env", "StepSizeControl-Toy-v0", "--env-kwargs", short]
    train += ["--episodes", "8", "--samples", "4", "--seed", "1", "--out", "run", "--no-progress"]
    assert "reps, 8 episodes" in _run([lrgym, *train], work, env)
    evaluate = [lrgym, "evaluate", "run/controller.json", "--episodes", "2", "--json"]
    rows = [json.loads(line) for line in _run(evaluate, work, env).splitlines()]
    assert [row["seed"] for row in rows] == [0, 1] and all("reward" in row for row in rows)
    benchmark = [lrgym, "benchmark", "--suite", "toy", "--tasks", "1", "--out", "bench"]
    _run([*benchmark, "--no-progress"], work, env)
    assert (work / "bench" / "results.csv").is_file()

    check = """
import json, gymnasium as gym, lrgym, lrgym_agents
controller = lrgym.load_controller("mnist-sgd")
env = gym.make("lrgym:StepSizeControl-Toy-v0")
print(json.dumps({"lrgym": lrgym.__file__, "agents": lrgym_agents.__file__,
                  "theta": len(controller.theta), "env": env.spec.id}))
"""
    seen = json.loads(_run([python, "-c", check], work, env).strip().splitlines()[-1])
    site = str(venv)
    assert seen["lrgym"].startswith(site) and seen["agents"].startswith(site)
    assert seen["theta"] == 5 and seen["env"] == "StepSizeControl-Toy-v0"
    # every file the install wrote, outside bin/, lies under lrgym's own names
    (record,) = Path(seen["lrgym"]).parents[1].glob("lrgym-*.dist-info/RECORD")
    installed = {line.split(",")[0].split("/")[0] for line in record.read_text().splitlines()}
    assert {name for name in installed if name != ".."} - OWN_NAMES == {record.parent.name}
