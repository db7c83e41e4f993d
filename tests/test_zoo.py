"""models/zoo.py: the one position rule of the zoo sweeps, parameter counts, width matching."""
import importlib.util

import jax
import ml_collections
import numpy as np
import pytest
from flax import nnx

from configs.linear_regression import get_config
from core import ConfigError
from models.mixers import MIXERS, MixerSpec
from models.model import build_model, param_count
from models.zoo import count_params, match_width, needs_positions, position_for

ORDERLESS = {'attention', 'linear_attention', 'linear_self_attention', 'momentum_attention'}
# Mixers that declare needs_positions although not strictly permutation-invariant: momentum
# attention adds a distance-decayed sum of values to orderless softmax attention.
DECLARED_BUT_ORDER_AWARE = {'momentum_attention'}


def test_needs_positions_declared_per_mixer():
  assert {name for name in MIXERS if needs_positions(name)} == ORDERLESS
  for name in MIXERS:   # the registry records the class attribute as metadata
    assert MIXERS.metadata(name)['needs_positions'] == MIXERS[name].needs_positions


@pytest.mark.parametrize('name', sorted(MIXERS))
def test_needs_positions_matches_permutation_invariance(name):
  """A mixer that needs positions gives the same last output when the earlier positions are
  permuted; a mixer that does not is sensitive to their order (so the flag is not arbitrary)."""
  d, t = 16, 16
  spec = MixerSpec(d_model=d, num_heads=2, max_len=t, position='none')
  options = dict(MIXERS[name].default_options)
  if name == 'rwkv':
    options['zero_init'] = False   # RWKV-4's init is the constant 0
  mixer = MIXERS[name](spec, ml_collections.ConfigDict(options), rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(1), (1, t, d))
  tokens = jax.random.randint(jax.random.key(2), (1, t), 0, 2)   # repeats: n-gram matches
  order = np.concatenate([np.random.default_rng(0).permutation(t - 1), [t - 1]])
  y = mixer(x, tokens_BxT=tokens)[:, -1]
  y_perm = mixer(x[:, order], tokens_BxT=tokens[:, order])[:, -1]
  invariant = np.allclose(y, y_perm, atol=1e-5, rtol=1e-5)
  if name in DECLARED_BUT_ORDER_AWARE:
    assert not invariant
  else:
    assert invariant == needs_positions(name)


def test_position_for_patterns():
  assert position_for('attention') == 'learned'
  assert position_for('mamba') == 'none'
  assert position_for('mamba, gla') == 'none'
  assert position_for('mamba,linear_attention') == 'learned'
  assert position_for('attention,ngram_head,attention') == 'learned'
  assert position_for('ngram_head') == 'none'
  with pytest.raises(ConfigError, match='model.mixer'):
    position_for('mamba,transformer')
  with pytest.raises(ConfigError, match='model.mixer'):
    position_for(' , ')


def _load(path):
  spec = importlib.util.spec_from_file_location('_sweep_under_test', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_sweep()


@pytest.mark.parametrize('path,explicit', [
    ('configs/sweeps/mixer_zoo.py', {'attention_rope': 'rope', 'hybrid_attention_mamba': 'none'}),
    ('configs/sweeps/regbench_zoo.py', {}),
])
def test_sweep_members_follow_the_rule(path, explicit):
  members = _load(path)['members']
  for member in members:
    expected = explicit.get(member['name'], position_for(member['model.mixer']))
    assert member['model.position'] == expected, member


def _io(config):
  from data import get_task
  return get_task(config.task).io()


def test_count_params_matches_the_built_model():
  config = get_config('tiny')
  for mixer in ('attention', 'rwkv', 'gla,mamba,lstm'):
    config.model.mixer = mixer
    model = build_model(_io(config), config.model, seed=0)
    assert count_params(config.model, _io(config)) == param_count(model)


def test_match_width_moves_toward_the_target():
  config = get_config('tiny')
  config.model.mixer = 'retention'
  match_width(config.model, _io(config), 40_000)
  small = count_params(config.model, _io(config))
  match_width(config.model, _io(config), 200_000)
  assert count_params(config.model, _io(config)) > small
  assert config.model.d_model % (2 * config.model.num_heads) == 0
