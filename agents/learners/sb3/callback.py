"""The Stable-Baselines3 callback of an lrgym run: it counts finished episodes, stops training at
the exact budget, and at update boundaries appends the log and saves a checkpoint."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ...rundir import RunDirectory, log_row


def make_callback(*args: Any) -> Any:
    """The SB3 callback (its class is built here, so that importing this module needs no SB3):
    counts episodes, stops at the budget, and at update boundaries logs and checkpoints."""
    from stable_baselines3.common.callbacks import BaseCallback

    class Callback(BaseCallback):
        def __init__(
            self,
            directory: RunDirectory,
            spec: Mapping[str, Any],
            save: Callable[..., dict[str, Any]],
            records: list[dict[str, Any]],
            done: int,
            next_index: int,
            elapsed: float,
            log_every: int,
            bar: Any,
        ) -> None:
            super().__init__()
            self.directory, self.spec, self.save_model = directory, spec, save
            self.records, self.done, self.elapsed = records, done, elapsed
            self.next_index = next_index
            self.log_every, self.bar = log_every, bar
            self.pending: list[tuple[int, int, float, bool]] = []
            self.started = time.perf_counter()

        def _collect(self) -> None:
            finished = [e for env in self.training_env.env_method("drain") for e in env]
            # several envs can end episodes in one vector step: keep the budget exact
            room = self.spec["episodes"] - self.done - len(self.pending)
            finished = sorted(finished)[: max(room, 0)]
            if finished and self.bar is not None:
                self.bar.update(len(finished))
            self.pending.extend(finished)

        def _on_step(self) -> bool:
            self._collect()
            return self.done + len(self.pending) < self.spec["episodes"]

        def _on_rollout_start(self) -> None:
            self._collect()
            if len(self.pending) >= self.log_every:
                self._checkpoint()

        def _on_training_end(self) -> None:
            self._collect()
            if self.pending:
                self._checkpoint()

        def _checkpoint(self) -> None:
            batch = sorted(self.pending)
            self.pending = []
            now = time.perf_counter()
            seconds, self.started = now - self.started, now
            self.elapsed += seconds
            self.done += len(batch)
            self.next_index = max(self.next_index, *(b[0] + 1 for b in batch))
            row = log_row(
                iteration=len(self.records),
                episodes_total=self.done,
                rewards=[b[2] for b in batch],
                seeds=[b[1] for b in batch],
                diverged=sum(b[3] for b in batch),
                seconds=seconds,
                elapsed=self.elapsed,
                learner={"num_timesteps": int(self.model.num_timesteps)},
            )
            self.records.append(row)
            self.directory.append(row)
            state = self.save_model(self.done, "controller.json")
            state["next_index"] = self.next_index
            self.directory.save(self.spec, state, self.done, self.elapsed)
            _prune(
                self.directory.path / "models",
                keep={state["model"], state.get("replay_buffer")},
            )
            if self.bar is not None:
                self.bar.set_postfix(mean=f"{row['mean_reward']:.4f}")

    return Callback(*args)


def _prune(models: Path, keep: set[Any]) -> None:
    """Delete model files no checkpoint or controller file references (the initial one stays)."""
    for path in models.glob("*-*"):
        name = f"models/{path.name}"
        if (
            name not in keep
            and not path.name.endswith("-000000.zip")
            and not path.name.startswith(".tmp")
        ):
            path.unlink(missing_ok=True)
