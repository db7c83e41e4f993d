"""The task interface: every task family is a pure, jittable sampler of prompts.

A task knows nothing of models. It tells the model what its inputs and outputs look like
(`ModelIO`), samples a batch from a PRNG key on the device, and turns a batch into the array
the model reads (`model_inputs`).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict

import jax

Batch = Dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class ModelIO:
  """Shapes a task asks of a model.

  input_kind: 'vectors' (float features per position, read in linearly) or 'tokens'
    (integer ids, read in by an embedding table).
  input_dim: features per position for 'vectors'; unused for 'tokens'.
  vocab_size: number of token ids for 'tokens'; unused for 'vectors'.
  output_dim: width of the model's read-out (1 for scalar regression, vocab_size for LM).
  seq_len: the longest sequence the task produces (the model's context must cover it).
  """
  input_kind: str
  seq_len: int
  output_dim: int
  input_dim: int = 0
  vocab_size: int = 0


class Task:
  """Base class. Subclasses are built from the `config.task` ConfigDict.

  Contract:
    * `sample(key, batch_size, step)` is a pure jittable function of its arguments; `step`
      may be a traced int32 scalar (used for curricula) and must never cause re-compilation.
    * The same key gives the same batch on any number of devices.
    * `model_inputs(batch)` returns float `features_BxTxF` or int32 `tokens_BxT`.
    * `default_objective` names an entry of `training.objectives.OBJECTIVES`.
  """
  name: str = ''
  default_objective: str = ''

  def __init__(self, config: Any):
    self.config = config

  def io(self) -> ModelIO:
    raise NotImplementedError

  def sample(self, key: jax.Array, batch_size: int, step: Any = 0) -> Batch:
    raise NotImplementedError

  def model_inputs(self, batch: Batch) -> jax.Array:
    raise NotImplementedError


class ConfigError(ValueError):
  """Bad configuration: raised before anything is compiled, with a one-line message."""


def require(condition: bool, key: str, value: Any, allowed: str) -> None:
  """Raises ConfigError('config.<key>=<value> is invalid: <allowed>') unless `condition`."""
  if not condition:
    raise ConfigError(f'config.{key}={value!r} is invalid: {allowed}')


TASKS: Dict[str, type] = {}


def register_task(name: str):
  """Class decorator: `@register_task('linear_regression')` makes `config.task.name` find it.

  A task class also provides `default_config() -> dict` (its `config.task` keys with defaults;
  'name' is added automatically) and `eval_family` ('regression' or 'regbench': which module of
  `analysis/` evaluates it).
  """
  def wrap(cls):
    if name in TASKS:
      raise ValueError(f'task {name!r} registered twice')
    TASKS[name] = cls
    cls.name = name
    return cls
  return wrap
