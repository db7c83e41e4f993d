"""Runs that start from runs: `train.init_from=DIR[:STEP]`, and the frozen reference.

The new run's parameters start from the other run's (never its optimiser state). A run of S
seeds initialises a run of N seeds seed by seed when S = N, or every seed from the one model
when S = 1. When the objective needs a frozen reference (preference objectives), the same
parameters are kept beside the trained ones: outside the optimiser and the gradient, never
donated, and written once to `<workdir>/reference/` (not into every checkpoint) so that a
resumed run restores them even if the source run has moved on.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Optional, Tuple

import jax
import numpy as np

from core import ConfigError

# Model keys that may differ between a run and the run it starts from (compute dtype only).
_FREE_MODEL_KEYS = ('dtype',)


@dataclasses.dataclass
class InitParams:
  params: Any            # leading axis N (the new run's seeds)
  frozen: Any            # reference parameters: leading axis N, or none when shared
  frozen_shared: bool
  source: str
  step: int


def parse_init_from(spec: str) -> Tuple[str, Optional[int]]:
  path, sep, tail = spec.rpartition(':')
  if sep and tail.isdigit() and path:
    return path, int(tail)
  return spec, None


def _model_differences(source_config, config, source_io, io):
  from training.loop import flatten_config
  old = flatten_config(source_config.model.to_dict())
  new = flatten_config(config.model.to_dict())
  diffs = [f'model.{k} ({old.get(k, "<missing>")!r} there, {new.get(k, "<missing>")!r} here)'
           for k in sorted(set(old) | set(new))
           if k.split('.')[0] not in _FREE_MODEL_KEYS and old.get(k) != new.get(k)
           and not k.startswith('mixer_options.')]
  # Options of mixers neither run uses do not matter.
  used = set(str(config.model.mixer).split(','))
  for k in sorted(set(old) | set(new)):
    if k.startswith('mixer_options.') and k.split('.')[1] in used and old.get(k) != new.get(k):
      diffs.append(f'model.{k} ({old.get(k)!r} there, {new.get(k)!r} here)')
  for field in ('input_kind', 'input_dim', 'vocab_size', 'output_dim'):
    if getattr(source_io, field) != getattr(io, field):
      diffs.append(f'the task\'s {field} ({getattr(source_io, field)!r} there, '
                   f'{getattr(io, field)!r} here)')
  source_len = source_config.model.max_len or source_io.seq_len
  this_len = config.model.max_len or io.seq_len
  if source_len != this_len:
    diffs.append(f'the context length ({source_len} there, {this_len} here; set '
                 f'model.max_len={source_len})')
  return diffs


def load_init_params(setup, log=print) -> Optional[InitParams]:
  """The parameters `train.init_from` names, checked against this run (ConfigError naming
  what differs), or None when the run starts fresh."""
  spec = setup.config.train.init_from
  if not spec:
    return None
  from training.loop import load_config, restore_run
  from training.workdir import WorkdirError
  path, step = parse_init_from(str(spec))
  if not os.path.isdir(path):
    raise ConfigError(f'config.train.init_from={spec!r} is invalid: {path} is not a directory')
  try:
    source_config = load_config(path)
  except WorkdirError as e:
    raise ConfigError(f'config.train.init_from={spec!r} is invalid: {e}')
  from data import get_task
  source_io = get_task(source_config.task).io()
  diffs = _model_differences(source_config, setup.config, source_io, setup.task.io())
  if diffs:
    raise ConfigError(f'config.train.init_from={spec!r} is invalid: that run differs in '
                      f'{"; ".join(diffs[:3])}{"; ..." if len(diffs) > 3 else ""}')
  try:
    run = restore_run(path, step, source_config, log=lambda m: log(f'init_from: {m}'))
  except WorkdirError as e:
    raise ConfigError(f'config.train.init_from={spec!r} is invalid: {e}')
  params_S = jax.device_get(run['params'])
  source_seeds = run['setup'].num_seeds
  n = setup.num_seeds
  if source_seeds == n:
    params_N, frozen, shared = params_S, params_S, False
  elif source_seeds == 1:
    params_N = jax.tree.map(lambda x: np.repeat(x, n, axis=0), params_S)
    frozen, shared = jax.tree.map(lambda x: x[0], params_S), n > 1
    if not shared:
      frozen = params_S
  else:
    raise ConfigError(f'config.train.init_from={spec!r} is invalid: that run has '
                      f'{source_seeds} seeds and this one train.num_seeds={n}; use 1 or '
                      f'{source_seeds}')
  log(f'initialised from {path} at step {run["step"]} ({source_seeds} seed(s))')
  return InitParams(params_N, frozen, shared, path, run['step'])
