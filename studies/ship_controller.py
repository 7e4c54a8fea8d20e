"""Turn a learning run's ``controller.json`` into a pretrained controller file of
``lrgym/pretrained/`` with its provenance: the command that learned it (rebuilt from the run's
``run.json``, so it is the command that ran), the learning time from its ``log.jsonl``, a
description and the held-out evaluation (a JSON object from a file).

    python studies/ship_controller.py bench/general-sgd --name general-sgd \\
        --optimizer "SGD, momentum 0.9" --description "..." --evaluation eval.json

The machine's ``data_root`` is left out of the file.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
from pathlib import Path
from typing import Any

from lrgym.controllers.files import PRETRAINED_DIR, load_controller, save_controller

FLAGS = {"samples": "--samples", "sigma0": "--sigma0", "epsilon": "--epsilon"}
DEFAULT_OBJECTIVE = {"tasks": 1, "comparable": "none", "risk": "mean", "alpha": 0.25, "perturb": 0}


def command_of(run: dict[str, Any], out: str) -> str:
    """The ``lrgym train`` command that runs ``run`` (a ``run.json``) into ``out``."""
    kwargs = {k: v for k, v in run["env_kwargs"].items() if k != "data_root"}
    parts = ["lrgym", "train", run["algorithm"], "--env", run["env_id"]]
    if "data_root" in run["env_kwargs"]:
        parts += ["--data-root", "../shared/data"]
    if kwargs:
        parts += ["--env-kwargs", json.dumps(kwargs, separators=(", ", ": "))]
    for key, flag in FLAGS.items():
        if key in run["config"]:
            parts += [flag, f"{run['config'][key]:g}"]
    if run.get("same_task"):
        parts.append("--same-task")
    for key, value in run.get("objective", {}).items():
        if value != DEFAULT_OBJECTIVE[key]:
            parts += [f"--{key}", f"{value:g}" if isinstance(value, float) else str(value)]
    parts += ["--episodes", str(run["episodes"]), "--workers", "2", "--seed", str(run["seed"])]
    parts += ["--out", out]
    return shlex.join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="the learning run's --out folder")
    parser.add_argument("--name", required=True)
    parser.add_argument("--optimizer", required=True)
    parser.add_argument("--description", required=True)
    parser.add_argument("--evaluation", type=Path, required=True, help="a JSON object")
    args = parser.parse_args()
    run = json.loads((args.run / "run.json").read_text())
    log = [json.loads(line) for line in (args.run / "log.jsonl").read_text().splitlines()]
    saved = load_controller(args.run / "controller.json")
    source = {
        **saved.source,
        "name": args.name,
        "description": args.description,
        "optimizer": args.optimizer,
        "command": command_of(run, f"runs/{args.name}"),
        "learning_seconds": round(log[-1]["elapsed"]),
        "evaluation": json.loads(args.evaluation.read_text()),
    }
    kwargs = {k: v for k, v in saved.env_kwargs.items() if k != "data_root"}
    shipped = dataclasses.replace(saved, source=source, env_kwargs=kwargs, path=None)
    path = save_controller(shipped, PRETRAINED_DIR / f"{args.name}.json")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
