"""The task interface: every task family is a pure, jittable sampler of prompts.

A task knows nothing of models. It tells the model what its inputs and outputs look like
(`ModelIO`), samples a batch from a PRNG key on the device, and turns a batch into the array
the model reads (`model_inputs`).
"""
from __future__ import annotations

from typing import Any, Dict, Tuple

import jax

from core import Batch, ConfigError, ModelIO, Registry, require  # noqa: F401 (re-exported)

class Task:
  """Base class. Subclasses are built from the `config.task` ConfigDict.

  Contract:
    * `sample(key, batch_size, step)` is a pure jittable function of its arguments; `step`
      may be a traced int32 scalar (used for curricula) and must never cause re-compilation.
    * The same key gives the same batch on any number of devices.
    * `model_inputs(batch)` returns float `features_BxTxF` or int32 `tokens_BxT`.
    * `default_objective` names an entry of `training.objectives.OBJECTIVES`; `objectives`
      lists every objective the task accepts (checked before anything is written).
    * `per_seed_keys` are `config.task` keys that change no shapes and so may take a
      different value for each seed of a vmapped run; `bind(values)` returns a copy of the
      task that reads those values (possibly traced) instead of the config's.
    * `position_metrics(outputs, batch)` gives per-position metrics for evaluation during
      training (the per-position error curve).
  """
  name: str = ''
  default_objective: str = ''
  objectives: Tuple[str, ...] = ()
  eval_family: str = ''
  per_seed_keys: Tuple[str, ...] = ()
  icl_metric: str = ''          # the position_metrics curve whose late - early is the ICL score

  def __init__(self, config: Any):
    self.config = config

  def io(self) -> ModelIO:
    raise NotImplementedError

  def sample(self, key: jax.Array, batch_size: int, step: Any = 0) -> Batch:
    raise NotImplementedError

  def model_inputs(self, batch: Batch) -> jax.Array:
    raise NotImplementedError

  def bind(self, values: Dict[str, Any]) -> 'Task':
    """A copy of this task reading `values` (keys of `per_seed_keys`) instead of the config."""
    if values:
      raise NotImplementedError(f'task {self.name!r} has no per-seed keys')
    return self

  def position_metrics(self, outputs, batch: Batch) -> Dict[str, jax.Array]:
    """Per-position metrics `name -> array_P`, averaged over the batch (P: scored positions)."""
    raise NotImplementedError


def merge_task_config(task_name: str, defaults: Dict[str, Any], config: Any) -> Dict[str, Any]:
  """`config.task` laid over the task's defaults ('name' dropped); a key the task does not
  have is refused with one line naming it and the keys it does have."""
  given = config.to_dict() if hasattr(config, 'to_dict') else dict(config)
  for key in given:
    require(key in defaults or key == 'name', f'task.{key}', given[key],
            f'not a key of task {task_name}; known: {", ".join(sorted(defaults))}')
  return {**defaults, **{k: v for k, v in given.items() if k != 'name'}}


TASKS = Registry('task', 'task.name')


def register_task(name: str):
  """Class decorator: `@register_task('linear_regression')` makes `config.task.name` find it.

  A task class also provides `default_config() -> dict` (its `config.task` keys with defaults;
  'name' is added automatically) and `eval_family` ('regression' or 'regbench': which module of
  `analysis/` evaluates it).
  """
  def wrap(cls):
    cls.name = name
    return TASKS.register(name, eval_family=cls.eval_family, objectives=cls.objectives)(cls)
  return wrap
