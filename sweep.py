"""Run a sweep of training runs (e.g. every mixer at matched size), evaluate each, tabulate.

  python sweep.py --sweep configs/sweeps/mixer_zoo.py --workdir runs/mixer_zoo [--only a,b]

A sweep file defines `get_sweep() -> dict` with keys
  config:        'configs/<task>.py:<variant>' every member starts from
  overrides:     {'train.num_steps': 2000, ...} applied to every member
  members:       [{'name': 'mamba', 'model.mixer': 'mamba', ...}, ...]
  match_params:  target parameter count (0: off); each member's model.d_model is chosen so its
                 parameter count is closest to it (multiples of model.num_heads)
  suite:         evaluation suite for the table; report: evaluator-specific table options
Each member trains in <workdir>/<name> (re-running resumes or skips finished members) and is
evaluated; <workdir>/summary.json, summary.md and summary.png collect the results.
"""
from __future__ import annotations

import importlib.util
import json
import os

from absl import app, flags

from cli import fail, parse_flags
from models.zoo import count_params, match_width  # noqa: F401  (moved; re-exported)

_SWEEP = flags.DEFINE_string('sweep', None, 'Sweep file (configs/sweeps/*.py).')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory holding one run per member.')
_ONLY = flags.DEFINE_list('only', [], 'Run only these members.')
_NUM_PROMPTS = flags.DEFINE_integer('num_prompts', 0, 'Evaluation prompts (0: config).')
_OVERWRITE = flags.DEFINE_bool('overwrite', False, 'Replace member runs whose config changed.')


def _load(path):
  spec = importlib.util.spec_from_file_location('_sweep', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


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
  path, _, variant = sweep['config'].partition(':')
  config = _load(path).get_config(variant or None)
  for key, value in {**sweep.get('overrides', {}), **member}.items():
    if key != 'name':
      set_key(config, key, value)
  if sweep.get('match_params'):
    match_width(config, sweep['match_params'])
  return config


def main(argv):
  from cli import quiet_logs
  quiet_logs()
  if len(argv) > 1:
    fail(f'unexpected arguments {argv[1:]}')
  if not _SWEEP.value or not _WORKDIR.value:
    fail('--sweep and --workdir are required')
  from absl import logging
  logging.set_verbosity(logging.WARNING)
  import numpy as np
  from analysis.base import make_model_fns
  from analysis.evaluators import get_evaluator
  from data import TASKS
  from training.loop import restore_model, train
  sweep = _load(_SWEEP.value).get_sweep()
  members = [m for m in sweep['members'] if not _ONLY.value or m['name'] in _ONLY.value]
  unknown = set(_ONLY.value) - {m['name'] for m in sweep['members']}
  if unknown:
    fail(f'--only names unknown members {sorted(unknown)}; known: '
         f'{", ".join(m["name"] for m in sweep["members"])}')
  configs = {}
  for member in members:  # validate every member before training any
    try:
      configs[member['name']] = member_config(sweep, member)
    except (KeyError, ValueError) as e:
      fail(f'member {member["name"]}: {e}')
  os.makedirs(_WORKDIR.value, exist_ok=True)
  summary_path = os.path.join(_WORKDIR.value, 'summary.json')
  summary = {}
  if os.path.exists(summary_path):
    with open(summary_path) as f:
      summary = json.load(f)
  for member in members:
    name, config = member['name'], configs[member['name']]
    workdir = os.path.join(_WORKDIR.value, name)
    print(f'=== {name}: d_model={config.model.d_model}', flush=True)
    train(config, workdir, overwrite=_OVERWRITE.value)
    config, task, model, step = restore_model(workdir)
    evaluator = get_evaluator(TASKS[config.task.name].eval_family)
    suite = sweep.get('suite') or evaluator.SUITES[0]
    result = evaluator.run_suite(suite, make_model_fns(model, task), task, config,
                                 num_prompts=_NUM_PROMPTS.value or config.eval.num_prompts,
                                 seed=config.eval.seed, batch_size=config.eval.batch_size)
    os.makedirs(os.path.join(workdir, 'eval'), exist_ok=True)
    with open(os.path.join(workdir, 'eval', f'{suite}.json'), 'w') as f:
      json.dump(result, f)
    evaluator.plot(result, os.path.join(workdir, 'eval', f'{suite}.png'))
    with open(os.path.join(workdir, 'model_info.json')) as f:
      info = json.load(f)
    with open(os.path.join(workdir, 'metrics.jsonl')) as f:
      rates = [json.loads(line)['steps_per_sec'] for line in f]
    summary[name] = {'task': config.task.name, 'mixer': config.model.mixer, 'd_model': config.model.d_model,
                     'params': info['param_count'], 'state_size': info['state_size'],
                     'steps_per_sec': float(np.median(rates)) if rates else None,
                     'steps': step, 'suite': suite, 'result': result}
    with open(summary_path, 'w') as f:
      json.dump(summary, f)
  write_tables(sweep, summary, _WORKDIR.value)


def write_tables(sweep, summary, workdir):
  from data import TASKS
  task_name = next(iter(summary.values()))['task']
  from analysis import sweep_tables
  family = TASKS[task_name].eval_family
  lines = sweep_tables.TABLES[family](summary, **sweep.get('report', {}))
  with open(os.path.join(workdir, 'summary.md'), 'w') as f:
    f.write(lines + '\n')
  sweep_tables.PLOTS[family](summary, os.path.join(workdir, 'summary.png'))
  print(lines)


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
