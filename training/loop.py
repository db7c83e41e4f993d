"""The training loop: one compiled step for every task, objective and number of seeds.

A run is a pure function of its config: the batch for step t of seed i is sampled on the
device from `fold_in(fold_in(key(seed_i), 1), t)`, so resuming, re-running and sharding over
any number of devices see the same data. `steps_per_call` steps are fused into one compiled
call (`lax.scan`); the host dispatches the next call before reading the previous call's
metrics, so the device never waits. Everything else (metrics, progress, checkpoints,
scheduled evaluations) is a hook (training/hooks.py); a caller adds its own hooks as factories
(`train(..., hooks=[...])`, runlib/hooks.py), e.g. the full suites of analysis/train_suites.py.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import jax
import ml_collections
import numpy as np

from core import ConfigError, require
from runlib.checkpoint import Checkpointer
from runlib.hooks import HookContext
from runlib.positions import make_eval_fn
from runlib.reference import ReferenceStore
from runlib.restored import seed_model
from training import hooks as hooks_lib
from training.init_from import load_init_params
from training.setup import Setup, eval_steps, log_spaced_steps, make_setup
from training.step import init_state, make_train_fn
from training.workdir import (WorkdirError, WorkdirLock, check_writable_dir,
                              describe_os_error, find_os_error, read_metrics)

# Keys that may differ when a run is resumed (extending a run, changing how often it logs).
RESUMABLE_DIFFERENCES = ('train.num_steps', 'train.log_every', 'train.progress',
                         'train.checkpoint_every', 'train.keep_checkpoints',
                         'train.keep_log_checkpoints', 'eval')
CONFIG_FILE = 'config.json'
METRICS_FILE = 'metrics.jsonl'


class NonFiniteLossError(RuntimeError):
  pass


def config_to_dict(config) -> Dict[str, Any]:
  return json.loads(config.to_json())


def load_config(workdir: str) -> ml_collections.ConfigDict:
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.isdir(workdir):
    raise WorkdirError(f'{workdir} does not exist or is not a directory')
  if not os.path.exists(path):
    raise WorkdirError(f'{workdir} holds no {CONFIG_FILE}: is it a training work directory?')
  try:
    with open(path) as f:
      data = json.load(f)
  except (OSError, ValueError) as e:
    raise WorkdirError(f'{path} cannot be read ({e.__class__.__name__}: '
                       f'{str(e).splitlines()[0] if str(e) else ""})')
  if not isinstance(data, dict):
    raise WorkdirError(f'{path} holds a JSON {type(data).__name__}, not a config object')
  return ml_collections.ConfigDict(_with_new_keys(data))


def _with_new_keys(saved: Dict[str, Any]) -> Dict[str, Any]:
  """A saved config with the train / eval keys added to the code since it was written, at
  their defaults (which keep the earlier behaviour)."""
  from configs.common import eval_config, train_config
  for section, defaults in (('train', train_config()), ('eval', eval_config())):
    if isinstance(saved.get(section), dict):
      for key, value in defaults.to_dict().items():
        saved[section].setdefault(key, value)
  return saved


def flatten_config(tree, prefix=''):
  """A nested dict as one level of dotted keys ('train.learning_rate': value)."""
  out = {}
  for key, value in tree.items():
    name = f'{prefix}{key}'
    if isinstance(value, dict):
      out.update(flatten_config(value, name + '.'))
    else:
      out[name] = value
  return out


def config_differences(old: Dict[str, Any], new: Dict[str, Any], ignore=RESUMABLE_DIFFERENCES):
  """Keys whose values differ, ignoring the ones a resumed run may change.

  Only keys both configs hold are compared: a key the saved config lacks was added to the code
  after the run was written, and every new key defaults to the earlier behaviour.
  """
  old_flat, new_flat = flatten_config(old), flatten_config(new)
  diffs = []
  for key in sorted(set(old_flat) & set(new_flat)):
    if any(key == k or key.startswith(k + '.') for k in ignore):
      continue
    if old_flat.get(key, '<missing>') != new_flat.get(key, '<missing>'):
      diffs.append(f'{key}: {old_flat.get(key, "<missing>")!r} -> {new_flat.get(key, "<missing>")!r}')
  return diffs


def check_workdir(config, workdir: str, overwrite: bool) -> bool:
  """Refuses (before anything is written) a workdir that is unusable or holds another run.

  Returns whether an existing run of another config must be cleared (with --overwrite).
  """
  check_writable_dir(workdir)
  config_path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(config_path):
    return False
  try:
    with open(config_path) as f:
      old = json.load(f)
  except (OSError, ValueError) as e:
    raise WorkdirError(f'{config_path} is unreadable ({e.__class__.__name__}); pass '
                       f'--overwrite to replace the run or choose another --workdir')
  diffs = config_differences(old, config_to_dict(config))
  if diffs and not overwrite:
    raise WorkdirError(f'{workdir} holds a run of a different config ({"; ".join(diffs[:3])}'
                       f'{"; ..." if len(diffs) > 3 else ""}); pass --overwrite to replace it '
                       f'or choose another --workdir')
  return bool(diffs)


def prepare_workdir(config, workdir: str, clear: bool) -> None:
  """Clears a replaced run (with --overwrite) and writes the resolved config."""
  if clear:
    for name in ('checkpoints', 'tensorboard', 'eval', 'reference'):
      shutil.rmtree(os.path.join(workdir, name), ignore_errors=True)
    for name in (METRICS_FILE, 'model_info.json'):
      if os.path.exists(os.path.join(workdir, name)):
        os.remove(os.path.join(workdir, name))
  hooks_lib.write_json_atomic(os.path.join(workdir, CONFIG_FILE), config_to_dict(config))


def model_info(setup: Setup) -> Dict[str, Any]:
  from models.model import param_count
  blocks = setup.model.blocks
  return {
      'param_count': param_count(setup.model),
      'state_size': setup.model.state_size(),
      'mixers': list(setup.model.mixer_names),
      'per_layer': [{'mixer': name, 'param_count': param_count(block.mixer),
                     'state_size': int(block.mixer.state_size())}
                    for name, block in zip(setup.model.mixer_names, blocks)],
      'context_length': setup.model.max_len,
      'num_seeds': setup.num_seeds,
      'seeds': setup.seeds,
  }


class Loop:
  """The host side of a run: dispatches compiled calls, reads metrics one call behind."""

  def __init__(self, setup, graphdef, rest, state, frozen, writer, hooks, frozen_shared,
               checkpointer):
    self.setup, self.graphdef, self.rest, self.state = setup, graphdef, rest, state
    self.frozen, self.writer, self.hooks = frozen, writer, hooks
    self.frozen_shared, self.checkpointer = frozen_shared, checkpointer
    self.compiled: Dict[int, Any] = {}
    self.pending = None
    self.last_loss = None

  def train_fn(self, num: int):
    """At most two compilations: the full chunk and single steps (to land on events)."""
    if num not in self.compiled:
      fn = make_train_fn(self.setup, self.graphdef, num, self.frozen_shared)
      self.compiled[num] = fn.lower(self.state, self.rest, self.frozen).compile()
    return self.compiled[num]

  def drain(self) -> None:
    """Reads the pending call's metrics: checks they are finite, hands them to the hooks."""
    if self.pending is None:
      return
    first_step, metrics = self.pending
    self.pending = None
    host = {k: np.asarray(v) for k, v in jax.device_get(metrics).items()}
    finite = np.isfinite(host['loss']) & np.isfinite(host['grad_norm'])
    if not finite.all():
      step_index, seed_index = np.argwhere(~finite)[0]
      good = self.checkpointer.latest_step()
      seed = self.setup.seeds[seed_index]
      raise NonFiniteLossError(
          f'loss or gradient became non-finite at step {first_step + step_index + 1}'
          f'{f" (seed {seed})" if self.setup.num_seeds > 1 else ""} '
          f'(loss={host["loss"][step_index, seed_index]}); stopped without saving; last '
          f'good checkpoint: {"step " + str(good) if good is not None else "none"}')
    for hook in self.hooks:
      hook.on_metrics(first_step, host)
    self.last_loss = host['loss'][-1]

  def run(self, start_step: int, end_step: int) -> None:
    t = self.setup.config.train
    stops = set()
    for hook in self.hooks:
      stops |= hook.stops()
    stops = sorted(s for s in stops if start_step < s <= end_step) + [end_step]
    if start_step == 0:
      for hook in self.hooks:
        hook.at_start(self)
    step = start_step
    while step < end_step:
      target = next(s for s in stops if s > step)
      num = t.steps_per_call if step + t.steps_per_call <= target else 1
      self.state, metrics = self.train_fn(num)(self.state, self.rest, self.frozen)
      if self.pending is not None:   # read the previous call while this one runs
        self.drain()
      self.pending = (step, metrics)
      step += num
      for hook in self.hooks:
        hook.after_call(self, step)
    self.drain()


HookFactory = Callable[[HookContext], hooks_lib.Hook]


def train(config, workdir: str, *, overwrite: bool = False, devices=None,
          log: Callable[[str], None] = print, stop_after: Optional[int] = None,
          hooks: Sequence[HookFactory] = ()) -> Dict[str, Any]:
  """Trains (or resumes) the run described by `config` in `workdir`.

  Returns {'step', 'loss', 'state'} of the final step (`loss` per seed when num_seeds > 1).
  `stop_after` ends the run early at that step (after saving), as a killed run would -- used
  to test resumption. `hooks` are factories of the caller's own hooks, called once the run is
  set up; `eval.train_suites` needs the one from `analysis.train_suites.training_hooks`.
  Raises ConfigError for bad config (before anything is written), WorkdirError for an
  unusable workdir, one holding another run, or a failed write, and NonFiniteLossError
  (without saving) when the loss or gradient stops being finite.
  """
  setup = make_setup(config, devices)     # all validation happens here, before compiling
  check_hooks_given(config, hooks)
  init = None
  if _needs_init_params(setup, workdir):   # train.init_from: checked before anything is written
    init = load_init_params(setup, log)
  is_main = jax.process_index() == 0
  clear = check_workdir(config, workdir, overwrite)
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise WorkdirError(describe_os_error(e, f'creating --workdir {workdir}'))
  with WorkdirLock(workdir) if is_main else _nothing():
    try:
      return _train_locked(setup, init, workdir, clear, is_main, log, stop_after, hooks)
    except (ConfigError, WorkdirError, NonFiniteLossError):
      raise
    except Exception as e:  # a full disk or a failed write, possibly wrapped by orbax's threads
      os_error = find_os_error(e)
      if os_error is None:
        raise
      raise WorkdirError(describe_os_error(os_error, 'writing the run') +
                         '; the last complete checkpoint is intact: re-run to resume') from None


def check_hooks_given(config, hooks: Sequence[HookFactory]) -> None:
  """Raises ConfigError when `eval.train_suites` is set but no given hook `serves` it: the
  suites are analysis's, which training does not import, and a run that skipped them
  silently would look complete."""
  text = str(config.eval.train_suites).strip()
  served = {getattr(factory, 'serves', None) for factory in hooks}
  require(not text or 'eval.train_suites' in served, 'eval.train_suites', text,
          'training.loop.train runs these suites only when given their hook: pass '
          'hooks=analysis.train_suites.training_hooks(config), as train.py, sweep.py and '
          'studies/runner.py do')


def _needs_init_params(setup: Setup, workdir: str) -> bool:
  """A resumed run restores its own checkpoint and stored reference: the run it started from
  may have moved on or gone."""
  if not setup.config.train.init_from:
    return False
  directory = os.path.join(workdir, 'checkpoints')
  resumable = os.path.isdir(directory) and any(d.isdigit() for d in os.listdir(directory))
  needs_reference = setup.objective_metadata['needs_reference']
  return not resumable or (needs_reference and not os.path.isdir(
      os.path.join(workdir, 'reference', 'params')))


class _nothing:
  def __enter__(self):
    return self

  def __exit__(self, *exc):
    return False


def _train_locked(setup, init, workdir, clear, is_main, log, stop_after, hook_factories):
  config = setup.config
  t = config.train
  if is_main:
    prepare_workdir(config, workdir, clear)
    info = model_info(setup)
    hooks_lib.write_json_atomic(os.path.join(workdir, 'model_info.json'), info)
    log(f'model: {info["param_count"]:,} parameters; mixers {",".join(info["mixers"])}; '
        f'generation state {info["state_size"]:,} floats/sequence; seeds: {setup.seeds}; '
        f'devices: {len(setup.mesh.devices.flat)}')

  if jax.process_count() > 1:    # no process reads the workdir before process 0 prepared it
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices('icl_lab:workdir_prepared')
  graphdef, rest, state = init_state(setup, init.params if init else None)
  reference = ReferenceStore(workdir, setup.mesh)
  frozen, frozen_shared = None, False
  checkpointer = Checkpointer(os.path.join(workdir, 'checkpoints'), keep=t.keep_checkpoints,
                              keep_steps=set(log_spaced_steps(t.num_steps,
                                                              t.keep_log_checkpoints)))
  try:
    start_step, restored = checkpointer.restore_latest_intact(state, log=log)
    if restored is not None:
      state = restored
      log(f'resumed from checkpoint at step {start_step}')
    else:
      start_step = 0
      if init is None and t.init_from:     # no intact checkpoint after all: start over
        init = load_init_params(setup, log)
        graphdef, rest, state = init_state(setup, init.params)
    if setup.objective_metadata['needs_reference']:
      if reference.exists():
        frozen, frozen_shared = reference.restore()
      else:
        frozen, frozen_shared = jax.device_put(init.frozen, reference.replicated), init.frozen_shared
        if is_main or jax.process_count() > 1:
          reference.save(frozen, frozen_shared)
    metrics_path = os.path.join(workdir, METRICS_FILE)
    kept_rows = read_metrics(metrics_path, start_step, warn=log)
    if is_main:
      with open(metrics_path + '.tmp', 'w') as f:
        f.writelines(json.dumps(row) + '\n' for row in kept_rows)
      os.replace(metrics_path + '.tmp', metrics_path)

    end_step = t.num_steps if stop_after is None else min(t.num_steps, stop_after)
    if start_step >= end_step:
      train_rows = [r for r in kept_rows if r.get('kind', 'train') == 'train']
      return {'step': start_step, 'loss': train_rows[-1]['loss'] if train_rows else None,
              'state': state}

    writer = hooks_lib.MetricsWriter(workdir, setup.num_seeds, enabled=is_main)
    eval_fn = make_eval_fn(setup, graphdef, config.eval.train_prompts, config.eval.seed,
                           frozen_shared)
    context = HookContext(setup, graphdef, writer, workdir, tuple(eval_steps(config)),
                          start_step, end_step, enabled=is_main)
    hooks: List[hooks_lib.Hook] = [
        hooks_lib.LogMetrics(writer, t.log_every, end_step, t.batch_size, start_step),
        hooks_lib.ScheduledEval(eval_fn, [s for s in eval_steps(config) if s >= start_step],
                                writer, workdir, setup.seeds, config.eval.train_prompts,
                                enabled=is_main, icl_metric=setup.task.icl_metric),
        *[factory(context) for factory in hook_factories],
        hooks_lib.Checkpoints(checkpointer, t.checkpoint_every,
                              log_spaced_steps(t.num_steps, t.keep_log_checkpoints), end_step),
    ]
    if is_main and t.progress:
      hooks.append(hooks_lib.Progress(start_step, end_step))
    loop = Loop(setup, graphdef, rest, state, frozen, writer, hooks, frozen_shared,
                checkpointer)
    compile_start = time.time()
    loop.train_fn(min(t.steps_per_call, end_step - start_step))
    log(f'compiled train step in {time.time() - compile_start:.1f}s')
    try:
      loop.run(start_step, end_step)
    finally:
      for hook in hooks:
        try:
          hook.close(loop)
        except Exception:  # a failing hook must not hide the error that ended the run
          if loop.pending is None:
            raise
      writer.close()
    loss = loop.last_loss
    return {'step': end_step, 'loss': float(loss[0]) if setup.num_seeds == 1 else
            [float(x) for x in loss], 'state': loop.state}
  finally:
    checkpointer.close()


def restore_run(workdir: str, checkpoint_step: Optional[int] = None, config=None, log=print):
  """A run's config, setup, graphdef, rest_N and params_N at a checkpoint (latest intact by
  default; a damaged latest checkpoint is skipped with a message). Returns a dict."""
  config = config if config is not None else load_config(workdir)
  setup = make_setup(config, devices=jax.devices()[:1])
  graphdef, rest, state = init_state(setup)
  checkpointer = Checkpointer(os.path.join(workdir, 'checkpoints'), keep=1, read_only=True)
  try:
    steps = sorted(checkpointer.all_steps())
    if not steps:
      raise WorkdirError(f'{workdir}/checkpoints holds no complete checkpoint')
    if checkpoint_step is None:
      step, state = checkpointer.restore_latest_intact(state, log=log)
      if state is None:
        raise WorkdirError(f'{workdir}/checkpoints holds no intact checkpoint')
    else:
      if checkpoint_step not in steps:
        raise WorkdirError(f'--checkpoint={checkpoint_step} not found; available steps: '
                           f'{", ".join(map(str, steps))}')
      step, state = checkpoint_step, checkpointer.restore_intact(checkpoint_step, state)
  finally:
    checkpointer.close()
  return {'config': config, 'setup': setup, 'graphdef': graphdef, 'rest': rest,
          'params': state['params'], 'step': int(step), 'steps': steps, 'workdir': workdir,
          'template': state}


def restore_model(workdir: str, checkpoint_step: Optional[int] = None, config=None,
                  seed_index: int = 0):
  """Rebuilds one seed's model at a checkpoint. Returns (config, task, model, step)."""
  run = restore_run(workdir, checkpoint_step, config)
  n = run['setup'].num_seeds
  if not 0 <= seed_index < n:
    raise WorkdirError(f'seed index {seed_index} is out of range: the run has {n} seeds')
  return run['config'], run['setup'].task, seed_model(run, seed_index), run['step']
