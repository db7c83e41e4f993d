"""The hook protocol of the host loop, below training and analysis.

The loop (training/loop.py) dispatches one compiled call at a time and tells every hook:
  `stops()`                  steps at which a call must end (a checkpoint or an evaluation)
  `at_start(loop)`           a run from step 0 is about to dispatch its first call
  `on_metrics(first, host)`  a finished call's metrics, read on the host (name -> (steps, N))
  `after_call(loop, step)`   a call reaching `step` was dispatched (its result may be pending)
  `close(loop)`              the run ends (normally or not)
A hook may use `loop.state` (params, optimiser state), `loop.rest`, `loop.frozen` (the frozen
reference or None), `loop.writer` and `loop.drain()` (read the pending call's metrics).

Hooks the loop builds itself live in training/hooks.py. A hook from a layer the loop does not
import (analysis/train_suites.py) reaches it as a factory `(HookContext) -> Hook` passed to
`training.loop.train(..., hooks=[...])`.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, Tuple

import numpy as np


class Hook:
  """Does nothing at every point of the protocol; a hook overrides what it needs."""

  def stops(self) -> set:
    return set()

  def at_start(self, loop) -> None:
    pass

  def on_metrics(self, first_step: int, host: Dict[str, np.ndarray]) -> None:
    pass

  def after_call(self, loop, step: int) -> None:
    pass

  def close(self, loop) -> None:
    pass


@dataclasses.dataclass(frozen=True)
class HookContext:
  """What a hook factory is given once the run is set up, before its first call."""
  setup: Any                  # the validated run (training.setup.Setup)
  graphdef: Any               # the model's nnx graph definition
  writer: Any                 # metrics.jsonl / TensorBoard: `write(row)`
  workdir: str
  eval_steps: Tuple[int, ...]  # the run's scheduled evaluation steps (eval.every, num_log_evals)
  start_step: int             # where this invocation starts (0, or the resumed checkpoint)
  end_step: int
  enabled: bool               # whether this process writes (process 0)


def seed_values(array_N):
  """A metrics row's value: a scalar for one seed, a list for many (one entry per seed)."""
  array_N = np.asarray(array_N, np.float64)
  return float(array_N[0]) if array_N.size == 1 else [float(x) for x in array_N]
