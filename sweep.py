"""Run a sweep of training runs (e.g. every mixer at matched size), evaluate each, tabulate.

  python sweep.py --sweep configs/sweeps/mixer_zoo.py --workdir runs/mixer_zoo [--only a,b]
  python sweep.py --sweep ... --workdir ... --worker 3 --num-workers 8   # one machine's share
  python sweep.py --sweep ... --workdir ... --gather                      # table only

The sweep file format is described in studies/sweeps.py. Members that share every shape
train together as one vmapped run. Each run lives in <workdir>/<run> (re-running resumes or
skips finished runs). Without --worker every run is trained here and the table written
(<workdir>/summary.{json,md,png}); with --worker I --num-workers N only the runs of share I
(deterministic, by run name) are trained, e.g. one task of a SLURM job array each; --gather
writes the table from whatever has finished, training nothing.
"""
from __future__ import annotations

import json
import numbers
import os

from absl import app, flags

from cli import fail, parse_flags

_SWEEP = flags.DEFINE_string('sweep', None, 'Sweep file (configs/sweeps/*.py).')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory holding one run per member.')
_ONLY = flags.DEFINE_list('only', [], 'Run only these members.')
_NUM_PROMPTS = flags.DEFINE_integer('num_prompts', 0, 'Evaluation prompts (0: config).')
_OVERWRITE = flags.DEFINE_bool('overwrite', False, 'Replace member runs whose config changed.')
_WORKER = flags.DEFINE_integer('worker', None, 'Train only share I of the runs (0-based).')
_NUM_WORKERS = flags.DEFINE_integer('num-workers', None, 'Number of shares (with --worker).')
_GATHER = flags.DEFINE_bool('gather', False, 'Write the table from finished runs only.')


def main(argv):
  from cli import quiet_logs
  quiet_logs()
  import os
  if os.environ.get('ICL_KEEP_FREED_MEMORY') == '1':   # as train.py (README, Speed)
    from training.perf import keep_freed_memory
    keep_freed_memory()
  if len(argv) > 1:
    fail(f'unexpected arguments {argv[1:]}')
  if not _SWEEP.value or not _WORKDIR.value:
    fail('--sweep and --workdir are required')
  worker, num_workers = _WORKER.value, _NUM_WORKERS.value
  if (worker is None) != (num_workers is None):
    fail('--worker and --num-workers go together')
  if num_workers is not None and (num_workers < 1 or not 0 <= worker < num_workers):
    fail(f'--worker={worker} --num-workers={num_workers} is invalid: need '
         f'0 <= worker < num-workers')
  if _NUM_PROMPTS.value < 0:
    fail(f'--num_prompts={_NUM_PROMPTS.value} is invalid: must be >= 0 (0: the config\'s)')
  if _GATHER.value and worker is not None:
    fail('--gather trains nothing: drop --worker / --num-workers')
  from core import ConfigError
  from studies import sweeps
  from training.workdir import WorkdirError, check_writable_dir
  try:
    try:
      sweep = sweeps.load_sweep(_SWEEP.value)
    except ConfigError:
      raise
    except Exception as e:  # pylint: disable=broad-except  (get_sweep() raised, wrong shapes)
      raise ConfigError(f'sweep file {_SWEEP.value!r} is malformed: {type(e).__name__}: '
                        f'{(str(e).strip().splitlines() or [""])[0]}') from None
    seeds = sweep.get('seeds', [0])
    if isinstance(seeds, (str, bytes, dict)) or not hasattr(seeds, '__iter__') or not list(
        seeds) or not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) and s >= 0
                          for s in seeds):
      raise ConfigError(f'sweep file {_SWEEP.value!r}: seeds={seeds!r} is invalid: a non-empty '
                        f'list of integers >= 0')
    known = [m['name'] for m in sweep['members']]
    unknown = sorted(set(_ONLY.value) - set(known))
    if unknown:
      raise ConfigError(f'--only names unknown members {unknown}; known: {", ".join(known)}')
    members = [m for m in sweep['members'] if not _ONLY.value or m['name'] in _ONLY.value]
    groups = sweeps.plan_groups(sweep, members)   # validates every member before training
    if not _GATHER.value:
      from cli import validate_eval_config
      from training.setup import make_setup
      for group in groups:
        make_setup(group.config)
        validate_eval_config(group.config)
    check_writable_dir(_WORKDIR.value)
  except (ConfigError, WorkdirError) as e:
    fail(str(e))
  except (KeyError, ValueError) as e:
    fail(str(e.args[0]) if e.args else type(e).__name__)
  try:
    os.makedirs(_WORKDIR.value, exist_ok=True)
  except OSError as e:
    from training.workdir import describe_os_error
    fail(describe_os_error(e, f'creating --workdir {_WORKDIR.value}'))
  if not _GATHER.value:
    from training.loop import NonFiniteLossError
    mine = sweeps.worker_groups(groups, worker, num_workers or 1)
    for group in mine:
      if sweeps.finished(group, _WORKDIR.value) and not _OVERWRITE.value:
        print(f'=== {group.name}: finished, skipped', flush=True)
        continue
      try:
        sweeps.run_group(group, sweep, _WORKDIR.value, overwrite=_OVERWRITE.value,
                         num_prompts=_NUM_PROMPTS.value)
      except (ConfigError, WorkdirError, NonFiniteLossError) as e:
        fail(f'run {group.name}: {e}')
    if worker is not None:
      print(f'worker {worker}/{num_workers}: {len(mine)} run(s) done; gather with --gather')
      return
  summary = sweeps.gather(groups, _WORKDIR.value)
  if not summary:
    fail(f'no finished runs in {_WORKDIR.value} yet')
  missing = sorted({m['name'] for m in members} - set(summary))
  if missing:
    print(f'not finished yet (left out of the table): {", ".join(missing)}')
  with open(os.path.join(_WORKDIR.value, 'summary.json'), 'w') as f:
    json.dump(summary, f)
  write_tables(sweep, summary, _WORKDIR.value)


def write_tables(sweep, summary, workdir):
  from analysis import sweep_tables
  from data import TASKS
  task_name = next(iter(summary.values()))['task']
  family = sweep.get('table') or TASKS.metadata(task_name)['eval_family']
  lines = sweep_tables.TABLES[family](summary, **sweep.get('report', {}))
  with open(os.path.join(workdir, 'summary.md'), 'w') as f:
    f.write(lines + '\n')
  sweep_tables.PLOTS[family](summary, os.path.join(workdir, 'summary.png'))
  print(lines)


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
