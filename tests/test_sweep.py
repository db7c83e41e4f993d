"""Sweep plumbing: width matching against brute force, override errors, summary tables."""
import pytest

from configs.linear_regression import get_config
from models.zoo import count_params, match_width
from studies.sweeps import set_key
from tests.conftest import FAST_COMPILE


@pytest.mark.parametrize('mixer', ['attention', 'gla', 'lstm'])
def test_match_width_finds_the_closest_valid_width(mixer):
  config = get_config('tiny')
  config.model.mixer = mixer
  target = 90_000
  from data import get_task
  io = get_task(config.task).io()
  match_width(config.model, io, target)
  chosen = count_params(config.model, io)
  # Brute force over every width that is a multiple of 2 * num_heads and builds.
  from data.base import ConfigError
  best = None
  for d_model in range(4, 161, 4):
    config.model.d_model = d_model
    try:
      gap = abs(count_params(config.model, io) - target)
    except ConfigError:
      continue
    best = gap if best is None else min(best, gap)
  assert abs(chosen - target) == best


def test_set_key_rejects_unknown_keys():
  config = get_config('tiny')
  set_key(config, 'train.num_steps', 7)
  assert config.train.num_steps == 7
  with pytest.raises(KeyError, match='unknown key'):
    set_key(config, 'train.num_stepz', 7)
  with pytest.raises(KeyError, match='no section'):
    set_key(config, 'trainer.num_steps', 7)


def test_regression_sweep_table_lists_members_and_baselines():
  from analysis.sweep_tables import regression_table
  curve = lambda v: {'mean': [v] * 16, 'lo': [v] * 16, 'hi': [v] * 16}
  result = {'curves': {'model': curve(0.25), 'least_squares': curve(0.0)}, 'task': 'x',
            'num_examples': list(range(16))}
  summary = {'a': dict(mixer='attention', d_model=64, params=1000, state_size=10,
                       steps_per_sec=3.0, result=result)}
  table = regression_table(summary, positions=(1, 15))
  lines = table.splitlines()
  assert lines[2].startswith('| a | attention | 64 | 1,000 | 10 | 3.0 | 0.250 | 0.250 |')
  assert lines[3].startswith('| least_squares (baseline)') and '0.000' in lines[3]


SWEEP_FILE = '''
def get_sweep():
  return {
      'config': 'configs/linear_regression.py:tiny',
      'overrides': {'train.num_steps': 10, 'train.progress': False, 'train.steps_per_call': 5,
                    'train.checkpoint_every': 10, 'train.log_every': 5, 'train.batch_size': 8,
                    'task.n_dims': 4, 'task.n_points': 6, 'model.num_layers': 1,
                    'model.d_model': 16, 'eval.num_log_evals': 0,
                    'train.keep_log_checkpoints': 0},
      'seeds': [0, 1],
      'members': [{'name': 'slow', 'train.learning_rate': 1e-4},
                  {'name': 'fast', 'train.learning_rate': 1e-2},
                  {'name': 'wide', 'model.d_model': 32}],
      'suite': 'in_distribution',
      'report': {'positions': (1, 5)},
  }
'''


def test_members_that_share_shapes_become_one_vmapped_run(tmp_path):
  from studies.sweeps import plan_groups, worker_groups
  from studies.sweeps import load_sweep
  path = tmp_path / 'sweep.py'
  path.write_text(SWEEP_FILE)
  sweep = load_sweep(str(path))
  groups = plan_groups(sweep, sweep['members'])
  assert [g.name for g in groups] == ['slow+1', 'wide']
  vmapped = groups[0]
  assert vmapped.config.train.num_seeds == 4
  assert [(u.member, u.seed) for u in vmapped.units] == [('slow', 0), ('slow', 1),
                                                          ('fast', 0), ('fast', 1)]
  assert vmapped.config.train.seed_values == (
      'train.seed=0,1,0,1;train.learning_rate=0.0001,0.0001,0.01,0.01')
  assert groups[1].config.train.num_seeds == 2
  # every run goes to exactly one worker, the same one on every machine
  shares = [worker_groups(groups, w, 2) for w in range(2)]
  assert sorted(g.name for share in shares for g in share) == ['slow+1', 'wide']
  assert [g.name for g in worker_groups(plan_groups(sweep, sweep['members']), 0, 2)] == \
      [g.name for g in shares[0]]


def test_workers_then_gather_write_the_table(tmp_path):
  import json
  import os
  import subprocess
  import sys
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  path = tmp_path / 'sweep.py'
  path.write_text(SWEEP_FILE)
  workdir = tmp_path / 'runs'
  env = dict(os.environ, JAX_PLATFORMS='cpu', XLA_FLAGS=FAST_COMPILE)
  base = [sys.executable, 'sweep.py', '--sweep', str(path), '--workdir', str(workdir),
          '--num_prompts', '16']
  run = lambda *extra: subprocess.run(base + list(extra), cwd=root, capture_output=True,
                                      text=True, env=env, timeout=600)
  first = run('--worker', '0', '--num-workers', '2')
  assert first.returncode == 0, first.stderr[-2000:]
  partial = run('--gather')
  assert partial.returncode == 0, partial.stderr[-2000:]
  assert 'not finished yet' in partial.stdout
  second = run('--worker', '1', '--num-workers', '2')
  assert second.returncode == 0, second.stderr[-2000:]
  again = run('--worker', '1', '--num-workers', '2')      # a rerun skips finished runs
  assert 'finished, skipped' in again.stdout
  final = run('--gather')
  assert final.returncode == 0, final.stderr[-2000:]
  summary = json.loads((workdir / 'summary.json').read_text())
  assert sorted(summary) == ['fast', 'slow', 'wide']
  assert summary['fast']['seeds'] == [0, 1] and summary['fast']['seeds_in_run'] == 4
  table = (workdir / 'summary.md').read_text()
  assert '| fast |' in table and '| wide |' in table
