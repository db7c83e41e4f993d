"""The training loop: one compiled step for every task and objective.

A run is a pure function of its config: the batch for step t is sampled on the device from
`fold_in(data_key, t)`, so resuming, re-running and sharding over any number of devices see the
same data. `steps_per_call` steps are fused into one compiled call (`lax.scan`); the host
dispatches the next call before reading the previous call's metrics, so the device never waits.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import time
from typing import Any, Callable, Dict, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from data import get_task
from data.base import ConfigError, Task, require
from models.model import SequenceModel, build_model, param_count
from training.checkpoint import Checkpointer
from training.objectives import OBJECTIVES
from training.optimizer import learning_rate_schedule, make_optimizer

# Keys that may differ when a run is resumed (extending a run, changing how often it logs).
RESUMABLE_DIFFERENCES = ('train.num_steps', 'train.log_every', 'train.progress',
                         'train.checkpoint_every', 'train.keep_checkpoints', 'eval')
CONFIG_FILE = 'config.json'
METRICS_FILE = 'metrics.jsonl'


class NonFiniteLossError(RuntimeError):
  pass


class WorkdirError(RuntimeError):
  pass


def config_to_dict(config) -> Dict[str, Any]:
  return json.loads(config.to_json())


def load_config(workdir: str) -> ml_collections.ConfigDict:
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    raise WorkdirError(f'{workdir} holds no {CONFIG_FILE}: is it a training work directory?')
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def _flatten(tree, prefix=''):
  out = {}
  for key, value in tree.items():
    name = f'{prefix}{key}'
    if isinstance(value, dict):
      out.update(_flatten(value, name + '.'))
    else:
      out[name] = value
  return out


def config_differences(old: Dict[str, Any], new: Dict[str, Any]):
  """Keys whose values differ, ignoring the ones a resumed run may change."""
  old_flat, new_flat = _flatten(old), _flatten(new)
  diffs = []
  for key in sorted(set(old_flat) | set(new_flat)):
    if any(key == k or key.startswith(k + '.') for k in RESUMABLE_DIFFERENCES):
      continue
    if old_flat.get(key, '<missing>') != new_flat.get(key, '<missing>'):
      diffs.append(f'{key}: {old_flat.get(key, "<missing>")!r} -> {new_flat.get(key, "<missing>")!r}')
  return diffs


def validate_train_config(config, num_devices: int) -> None:
  t = config.train
  require(isinstance(t.num_steps, int) and t.num_steps >= 1, 'train.num_steps', t.num_steps,
          'must be an integer >= 1')
  require(isinstance(t.batch_size, int) and t.batch_size >= 1, 'train.batch_size', t.batch_size,
          'must be an integer >= 1')
  require(t.batch_size % num_devices == 0, 'train.batch_size', t.batch_size,
          f'must be divisible by the number of devices ({num_devices})')
  for key in ('steps_per_call', 'log_every', 'checkpoint_every', 'keep_checkpoints'):
    require(isinstance(t[key], int) and t[key] >= 1, f'train.{key}', t[key],
            'must be an integer >= 1')
  require(t.checkpoint_every % t.steps_per_call == 0, 'train.checkpoint_every',
          t.checkpoint_every, f'must be a multiple of train.steps_per_call={t.steps_per_call}')
  require(config.objective.name in OBJECTIVES, 'objective.name', config.objective.name,
          f'known objectives: {", ".join(sorted(OBJECTIVES))}')


@dataclasses.dataclass
class Setup:
  """Everything a run is built from, validated before anything compiles."""
  config: ml_collections.ConfigDict
  task: Task
  model: SequenceModel
  objective: Callable
  optimizer: optax.GradientTransformation
  schedule: Callable
  mesh: jax.sharding.Mesh


def make_setup(config, devices=None) -> Setup:
  """Validates the config (raising ConfigError) and builds task, model and optimizer."""
  devices = list(devices if devices is not None else jax.devices())
  validate_train_config(config, len(devices))
  task = get_task(config.task)
  model = build_model(task.io(), config.model, seed=config.train.seed)
  optimizer = make_optimizer(config.train)
  mesh = jax.sharding.Mesh(np.array(devices), ('data',))
  return Setup(config, task, model, OBJECTIVES[config.objective.name], optimizer,
               learning_rate_schedule(config.train), mesh)


def init_state(setup: Setup):
  """{'params', 'opt_state', 'step'} replicated over the mesh, plus the static graph."""
  graphdef, params, rest = nnx.split(setup.model, nnx.Param, ...)
  state = {'params': params, 'opt_state': setup.optimizer.init(params),
           'step': jnp.zeros((), jnp.int32)}
  replicated = NamedSharding(setup.mesh, P())
  return graphdef, rest, jax.device_put(state, replicated)


def make_train_fn(setup: Setup, graphdef, rest, num_steps: int):
  """Jitted `state -> (state, metrics_per_step)` running `num_steps` fused train steps."""
  config, task, objective, optimizer = setup.config, setup.task, setup.objective, setup.optimizer
  batch_size = config.train.batch_size
  data_key = jax.random.fold_in(jax.random.key(config.train.seed), 1)
  data_sharding = NamedSharding(setup.mesh, P('data'))
  replicated = NamedSharding(setup.mesh, P())
  schedule = setup.schedule

  def one_step(state, _):
    step = state['step']
    batch = task.sample(jax.random.fold_in(data_key, step), batch_size, step)
    batch = jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, data_sharding), batch)

    def loss_fn(params):
      model = nnx.merge(graphdef, params, rest)
      return objective(model, batch, task)

    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state['params'])
    updates, opt_state = optimizer.update(grads, state['opt_state'], state['params'])
    params = optax.apply_updates(state['params'], updates)
    metrics = {'loss': loss, 'grad_norm': optax.tree.norm(grads),
               'learning_rate': schedule(step), **aux}
    return {'params': params, 'opt_state': opt_state, 'step': step + 1}, metrics

  def run(state):
    return jax.lax.scan(one_step, state, None, length=num_steps)

  return jax.jit(run, donate_argnums=0, out_shardings=(replicated, replicated))


def _read_metrics_file(path: str, up_to_step: int):
  if not os.path.exists(path):
    return []
  with open(path) as f:
    rows = [json.loads(line) for line in f if line.strip()]
  return [row for row in rows if row['step'] <= up_to_step]


def prepare_workdir(config, workdir: str, overwrite: bool) -> None:
  """Creates the workdir or checks that it holds this run; refuses a different config."""
  config_path = os.path.join(workdir, CONFIG_FILE)
  if os.path.exists(config_path):
    with open(config_path) as f:
      old = json.load(f)
    diffs = config_differences(old, config_to_dict(config))
    if diffs and not overwrite:
      raise WorkdirError(f'{workdir} holds a run of a different config ({"; ".join(diffs[:3])}'
                         f'{"; ..." if len(diffs) > 3 else ""}); pass --overwrite to replace it '
                         f'or choose another --workdir')
    if diffs and overwrite:
      for name in ('checkpoints', 'tensorboard', 'eval'):
        shutil.rmtree(os.path.join(workdir, name), ignore_errors=True)
      for name in (METRICS_FILE, 'model_info.json'):
        if os.path.exists(os.path.join(workdir, name)):
          os.remove(os.path.join(workdir, name))
  os.makedirs(workdir, exist_ok=True)
  with open(config_path + '.tmp', 'w') as f:
    f.write(config.to_json(indent=2))
  os.replace(config_path + '.tmp', config_path)


def model_info(setup: Setup) -> Dict[str, Any]:
  blocks = setup.model.blocks
  return {
      'param_count': param_count(setup.model),
      'state_size': setup.model.state_size(),
      'mixers': list(setup.model.mixer_names),
      'per_layer': [{'mixer': name, 'param_count': param_count(block.mixer),
                     'state_size': int(block.mixer.state_size())}
                    for name, block in zip(setup.model.mixer_names, blocks)],
      'context_length': setup.model.max_len,
  }


def train(config, workdir: str, *, overwrite: bool = False, devices=None,
          log: Callable[[str], None] = print, stop_after: Optional[int] = None) -> Dict[str, Any]:
  """Trains (or resumes) the run described by `config` in `workdir`.

  Returns {'step', 'loss', 'state'} of the final step. `stop_after` ends the run early at that
  step (after saving), as a killed run would -- used to test resumption.
  Raises ConfigError for bad config, WorkdirError for a workdir holding another run, and
  NonFiniteLossError (without saving) when the loss or gradient stops being finite.
  """
  setup = make_setup(config, devices)     # all validation happens here, before compiling
  prepare_workdir(config, workdir, overwrite)
  is_main = jax.process_index() == 0
  info = model_info(setup)
  if is_main:
    with open(os.path.join(workdir, 'model_info.json'), 'w') as f:
      json.dump(info, f, indent=2)
    log(f'model: {info["param_count"]:,} parameters; mixers {",".join(info["mixers"])}; '
        f'generation state {info["state_size"]:,} floats/sequence; devices: {len(setup.mesh.devices.flat)}')

  t = config.train
  graphdef, rest, state = init_state(setup)
  checkpointer = Checkpointer(os.path.join(workdir, 'checkpoints'), keep=t.keep_checkpoints)
  start_step = 0
  latest = checkpointer.latest_step()
  if latest is not None:
    state = checkpointer.restore(latest, state)
    start_step = int(latest)
    log(f'resumed from checkpoint at step {start_step}')
  metrics_path = os.path.join(workdir, METRICS_FILE)
  kept_rows = _read_metrics_file(metrics_path, start_step)
  if is_main:
    with open(metrics_path, 'w') as f:
      f.writelines(json.dumps(row) + '\n' for row in kept_rows)

  end_step = t.num_steps if stop_after is None else min(t.num_steps, stop_after)
  if start_step >= end_step:
    checkpointer.close()
    return {'step': start_step, 'loss': kept_rows[-1]['loss'] if kept_rows else None,
            'state': state}

  # Compile once per chunk length (at most two: the full chunk and a final remainder).
  compiled = {}
  compile_start = time.time()

  def train_fn(num):
    if num not in compiled:
      compiled[num] = make_train_fn(setup, graphdef, rest, num).lower(state).compile()
    return compiled[num]

  train_fn(min(t.steps_per_call, end_step - start_step))
  log(f'compiled train step in {time.time() - compile_start:.1f}s')

  writer = None
  if is_main:
    from tensorboardX import SummaryWriter
    writer = SummaryWriter(os.path.join(workdir, 'tensorboard'))
  progress = None
  if is_main and t.progress:
    from tqdm import tqdm
    progress = tqdm(total=end_step, initial=start_step, desc='train', unit='step',
                    dynamic_ncols=True)

  metrics_file = open(metrics_path, 'a') if is_main else None
  last = {'step': start_step, 'loss': None}
  timer = {'time': time.time(), 'step': start_step}

  def consume(first_step, metrics):
    """Reads one call's metrics on the host: checks finiteness, logs."""
    host = jax.device_get(metrics)
    losses, norms = np.asarray(host['loss']), np.asarray(host['grad_norm'])
    bad = np.flatnonzero(~(np.isfinite(losses) & np.isfinite(norms)))
    if bad.size:
      step = first_step + int(bad[0]) + 1
      good = checkpointer.latest_step()
      raise NonFiniteLossError(
          f'loss or gradient became non-finite at step {step} (loss={losses[bad[0]]}); '
          f'stopped without saving; last good checkpoint: '
          f'{"step " + str(good) if good is not None else "none"}')
    now = time.time()
    count = len(losses)
    rate = (first_step + count - timer['step']) / max(now - timer['time'], 1e-9)
    timer.update(time=now, step=first_step + count)
    for i in range(count):
      step = first_step + i + 1
      if step % t.log_every == 0 or step == end_step:
        row = {'step': step, **{k: float(np.asarray(v)[i]) for k, v in host.items()},
               'steps_per_sec': rate, 'examples_per_sec': rate * t.batch_size}
        if metrics_file is not None:
          metrics_file.write(json.dumps(row) + '\n')
          for key, value in row.items():
            if key != 'step':
              writer.add_scalar(key, value, step)
    last.update(step=first_step + count, loss=float(losses[-1]))
    if progress is not None:
      progress.update(count)
      progress.set_postfix(loss=f'{losses[-1]:.4f}', steps_per_s=f'{rate:.1f}')

  step = start_step
  pending = None
  try:
    while step < end_step:
      num = min(t.steps_per_call, end_step - step)
      state, metrics = train_fn(num)(state)      # dispatch; runs while we read the last one
      if pending is not None:
        consume(*pending)
      pending = (step, metrics)
      step += num
      if step % t.checkpoint_every == 0 or step == end_step:
        consume(*pending)                         # never save a state whose loss is not finite
        pending = None
        checkpointer.save(step, state)
        if metrics_file is not None:
          metrics_file.flush()
    if pending is not None:
      consume(*pending)
  finally:
    if progress is not None:
      progress.close()
    if metrics_file is not None:
      metrics_file.close()
    if writer is not None:
      writer.close()
    checkpointer.close()
  return {**last, 'state': state}


def restore_model(workdir: str, checkpoint_step: Optional[int] = None, config=None):
  """Rebuilds a run's model with the parameters of a checkpoint (latest complete by default).

  Returns (config, task, model, step).
  """
  config = config if config is not None else load_config(workdir)
  setup = make_setup(config, devices=jax.devices()[:1])
  graphdef, rest, state = init_state(setup)
  checkpointer = Checkpointer(os.path.join(workdir, 'checkpoints'), keep=1, read_only=True)
  steps = checkpointer.all_steps()
  if not steps:
    raise WorkdirError(f'{workdir}/checkpoints holds no complete checkpoint')
  step = max(steps) if checkpoint_step is None else checkpoint_step
  if step not in steps:
    raise WorkdirError(f'--checkpoint={step} not found; available steps: '
                       f'{", ".join(map(str, sorted(steps)))}')
  state = checkpointer.restore(step, state)
  checkpointer.close()
  model = nnx.merge(graphdef, state['params'], rest)
  return config, setup.task, model, int(step)
