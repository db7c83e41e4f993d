"""Everything a run is built from, validated before anything compiles or is written.

A run trains `train.num_seeds` independent models at once (one vmapped, compiled step). Seed i
initialises its model from `seed_i` and draws its data from `fold_in(key(seed_i), 1)`, where
`seed_i = train.seed + i` unless `train.seed_values` lists the seeds; `train.seed_values` may
also give each seed its own value of a key that changes no shapes:

  --config.train.num_seeds=3 --config.train.seed_values='train.learning_rate=1e-3,3e-3,1e-2'
  --config.train.seed_values='train.seed=0,7;task.noise_std=0.0,0.5'   (';' between keys)
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Dict, List, Optional, Tuple

import jax
import ml_collections
import numpy as np

from core import ConfigError, require
from data import get_task
from data.base import Task
from models.model import SequenceModel, build_model
from training.objectives import OBJECTIVES
from training.optimizer import validate_optimizer_config

# Train keys a vmapped run may vary across seeds (they change no shapes).
PER_SEED_TRAIN_KEYS = ('seed', 'learning_rate', 'weight_decay')


@dataclasses.dataclass
class Setup:
  """A validated run: task, seed-0 model (the template), objective, seeds, mesh."""
  config: ml_collections.ConfigDict
  task: Task
  model: SequenceModel
  loss: Callable
  objective_metadata: Dict[str, Any]
  seeds: List[int]
  per_seed: Dict[str, np.ndarray]   # 'train.learning_rate' -> values_N (seeds excluded)
  mesh: jax.sharding.Mesh

  @property
  def num_seeds(self) -> int:
    return len(self.seeds)

  def task_values(self) -> Dict[str, np.ndarray]:
    return {k[len('task.'):]: v for k, v in self.per_seed.items() if k.startswith('task.')}

  def train_values(self) -> Dict[str, np.ndarray]:
    return {k[len('train.'):]: v for k, v in self.per_seed.items() if k.startswith('train.')}


def _parse_number(text: str, key: str):
  try:
    value = float(text)
  except ValueError:
    raise ConfigError(f'config.train.seed_values: {key} value {text!r} is not a number')
  if not math.isfinite(value):
    raise ConfigError(f'config.train.seed_values: {key} value {text!r} must be finite')
  return int(value) if value.is_integer() and ('.' not in text and 'e' not in text.lower()) \
      else value


def parse_seed_values(config, task: Task) -> Tuple[List[int], Dict[str, np.ndarray]]:
  """(seed of every member, {key: values_N}) from train.num_seeds / train.seed_values."""
  t = config.train
  n = t.num_seeds
  allowed = [f'train.{k}' for k in PER_SEED_TRAIN_KEYS] + [f'task.{k}' for k in
                                                           task.per_seed_keys]
  values: Dict[str, list] = {}
  text = str(t.seed_values).strip()
  for part in filter(None, (p.strip() for p in text.split(';'))):
    key, eq, listed = part.partition('=')
    key = key.strip()
    require(eq == '=', 'train.seed_values', text,
            "expected 'section.key=v1,v2,...' entries separated by ';'")
    if key not in allowed:
      why = ('it changes shapes or is not a number' if key.count('.') == 1 else 'unknown key')
      raise ConfigError(f'config.train.seed_values: {key} cannot vary across seeds ({why}); '
                        f'keys that can: {", ".join(allowed)}')
    require(key not in values, 'train.seed_values', text, f'{key} is given twice')
    items = [_parse_number(v.strip(), key) for v in listed.split(',') if v.strip()]
    require(len(items) == n, 'train.seed_values', text,
            f'{key} lists {len(items)} values; train.num_seeds={n} needs exactly {n}')
    values[key] = items
  seeds = values.pop('train.seed', None)
  if seeds is None:
    seeds = [t.seed + i for i in range(n)]
  for s in seeds:
    require(isinstance(s, int) and s >= 0, 'train.seed_values', text,
            'seeds must be integers >= 0')
  for key, items in values.items():
    if key in ('train.learning_rate',):
      require(all(v > 0 for v in items), 'train.seed_values', text, f'{key} must be > 0')
    if key in ('train.weight_decay',):
      require(all(v >= 0 for v in items), 'train.seed_values', text, f'{key} must be >= 0')
    if key.startswith('task.'):
      # The task validates each value as it would a config value.
      for v in items:
        trial = ml_collections.ConfigDict(config.task.to_dict())
        trial[key[len('task.'):]] = type(trial[key[len('task.'):]])(v)
        get_task(trial)
  return list(seeds), {k: np.asarray(v, np.float32 if any(isinstance(x, float) for x in v)
                                     else np.int32) for k, v in values.items()}


def validate_train_config(config, num_devices: int) -> None:
  t = config.train
  require(isinstance(t.num_steps, int) and t.num_steps >= 1, 'train.num_steps', t.num_steps,
          'must be an integer >= 1')
  require(isinstance(t.batch_size, int) and t.batch_size >= 1, 'train.batch_size', t.batch_size,
          'must be an integer >= 1')
  require(t.batch_size % num_devices == 0, 'train.batch_size', t.batch_size,
          f'must be divisible by the number of devices ({num_devices})')
  require(isinstance(t.seed, int) and t.seed >= 0, 'train.seed', t.seed, 'must be an integer >= 0')
  require(isinstance(t.num_seeds, int) and t.num_seeds >= 1, 'train.num_seeds', t.num_seeds,
          'must be an integer >= 1 (independent models trained in one vmapped step)')
  require(isinstance(t.seed_batch, int) and t.seed_batch >= 0, 'train.seed_batch', t.seed_batch,
          'must be an integer >= 0 (0: auto; k: k seeds vmapped at a time, the rest looped)')
  for key in ('steps_per_call', 'log_every', 'checkpoint_every', 'keep_checkpoints'):
    require(isinstance(t[key], int) and t[key] >= 1, f'train.{key}', t[key],
            'must be an integer >= 1')
  require(isinstance(t.keep_log_checkpoints, int) and t.keep_log_checkpoints >= 0,
          'train.keep_log_checkpoints', t.keep_log_checkpoints,
          'must be an integer >= 0 (0: only the last train.keep_checkpoints)')
  require(t.checkpoint_every % t.steps_per_call == 0, 'train.checkpoint_every',
          t.checkpoint_every, f'must be a multiple of train.steps_per_call={t.steps_per_call}')
  require(isinstance(t.forget_every, int) and t.forget_every >= 0, 'train.forget_every',
          t.forget_every, 'must be an integer >= 0 (0: no weight forgetting)')
  validate_optimizer_config(t)
  e = config.eval
  require(isinstance(e.every, int) and e.every >= 0, 'eval.every', e.every,
          'must be an integer >= 0 (0: no evaluation every N steps)')
  require(isinstance(e.num_log_evals, int) and e.num_log_evals >= 0, 'eval.num_log_evals',
          e.num_log_evals, 'must be an integer >= 0 (0: no log-spaced evaluations)')
  require(isinstance(e.train_prompts, int) and e.train_prompts >= 1, 'eval.train_prompts',
          e.train_prompts, 'must be an integer >= 1 (prompts per evaluation during training)')
  require(isinstance(e.num_prompts, int) and e.num_prompts >= 1, 'eval.num_prompts',
          e.num_prompts, 'must be an integer >= 1')
  require(isinstance(e.batch_size, int) and e.batch_size >= 1, 'eval.batch_size', e.batch_size,
          'must be an integer >= 1')


def validate_objective(config, task: Task) -> None:
  name = config.objective.name
  OBJECTIVES.get(name)   # unknown name: lists the known ones
  require(name in task.objectives, 'objective.name', name,
          f'task {task.name!r} accepts {", ".join(task.objectives)}')
  if OBJECTIVES.metadata(name)['needs_reference']:
    require(bool(config.train.init_from), 'train.init_from', config.train.init_from,
            f'objective {name!r} needs a frozen reference: start from a trained run with '
            f'--config.train.init_from=DIR[:STEP]')


def make_setup(config, devices=None) -> Setup:
  """Validates the config (raising ConfigError) and builds task, model and objective."""
  devices = list(devices if devices is not None else jax.devices())
  validate_train_config(config, len(devices))
  task = get_task(config.task)
  validate_objective(config, task)
  seeds, per_seed = parse_seed_values(config, task)
  model = build_model(task.io(), config.model, seed=seeds[0])
  if config.train.forget_every:
    from flax import nnx
    modules = sorted(k for k, v in vars(model).items() if isinstance(v, nnx.Module))
    for name in str(config.train.forget_modules).split(','):
      require(name.strip() in modules, 'train.forget_modules', config.train.forget_modules,
              f'top-level modules of this model: {", ".join(modules)}')
  name = config.objective.name
  loss = OBJECTIVES[name](config.objective, task)
  mesh = jax.sharding.Mesh(np.array(devices), ('data',))
  return Setup(config, task, model, loss, OBJECTIVES.metadata(name), seeds, per_seed, mesh)


def log_spaced_steps(num_steps: int, count: int) -> List[int]:
  """`count` steps spread evenly in log scale over [1, num_steps] (dense early), always
  including num_steps; fewer when rounding merges them."""
  if count <= 0:
    return []
  if count == 1:
    return [num_steps]
  raw = np.logspace(0, math.log10(num_steps), count)
  return sorted(set(int(round(x)) for x in raw) | {num_steps})


def eval_steps(config, end_step: Optional[int] = None) -> List[int]:
  """Steps after which the scheduled evaluation runs."""
  n = config.train.num_steps if end_step is None else end_step
  steps = set(log_spaced_steps(config.train.num_steps, config.eval.num_log_evals))
  if config.eval.every:
    steps |= set(range(config.eval.every, config.train.num_steps + 1, config.eval.every))
  if config.train.init_from and steps:
    steps.add(0)        # the starting point of a run from a run: 'before' for every metric
  return sorted(s for s in steps if s <= n)
