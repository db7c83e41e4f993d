"""Sweep plumbing: width matching against brute force, override errors, summary tables."""
import pytest

from configs.linear_regression import get_config
from sweep import count_params, match_width, set_key


@pytest.mark.parametrize('mixer', ['attention', 'gla', 'lstm'])
def test_match_width_finds_the_closest_valid_width(mixer):
  config = get_config('tiny')
  config.model.mixer = mixer
  target = 90_000
  match_width(config, target)
  chosen = count_params(config)
  # Brute force over every width that is a multiple of 2 * num_heads and builds.
  from data.base import ConfigError
  best = None
  for d_model in range(4, 161, 4):
    config.model.d_model = d_model
    try:
      gap = abs(count_params(config) - target)
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
