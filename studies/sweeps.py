"""Sweeps: members -> configs -> vmapped runs -> evaluated results, split across workers.

A sweep file defines `get_sweep() -> dict` with keys
  config:        'configs/<task>.py:<variant>' every member starts from
  overrides:     {'train.num_steps': 2000, ...} applied to every member
  members:       [{'name': 'mamba', 'model.mixer': 'mamba', ...}, ...]
  seeds:         seeds every member is trained with (default: the config's one seed)
  match_params:  target parameter count (0: off); each member's model.d_model is chosen so its
                 parameter count is closest to it
  suite:         evaluation suite for the table; report: evaluator-specific table options

Members (times seeds) whose configs differ only in keys that change no shapes (the seed,
learning rate, weight decay, a task's per-seed keys) train together as one vmapped run
(`train.num_seeds`, `train.seed_values`): the run `<workdir>/<group>` holds them all.

The logic of `sweep.py`, above both training/ (which trains the runs) and analysis/ (which
evaluates them); studies build their member configs with `member_config`.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
from typing import Any, Dict, List, Optional

import numpy as np

from core import ConfigError


def load_module(path: str, what: str):
  if not os.path.isfile(path):
    raise ConfigError(f'{what} {path!r} does not exist')
  spec = importlib.util.spec_from_file_location('_sweep_file', path)
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
  except Exception as e:  # a broken sweep file: one line naming it
    raise ConfigError(f'{what} {path!r} failed to load: {type(e).__name__}: {e}')
  return module


def load_sweep(path: str) -> Dict[str, Any]:
  module = load_module(path, 'sweep file')
  if not hasattr(module, 'get_sweep'):
    raise ConfigError(f'sweep file {path!r} defines no get_sweep()')
  sweep = module.get_sweep()
  for key in ('config', 'members'):
    if key not in sweep:
      raise ConfigError(f'sweep file {path!r}: get_sweep() lacks {key!r}')
  names = [m.get('name') for m in sweep['members']]
  if len(set(names)) != len(names) or any(not n for n in names):
    raise ConfigError(f'sweep file {path!r}: every member needs a unique name')
  return sweep


def set_key(config, dotted: str, value):
  node = config
  parts = dotted.split('.')
  for part in parts[:-1]:
    if part not in node:
      raise KeyError(f'sweep override {dotted!r}: no section {part!r}')
    node = node[part]
  if parts[-1] not in node:
    raise KeyError(f'sweep override {dotted!r}: unknown key; known: {", ".join(sorted(node))}')
  node[parts[-1]] = value


def member_config(sweep, member):
  """The config of one member (before seeds are attached)."""
  path, _, variant = sweep['config'].partition(':')
  config = load_module(path, 'config file').get_config(variant or None)
  for key, value in {**sweep.get('overrides', {}), **member}.items():
    if key != 'name':
      set_key(config, key, value)
  if sweep.get('match_params'):
    from data import get_task
    from models.zoo import match_width
    match_width(config.model, get_task(config.task).io(), sweep['match_params'])
  return config


@dataclasses.dataclass
class Unit:
  member: str
  seed: int
  values: Dict[str, Any]       # per-seed keys this member sets ('train.learning_rate': ...)


@dataclasses.dataclass
class Group:
  name: str
  config: Any                  # the vmapped run's config
  units: List[Unit]


def _shared_part(config, per_seed_keys):
  from training.loop import flatten_config, config_to_dict
  flat = flatten_config(config_to_dict(config))
  varying = {k: flat[k] for k in per_seed_keys if k in flat}
  for k in per_seed_keys + ('train.num_seeds', 'train.seed_values'):
    flat.pop(k, None)
  return json.dumps(flat, sort_keys=True), varying


def plan_groups(sweep, members) -> List[Group]:
  """Members x seeds, grouped into vmapped runs by everything but their per-seed keys."""
  from data import TASKS
  from training.setup import PER_SEED_TRAIN_KEYS
  groups: Dict[str, Group] = {}
  order = []
  for member in members:
    config = member_config(sweep, member)
    task_keys = tuple(f'task.{k}' for k in TASKS.get(config.task.name).per_seed_keys)
    per_seed_keys = tuple(f'train.{k}' for k in PER_SEED_TRAIN_KEYS) + task_keys
    shared, varying = _shared_part(config, per_seed_keys)
    seeds = list(sweep.get('seeds', [config.train.seed]))
    if shared not in groups:
      groups[shared] = Group(member['name'], config, [])
      order.append(shared)
    for seed in seeds:
      groups[shared].units.append(Unit(member['name'], int(seed),
                                       {k: v for k, v in varying.items() if k != 'train.seed'}))
  result = []
  for shared in order:
    group = groups[shared]
    n = len(group.units)
    config = group.config
    config.train.num_seeds = n
    parts = [f'train.seed={",".join(str(u.seed) for u in group.units)}']
    for key in sorted(group.units[0].values):
      values = [u.values[key] for u in group.units]
      if len(set(values)) > 1:
        parts.append(f'{key}={",".join(repr(v) for v in values)}')
    config.train.seed_values = ';'.join(parts) if n > 1 or group.units[0].seed != \
        config.train.seed else ''
    if n > 1 and len({u.member for u in group.units}) > 1:
      group.name = f'{group.units[0].member}+{len({u.member for u in group.units}) - 1}'
    result.append(group)
  return result


def worker_groups(groups: List[Group], worker: Optional[int], num_workers: int) -> List[Group]:
  """The deterministic share of `worker` (by sorted group name), or all groups."""
  if worker is None:
    return groups
  ordered = sorted(groups, key=lambda g: g.name)
  return [g for i, g in enumerate(ordered) if i % num_workers == worker]


RESULT_FILE = 'sweep_result.json'


def finished(group: Group, workdir: str) -> bool:
  path = os.path.join(workdir, group.name, RESULT_FILE)
  if not os.path.exists(path):
    return False
  from training.loop import config_differences, config_to_dict
  with open(path) as f:
    saved = json.load(f)
  return not config_differences(saved['config'], config_to_dict(group.config), ignore=())


def run_group(group: Group, sweep, workdir: str, *, overwrite: bool, num_prompts: int,
              log=print) -> Dict[str, Any]:
  """Trains (or resumes) one group, evaluates every seed, writes its result file."""
  from analysis.evaluators import get_evaluator
  from analysis.run_eval import evaluate_seed, write_json_atomic
  from analysis.train_suites import training_hooks
  from data import TASKS
  from training.loop import config_to_dict, restore_run, train
  run_dir = os.path.join(workdir, group.name)
  log(f'=== {group.name}: {len(group.units)} seed(s) of '
      f'{", ".join(sorted({u.member for u in group.units}))}; d_model={group.config.model.d_model}')
  train(group.config, run_dir, overwrite=overwrite, log=log,
        hooks=training_hooks(group.config))
  run = restore_run(run_dir)
  config = run['config']
  evaluator = get_evaluator(TASKS.metadata(config.task.name)['eval_family'])
  suite = sweep.get('suite') or evaluator.SUITES[0]
  with open(os.path.join(run_dir, 'model_info.json')) as f:
    info = json.load(f)
  with open(os.path.join(run_dir, 'metrics.jsonl')) as f:
    rows = [json.loads(line) for line in f if line.strip()]
  rates = [r['steps_per_sec'] for r in rows if r.get('kind', 'train') == 'train']
  evals = [r for r in rows if r.get('kind') == 'eval']
  members: Dict[str, Any] = {}
  for index, unit in enumerate(group.units):
    if sweep.get('evaluate', True):
      result = evaluate_seed(run, index, evaluator, suite,
                             num_prompts=num_prompts or config.eval.num_prompts,
                             seed=config.eval.seed)
    else:   # the table reads the scheduled evaluations of training (first and last)
      pick = lambda row: {k: (v[index] if isinstance(v, list) else v) for k, v in row.items()
                          if k.startswith('eval/')}
      result = {'first_eval': pick(evals[0]) if evals else {}, 'first_step': evals[0]['step']
                if evals else None, 'last_eval': pick(evals[-1]) if evals else {},
                'last_step': evals[-1]['step'] if evals else None,
                'evals': [{'step': row['step'], **pick(row)} for row in evals],
                'objective': config.objective.to_dict()}
    entry = members.setdefault(unit.member, {
        'task': config.task.name, 'mixer': config.model.mixer, 'd_model': config.model.d_model,
        'params': info['param_count'], 'state_size': info['state_size'],
        'steps_per_sec': float(np.median(rates)) if rates else None,
        'seeds_in_run': len(group.units), 'steps': run['step'], 'suite': suite,
        'run': group.name, 'seeds': [], 'seed_results': []})
    entry['seeds'].append(unit.seed)
    entry['seed_results'].append(result)
  payload = {'config': config_to_dict(group.config), 'members': members}
  write_json_atomic(os.path.join(run_dir, RESULT_FILE), payload)
  return members


def gather(groups: List[Group], workdir: str) -> Dict[str, Any]:
  """Summary rows of every finished member (one per member; seeds averaged)."""
  summary = {}
  for group in groups:
    path = os.path.join(workdir, group.name, RESULT_FILE)
    if not finished(group, workdir):
      continue
    with open(path) as f:
      members = json.load(f)['members']
    for name, entry in members.items():
      summary[name] = {**entry, 'result': mean_result(entry['seed_results'])}
  return summary


def mean_result(results: List[dict]) -> dict:
  """A result whose model curves are the mean over seeds (baselines: the first seed's)."""
  if len(results) == 1:
    return results[0]
  out = json.loads(json.dumps(results[0]))

  def average(*values):
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
      return float(np.mean(values))
    if all(isinstance(v, list) for v in values) and len({len(v) for v in values}) == 1:
      return [average(*items) for items in zip(*values)]
    if all(isinstance(v, dict) for v in values):
      return {k: average(*[v[k] for v in values]) for k in values[0]}
    if all(v is None or isinstance(v, (int, float)) for v in values):
      finite = [v for v in values if v is not None]
      return float(np.mean(finite)) if finite else None
    return values[0]

  for container in ('curves', 'metrics'):
    if container in out and 'model' in out[container]:
      out[container]['model'] = average(*[r[container]['model'] for r in results])
  out['num_seeds'] = len(results)
  return out
